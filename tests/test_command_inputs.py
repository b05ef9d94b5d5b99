"""Every subcommand checks its inputs before an expensive or writing step, and a run that
cannot learn stops with a clear error (issue 15, defects 6-8)."""

import numpy as np
import pytest

from jessl.data import ConversionError, convert
from jessl.files import write_atomic
from tests.data.helpers import natural_like
from tests.train.conftest import colour_images, tiny_overrides, write_file


def test_eval_checks_the_checkpoint_before_converting_a_dataset(tmp_path, capsys):
    """A missing or unreadable checkpoint used to be reported after the whole dataset had been
    converted into the cache (60k images for cifar10)."""
    from jessl.eval.command import main
    npz = tmp_path / "tiny.npz"
    np.savez(npz, x=np.stack([natural_like(8, 8, seed=k) for k in range(4)]),
             y=np.arange(4) % 2)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    cache = tmp_path / "cache"
    for source, message in ((["--checkpoint", str(tmp_path / "missing")], "does not exist"),
                            (["--checkpoint", str(tmp_path / "junk.pt")], "not a file torch"),
                            (["--weights", str(tmp_path / "junk.pt"), "--backbone",
                              "small_cnn"], "not a file torch"),
                            (["--random-init", "--backbone", "nope"], "unknown backbone")):
        code = main(["knn", *source, "--dataset", f"tiny={npz}", "--split-per-class", "1",
                     "--cache-dir", str(cache)])
        assert code == 1 and message in capsys.readouterr().err
        assert not cache.exists() or not any(cache.rglob("*.jessl")), "converted first"


def test_eval_finds_every_dataset_file_before_converting_one(tmp_path, capsys):
    from jessl.eval.command import main
    npz = tmp_path / "tiny.npz"
    np.savez(npz, x=np.stack([natural_like(8, 8, seed=k) for k in range(4)]),
             y=np.arange(4) % 2)
    cache = tmp_path / "cache"
    code = main(["suite", "--random-init", "--backbone", "small_cnn", "--datasets",
                 f"a={npz}:{npz},b={tmp_path / 'missing.jessl'}:{npz}", "--out",
                 str(tmp_path / "report"), "--cache-dir", str(cache)])
    assert code == 1 and "missing.jessl does not exist" in capsys.readouterr().err
    assert not cache.exists() or not any(cache.rglob("*.jessl")), "converted first"
    assert not (tmp_path / "report").exists()


@pytest.fixture(scope="module")
def one_image(tmp_path_factory):
    folder = tmp_path_factory.mktemp("degenerate")
    return (write_file(folder / "one.jessl", colour_images(1)[:1]),
            write_file(folder / "oneclass.jessl", [(im, 0) for im, _ in colour_images(2)]))


@pytest.mark.parametrize("case, expected", [
    ({"data.train": "one", "data.batch_size": 1}, "1 image: a batch of one image"),
    ({"data.train": "oneclass", "data.batch_size": 1}, "data.batch_size 1: a batch of one"),
])
def test_a_run_that_cannot_learn_stops_before_writing(one_image, tmp_path, capsys, case,
                                                      expected):
    """SimCLR on one image, or with batch size 1, ran to the end with a loss of exactly 0.0."""
    from jessl.train.command import main
    files = {"one": one_image[0], "oneclass": one_image[1]}
    out = tmp_path / "run"
    fields = {**case, "data.train": files[case["data.train"]], "data.val": ""}
    assert main(tiny_overrides(files["one"], "", out, fields)) == 2
    assert expected in capsys.readouterr().err
    assert not out.exists()


def test_a_corrupt_val_file_stops_train_before_the_first_epoch(one_image, tmp_path, capsys):
    from jessl.train.command import main
    bad = tmp_path / "val.jessl"
    bad.write_bytes(b"JESSL\0\r\n" + b"\0" * 200)
    out = tmp_path / "run"
    assert main(tiny_overrides(one_image[1], bad, out, {"data.batch_size": 4})) == 1
    assert "val.jessl: header checksum mismatch" in capsys.readouterr().err
    assert not out.exists()


def test_a_one_class_file_is_called_so(one_image, tmp_path, capsys):
    from jessl.train.command import main
    out = tmp_path / "run"
    assert main(tiny_overrides(one_image[1], "", out, {
        "data.batch_size": 4, "train.epochs": 1, "eval.knn": False, "eval.rankme": False})) == 0
    said = capsys.readouterr().out
    assert "probe: off, the train file has one class" in said and "no labels" not in said


def test_a_failed_conversion_leaves_no_new_folder(tmp_path):
    out = tmp_path / "new" / "deeper" / "out.jessl"
    with pytest.raises(ConversionError):
        convert([(natural_like(4, 4), 0), (b"junk", 1)], out, workers=1, progress=False)
    assert not (tmp_path / "new").exists()
    convert([(natural_like(4, 4), 0)], out, workers=1, progress=False)
    assert out.is_file()


def test_a_failed_atomic_write_leaves_no_new_folder(tmp_path):
    def fail(tmp):
        raise OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        write_atomic(tmp_path / "a" / "b" / "report.json", fail)
    assert not (tmp_path / "a").exists()
    (tmp_path / "kept").mkdir()
    with pytest.raises(OSError):
        write_atomic(tmp_path / "kept" / "new" / "x.json", fail)
    assert (tmp_path / "kept").is_dir() and not (tmp_path / "kept" / "new").exists()
