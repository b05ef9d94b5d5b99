"""`jessl train` under torchrun with 2 processes (gloo, CPU): one set of files, resume with the
same and with a different number of processes, and the loader shards that make it exact.

The exactness of the gradients themselves is tests/test_distributed*.py's; here the whole
command runs: 2 torchrun launches of ~10 s each on 2 cores, then one in-process epoch.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from jessl.checkpoint import list_checkpoints, load_checkpoint
from jessl.config import load_config
from jessl.data.loader import Loader
from jessl.train.trainer import train

from ..spawn import free_port
from .conftest import tiny_overrides

ROOT = Path(__file__).resolve().parents[2]


def records(run, kind):
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def torchrun(args: list[str], nproc: int = 2) -> str:
    """`python -m torch.distributed.run --nproc_per_node N -m jessl train ARGS`; its output.
    One thread per process; a new port on a lost race for it; never waits past 120 s."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    for attempt in range(3):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
               "-m", "jessl", "train", *args]
        try:
            proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True,
                                  timeout=120)
        except subprocess.TimeoutExpired as e:  # run() has killed the launcher by now
            pytest.fail(f"torchrun did not finish in 120 s:\n{e.stdout}\n{e.stderr}")
        out = proc.stdout + proc.stderr
        if proc.returncode == 0:
            return out
        if "address already in use" not in out.lower() or attempt == 2:
            pytest.fail(f"torchrun failed ({proc.returncode}):\n{out[-4000:]}")
    raise AssertionError("unreachable")


def test_loader_shards_are_disjoint_cover_the_epoch_and_see_the_same_views(tiny_files):
    """Rank r of 2 with batch 8 takes the records of the global batch of 16 (step for step)
    and renders each record exactly as one process does: augmentations are keyed by
    (seed, epoch, record, view), never by rank."""
    train_file, _ = tiny_files
    one = Loader(train_file, 16, "simclr_cifar", seed=3, num_threads=1)
    ranks = [Loader(train_file, 8, "simclr_cifar", seed=3, num_threads=1, rank=r, world_size=2)
             for r in range(2)]
    assert len(one) == len(ranks[0]) == len(ranks[1]) == 4
    for epoch in (0, 1):
        shards = [np.concatenate(r.epoch_batches(epoch)) for r in ranks]
        assert not set(shards[0]) & set(shards[1]), "the shards overlap"
        assert sorted(np.concatenate(shards)) == list(range(64)), "the shards miss records"
        for batch, *parts in zip(one.iter_epoch(epoch), *(r.iter_epoch(epoch) for r in ranks)):
            assert sorted(batch.indices.tolist()) == \
                sorted(parts[0].indices.tolist() + parts[1].indices.tolist())
            row = {int(i): k for k, i in enumerate(batch.indices)}
            for part in parts:
                for k, i in enumerate(part.indices.tolist()):
                    for view, ref in zip(part.views, batch.views):
                        assert torch.equal(view[k], ref[row[i]])


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not built")
def test_two_processes_train_write_once_and_resume(tiny_files, tmp_path):
    train_file, val_file = tiny_files
    out = tmp_path / "run"
    args = tiny_overrides(train_file, val_file, out, {
        "train.epochs": 3, "train.sync_bn": True, "train.keep_checkpoints": 0,
        "eval.knn": False})

    # 1 epoch of 3 with 2 processes (batch 16 = 2 x 8), then stop as a time-limited job would
    log = torchrun([*args, "train.stop_after=1"])
    assert log.count("process: seed 0") == 1, "only rank 0 prints"
    assert "rank 0 of 2" in log and "batch 16 (2 x 8)" in log
    assert [p.name for p in list_checkpoints(out)] == ["epoch-0001.pt"]
    assert len(list(out.glob("events.out.tfevents.*"))) == 1
    assert [r["step"] for r in records(out, "step")] == [1, 2, 3, 4], "one writer, once"
    assert load_checkpoint(out / "checkpoints" / "epoch-0001.pt")["step"] == 4

    # resume with the same 2 processes
    log = torchrun([*args, "train.stop_after=2", "train.resume=auto"])
    assert "epoch-0001.pt (epoch 1, step 4)" in log
    assert [p.name for p in list_checkpoints(out)] == ["epoch-0001.pt", "epoch-0002.pt"]
    assert [r["step"] for r in records(out, "step")] == list(range(1, 9))

    # and finish in this one process: a different world size, the same global batch and steps
    cfg = load_config(None, [*args, "train.resume=auto", "train.threads=1"])
    metrics = train(cfg)
    assert metrics["epoch"] == 3
    assert [p.name for p in list_checkpoints(out)] == [f"epoch-000{e}.pt" for e in (1, 2, 3)]
    assert load_checkpoint(list_checkpoints(out)[-1])["step"] == 12
    assert [r["step"] for r in records(out, "step")] == list(range(1, 13))
    assert [r["epoch"] for r in records(out, "epoch")] == [1, 2, 3]
    assert all(0 <= r["probe/backbone_val_top1"] <= 100 for r in records(out, "epoch"))
    assert (out / "results.json").is_file()
