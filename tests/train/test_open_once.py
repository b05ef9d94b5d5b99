"""`jessl train` opens (and validates) the train file once before the first step: the config's
checks, the preset's image-size rule, the trainer and the loader share one Reader
(jessl.data.facts). Before, it was opened 11 times, each validating the whole index (this test on 5f63eb9)."""

from pathlib import Path

import pytest

from jessl.data import facts
from jessl.data.loader import Loader
from jessl.data.reader import Reader

from .conftest import colour_images, tiny_overrides, write_file


class FirstStep(Exception):
    """Raised where the first batch is asked for, to stop the run there."""


def test_jessl_train_opens_the_train_file_once(tmp_path, monkeypatch):
    from jessl.cli import main
    train = write_file(tmp_path / "train.jessl", colour_images(8, seed=2))
    opened = []
    real_open = Reader._open

    def counting_open(self):
        opened.append(Path(self.path).resolve())
        real_open(self)

    def first_step(self, epoch, start=0):
        raise FirstStep

    monkeypatch.setattr(Reader, "_open", counting_open)
    monkeypatch.setattr(Loader, "iter_epoch", first_step)
    with pytest.raises(FirstStep):  # data.views unset: the method's preset asks for the size
        main(["train", *tiny_overrides(train, "", tmp_path / "run")])
    assert opened.count(train.resolve()) == 1


def test_a_rewritten_file_is_opened_again(tmp_path):
    path = write_file(tmp_path / "a.jessl", colour_images(2, size=16))
    assert facts.file_facts(path) == facts.FileFacts(images=8, max_side=16)
    assert facts.shared_reader(path) is facts.shared_reader(path)
    write_file(path, colour_images(3, size=80))  # convert writes a new file and renames it
    assert facts.file_facts(path) == facts.FileFacts(images=12, max_side=80)
    assert not facts.small_images(path) and facts.eval_views(path) == "eval"
