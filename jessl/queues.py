"""Fixed-size feature queues: MoCo's negatives and NNCLR's support set.

A queue is a plain (K, D) tensor plus an integer write pointer, both owned by the method. Writing is
a ring buffer (MoCo's `_dequeue_and_enqueue`): order inside the queue never matters to the losses
(negatives are a set; NNCLR takes an argmax), so we overwrite the oldest rows in place instead of
reallocating K*D floats every step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .losses import Gather


def new_queue(size: int, dim: int, generator: torch.Generator | None = None) -> Tensor:
    """(size, dim) random unit vectors: MoCo's initial queue (random keys are harmless negatives
    and are all overwritten after size / batch steps)."""
    return F.normalize(torch.randn(size, dim, generator=generator), dim=1)


@torch.no_grad()
def push_(queue: Tensor, ptr: int, keys: Tensor, gather: Gather | None = None) -> int:
    """Write keys (B, D) (with gather: all ranks' keys, so every rank keeps the same queue) into
    queue (K, D) at ptr, wrapping around; returns the new pointer. Keys are L2-normalised first,
    as MoCo and NNCLR store them."""
    if gather is not None:
        keys = gather(keys)
    keys = F.normalize(keys.detach(), dim=1).to(queue.dtype)  # (N, D)
    size = queue.shape[0]
    if keys.shape[0] >= size:  # a batch bigger than the queue: keep its last K keys
        queue.copy_(keys[-size:])
        return 0
    idx = (ptr + torch.arange(keys.shape[0], device=queue.device)) % size  # (N,)
    queue[idx] = keys
    return int((ptr + keys.shape[0]) % size)
