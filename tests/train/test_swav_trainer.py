"""SwAV through `jessl train`: the loader's multi-crop views, the queue starting mid-run, and an
exact resume across a checkpoint taken with the queue full (it is used from the next step on)."""

import json

from jessl.config import load_config
from jessl.train.trainer import train

from .conftest import tiny_overrides

# 2 epochs x 4 steps of 16 images: the queue (2 batches) fills in steps 3-4, is used from 5 on
SWAV = {"method.name": "swav", "method.num_prototypes": 16, "method.queue_length": 32,
        "method.queue_start": 0.25, "method.freeze_prototypes": 0.125, "eval.knn": False,
        "probe.enabled": False}


def steps(run):
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "step"]


def test_swav_trains_and_resumes_exactly_with_its_queue(tiny_files, tmp_path, capsys):
    train_file, val_file = tiny_files
    train(load_config(None, tiny_overrides(train_file, val_file, tmp_path / "full", SWAV)))
    assert "views swav_cifar" in capsys.readouterr().out  # 2 global + 6 local crops
    split = tmp_path / "split"
    train(load_config(None, tiny_overrides(train_file, val_file, split,
                                           {**SWAV, "train.stop_after": 1})))
    train(load_config(None, tiny_overrides(train_file, val_file, split,
                                           {**SWAV, "train.resume": "auto"})))
    full = steps(tmp_path / "full")
    assert [r["queue"] for r in full] == [0.0] * 4 + [1.0] * 4
    assert [r["loss"] for r in steps(split)] == [r["loss"] for r in full]  # bit for bit
