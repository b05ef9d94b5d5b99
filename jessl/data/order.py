"""Which records each rank reads in which epoch, in which batches: pure functions of the seed.

Every rank computes the same global order from (seed, epoch) and takes its own interleaved
slice, so shards are disjoint, cover the epoch and have the same size on every rank
(DistributedSampler's rule: pad by wrapping around, or drop the tail with `drop_last`).
"""

from __future__ import annotations

import numpy as np

ORDERS = ("random", "quasi_random", "sequential")
QUASI_BLOCK_BYTES = 64 * 2**20  # quasi_random: records are read in contiguous ~64 MiB blocks


def epoch_order(indices: np.ndarray, order: str, seed: int, epoch: int,
                offsets: np.ndarray | None = None, block_bytes: int = QUASI_BLOCK_BYTES,
                min_block: int = 1) -> np.ndarray:
    """The global order of `indices` for one epoch.

    `quasi_random` (for files larger than RAM, as FFCV's QUASI_RANDOM) shuffles the order of
    contiguous blocks of the file and the records within each block: a batch then touches one
    or two blocks instead of pages all over the disk. `offsets` are the records' data offsets.
    """
    indices = np.asarray(indices, dtype=np.int64)
    if order == "sequential":
        return indices.copy()
    rng = np.random.default_rng([seed, epoch, 0x0DE5])  # the last word: "order", apart from views
    if order == "random":
        return rng.permutation(indices)
    if order != "quasi_random":
        raise ValueError(f"order must be one of {ORDERS}, not {order!r}")
    if offsets is None:
        raise ValueError("quasi_random order needs the records' data offsets")
    by_place = indices[np.argsort(offsets[indices], kind="stable")]
    place = offsets[by_place].astype(np.int64)
    block_id = (place - place[0]) // max(1, block_bytes)
    # blocks of at least `min_block` records (one batch), so every batch stays mixed
    starts = np.flatnonzero(np.r_[True, np.diff(block_id) > 0])
    starts = _merge_small(starts, len(by_place), min_block)
    blocks = np.split(by_place, starts[1:])
    return np.concatenate([rng.permutation(blocks[b]) for b in rng.permutation(len(blocks))])


def _merge_small(starts: np.ndarray, n: int, min_block: int) -> np.ndarray:
    kept = [0]
    for s in starts[1:]:
        if s - kept[-1] >= min_block:
            kept.append(s)
    if len(kept) > 1 and n - kept[-1] < min_block:
        kept.pop()
    return np.asarray(kept)


def shard(order: np.ndarray, rank: int, world_size: int, drop_last: bool) -> np.ndarray:
    """Rank's slice of the global order; the same length on every rank."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} must be in [0, world_size={world_size})")
    n = len(order)
    if drop_last:
        per_rank = n // world_size
        order = order[:per_rank * world_size]
    else:
        per_rank = -(-n // world_size)
        pad = per_rank * world_size - n
        order = np.concatenate([order, order[:pad]]) if pad else order  # wrap around
    return order[rank::world_size]


def batches(local: np.ndarray, batch_size: int, drop_last: bool) -> list[np.ndarray]:
    """Consecutive batches of a rank's records."""
    n = len(local) // batch_size * batch_size if drop_last else len(local)
    return [local[i:i + batch_size] for i in range(0, n, batch_size)]


def num_batches(n_indices: int, batch_size: int, world_size: int, drop_last: bool) -> int:
    per_rank = n_indices // world_size if drop_last else -(-n_indices // world_size)
    return per_rank // batch_size if drop_last else -(-per_rank // batch_size)
