"""Starting W gloo processes on this machine for the distributed tests."""

from __future__ import annotations

import random
import socket

import torch.multiprocessing as mp


def free_port() -> int:
    """A free localhost port below Linux's ephemeral range (32768+), so that no outgoing connection
    of another process on this shared machine can take it between our probe and rank 0's bind."""
    rng = random.Random()
    for _ in range(50):
        port = rng.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32000")


def spawn(worker, nprocs: int, *args) -> None:
    """mp.spawn(worker(rank, port, *args)) on a fresh port, retrying only a lost race for it."""
    for attempt in range(3):
        try:
            mp.spawn(worker, args=(free_port(), *args), nprocs=nprocs, join=True)
            return
        except mp.ProcessRaisedException as e:
            if "address already in use" not in str(e).lower() or attempt == 2:
                raise
