"""The linear probe on augmented views: fresh crops each epoch, choice on the train hold-out."""

import numpy as np
import pytest
import torch

from jessl.data.loader import Loader
from jessl.data.views import resolve_views
from jessl.eval.augmented import augment_view, augmented_linear_probe
from jessl.eval.models import build
from jessl.eval.splits import stratified_split
from tests.train.conftest import colour_images, write_file


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("aug-data")
    return (write_file(folder / "train.jessl", colour_images(12, seed=0)),
            write_file(folder / "test.jessl", colour_images(6, seed=1)))


def test_augment_view_is_a_random_crop_of_the_eval_view():
    plain = resolve_views("eval_cifar")[0]
    v = augment_view(plain, (0.2, 1.0))
    assert (v.crop, v.scale, v.flip_p) == ("random", (0.2, 1.0), 0.5)
    assert (v.size, v.mean, v.std) == (plain.size, plain.mean, plain.std)
    assert v.jitter_p == v.grey_p == v.blur_p == 0.0  # geometry only


def test_probe_learns_and_is_reproducible(files, monkeypatch):
    train, test = files
    seen = []  # (epoch, record, image) of every augmented training batch
    original = Loader.iter_epoch

    def spy(self, epoch, start=0):
        for batch in original(self, epoch, start):
            if self.order == "random":  # the augmented loader; extraction reads sequentially
                seen.extend(zip([epoch] * len(batch.indices), batch.indices.tolist(),
                                batch.views[0].clone()))
            yield batch
    monkeypatch.setattr(Loader, "iter_epoch", spy)

    net = build("small_cnn", True, seed=0)
    kw = {"epochs": 2, "batch_size": 16, "num_threads": 1, "seed": 3}
    r = augmented_linear_probe(net, train, test, **kw)
    assert r.top1 > 60  # 4 colours, chance 25%
    assert len(r.val_scores) == 9
    assert (r.lr, r.weight_decay) in {(s["lr"], s["weight_decay"]) for s in r.val_scores}
    assert r.view.startswith("RandomResizedCrop(32")

    # the heads train on the fit records only, each epoch on new views of them
    labels = np.array([label for _, label in colour_images(12, seed=0)])
    fit, _ = stratified_split(labels, fraction=0.1, seed=3)
    for epoch in (0, 1):
        assert sorted(i for e, i, _ in seen if e == epoch) == fit.tolist()
    first = {i: x for e, i, x in seen if e == 0}
    assert sum(not torch.equal(first[i], x) for e, i, x in seen if e == 1) > len(fit) // 2

    seen.clear()
    again = augmented_linear_probe(net, train, test, **kw)
    assert again == r  # same seed, same crops, same numbers
