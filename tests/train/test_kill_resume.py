"""`kill -9` in the middle of `jessl train`, then `--train.resume auto`: the run must end as the
uninterrupted one does, final metrics (RankMe, kNN) included. Both runs are fresh processes
started the same way, so nothing an earlier test did in this process (float64 work, thread
pools) can make them differ."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from .conftest import tiny_overrides

# wall-clock figures differ between any two runs; everything else must not
TIMINGS = {"time", "seconds", "images_per_s", "data_wait", "wall_s"}  # wall clock: differs
REPO = Path(__file__).resolve().parents[2]


def _command(train_file, val_file, out, extra=None) -> list[str]:
    fields = {"train.epochs": 2, "eval.baseline": False, **(extra or {})}
    return [sys.executable, "-m", "jessl", "train",
            *tiny_overrides(train_file, val_file, out, fields)]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def _without_timings(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in TIMINGS}


def _metrics(out: Path) -> list[dict]:
    return [_without_timings(json.loads(line))
            for line in (out / "metrics.jsonl").read_text().splitlines()]


def _killed_after_first_checkpoint(command: list[str], out: Path) -> None:
    """Start the run and SIGKILL it as soon as its first checkpoint is on disk."""
    proc = subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    first = out / "checkpoints" / "epoch-0001.pt"
    deadline = time.monotonic() + 120
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the run ended before the kill: {err.decode()}"
    assert first.exists() and not (out / "results.json").exists()


def test_kill_9_then_resume_auto_ends_as_the_uninterrupted_run(tiny_files, tmp_path):
    train_file, val_file = tiny_files
    straight, split = tmp_path / "straight", tmp_path / "split"
    # the reference runs beside the run that is killed (two cores: half the wall time)
    reference = subprocess.Popen(_command(train_file, val_file, straight), env=_env(),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _killed_after_first_checkpoint(_command(train_file, val_file, split), split)
    _, err = reference.communicate(timeout=300)
    assert reference.returncode == 0, err.decode()
    resumed = subprocess.run(_command(train_file, val_file, split, {"train.resume": "auto"}),
                             env=_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resume: " in resumed.stdout and "epoch 1, step 4" in resumed.stdout

    # every logged step and epoch record (losses, lr, probe accuracy) and the final metrics
    assert _metrics(split) == _metrics(straight)
    final = _without_timings(json.loads((split / "results.json").read_text()))
    assert final == _without_timings(json.loads((straight / "results.json").read_text()))
    assert {"rankme", "knn_top1"} <= set(final)

    # the weights, optimizer and probe states of the last checkpoint, bit for bit
    a = torch.load(split / "checkpoints" / "epoch-0002.pt", weights_only=False)
    b = torch.load(straight / "checkpoints" / "epoch-0002.pt", weights_only=False)
    for key in ("method", "probe"):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name}"
    assert str(a["optimizer"]) == str(b["optimizer"])


def test_resumed_after_the_last_checkpoint_says_rankme_is_gone(tiny_files, tmp_path, capsys):
    """Killed between the last checkpoint and the final metrics: the resumed run computes kNN
    but cannot have RankMe (the last epoch's embeddings are not checkpointed), and says so."""
    from jessl.config import load_config
    from jessl.train.trainer import train
    train_file, val_file = tiny_files
    out = tmp_path / "run"
    fields = {"train.epochs": 1, "eval.baseline": False}
    full = train(load_config(None, tiny_overrides(train_file, val_file, out, fields)))
    assert "rankme" in full
    capsys.readouterr()
    again = train(load_config(None, tiny_overrides(train_file, val_file, out,
                                                   {**fields, "train.resume": "auto"})))
    assert "rankme" not in again and "knn_top1" in again
    assert "rankme: not computed, the run resumed after its last epoch" in capsys.readouterr().out
