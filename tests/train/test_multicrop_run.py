"""Multi-crop through the whole trainer: the loader draws 2 global + k local views, the method's
loss takes them all, and the online probe and kNN read the global view's features."""

import json

import pytest

from jessl.config import load_config
from jessl.train.trainer import train

from .conftest import tiny_overrides


@pytest.mark.parametrize("method", ["byol"])
def test_a_run_with_local_views(tiny_files, tmp_path, method, monkeypatch):
    from jessl.methods import METHODS
    seen = []
    real = METHODS[method].forward
    monkeypatch.setattr(METHODS[method], "forward",
                        lambda self, views: seen.append([v.shape[-1] for v in views])
                        or real(self, views))
    train_file, val_file = tiny_files
    out = tmp_path / "run"
    metrics = train(load_config(None, tiny_overrides(train_file, val_file, out, {
        "method.name": method, "data.local_views": 2, "train.epochs": 1})))
    assert seen and all(s == [32, 32, 16, 16] for s in seen)  # multicrop_cifar
    assert "probe/backbone_val_top1" in metrics and "knn_top1" in metrics
    saved = (out / "config.yaml").read_text()
    assert "local_views: 2" in saved
    assert json.loads((out / "results.json").read_text())["knn_top1"] == metrics["knn_top1"]
