"""Checkpoints that survive a crash mid-write, and the RNG states that make a resume exact.

A checkpoint is written to a temporary file in the same folder, flushed to disk (fsync), then
renamed over its final name (os.replace is atomic on POSIX), and the folder is fsynced so the
rename itself survives a power cut: a reader sees the old checkpoint or the new one, never half.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import torch

from jessl.files import write_atomic

CHECKPOINT_GLOB = "epoch-*.pt"
_EPOCH_RE = re.compile(r"epoch-(\d+)\.pt$")


def atomic_save(obj, path) -> Path:
    """torch.save `obj` to `path` atomically and durably (jessl.files.write_atomic: temporary
    file, fsync, os.replace, folder fsync)."""
    return write_atomic(path, lambda tmp: torch.save(obj, tmp), durable=True)


def checkpoint_path(run_dir, epoch: int) -> Path:
    """run/checkpoints/epoch-0003.pt: the state after `epoch` epochs."""
    return Path(run_dir) / "checkpoints" / f"epoch-{epoch:04d}.pt"


def list_checkpoints(run_dir) -> list[Path]:
    """This run's checkpoints, oldest first (by the epoch in their name)."""
    folder = Path(run_dir) / "checkpoints"
    found = [(int(m.group(1)), p) for p in folder.glob(CHECKPOINT_GLOB)
             if (m := _EPOCH_RE.search(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def prune_checkpoints(run_dir, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints (keep 0: delete none)."""
    if keep > 0:
        for p in list_checkpoints(run_dir)[:-keep]:
            p.unlink(missing_ok=True)


def rng_state() -> dict:
    """The generators a training step may draw from: torch (CPU and CUDA), NumPy, Python."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_checkpoint(path) -> dict:
    """A checkpoint written by `atomic_save` (it holds NumPy and Python RNG states, hence the
    full unpickler: load only checkpoints you wrote)."""
    return torch.load(path, map_location="cpu", weights_only=False)
