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


def run_in_group(checks, rank: int, port: int, world: int, out) -> None:
    """The body of a spawned rank: join a gloo group on `port`, run `checks(rank)` (the names
    of the checks that passed), write them to out/rank{rank}.json for the parent to compare.

    A passing rank leaves without tearing gloo down: its teardown at process exit aborts about
    one run in ten on this CPU build ("terminate called without an active exception",
    std::terminate from a still-joinable thread), after every check has already passed."""
    import json
    import os

    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    try:
        checked = checks(rank)
        (out / f"rank{rank}.json").write_text(json.dumps(checked))
        dist.barrier()
    except BaseException:
        dist.destroy_process_group()
        raise
    os._exit(0)
