"""Gathers across processes for the losses that need the whole batch (SSL Cookbook, section 3.8.1).

The gradient convention, in one place
-------------------------------------
jessl's batch losses (`info_nce`, `vicreg`, `barlow_twins`, `moco_v3`, `nnclr`) take a `gather`
callable and, when it is given, compute the loss of the *global* batch on every rank: every rank
returns the same number, equal to the single-process loss on the concatenated batch L(Z).

DistributedDataParallel then *averages* parameter gradients over the W ranks. On rank r autograd
produces dL/dZ for the whole gathered Z, but only the rows of its own slice z_r lead back to its own
parameters. `gather_with_grad`'s backward therefore all-reduces (sums) dL/dZ over ranks and returns
rank r's slice: sum over ranks of dL/dz_r = W * dL/dz_r. DDP's average divides that W back out, so
the averaged parameter gradient is exactly dL/dtheta of the single-process run.

So: **do not multiply the local loss by world_size**, and do not divide it either. The rule that
makes this exact is "the mean over ranks of the per-rank losses equals the single-process loss",
which holds for the global-batch losses above and for per-sample means with equal local batch
sizes (`neg_cosine`, `instance_info_nce`, MoCo v2's queue loss). It also needs all ranks to hold
the same local batch size, which `torch.distributed.all_gather` requires anyway.

How it goes wrong, and which test catches it:
  * a backward that returns only this rank's slice of its *own* gradient (no sum), or a plain
    `all_gather` with the local tensor put back in its slot: rank r gets dL/dz_r instead of
    W * dL/dz_r, and after DDP's average the gradient is exactly 1/W of the true one (lightly's
    GatherLayer, issue #1528; the same 1/W came back for BarlowTwinsLoss, issue #1977).
    tests/test_distributed.py runs that variant and asserts the 1/W, so the check can fail;
  * averaging instead of summing in the all-reduce: the same 1/W;
  * summing *and* multiplying the loss by world_size (mixing this convention with the other
    common one, where the backward keeps the unsummed slice and the loss is scaled by W):
    W times too large. We keep the loss unscaled so logged values match single-process runs.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True when a process group is initialised with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # x: (B, ...)
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        ctx.batch = x.shape[0]
        return torch.cat(parts, dim=0)  # (W*B, ...)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # grad: (W*B, ...)
        # Every rank holds dL_rank/dZ for the full Z; the rows of z_r received gradient on all
        # ranks, so sum them (see the module docstring for why sum, not mean).
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = dist.get_rank() * ctx.batch
        return grad[start:start + ctx.batch]  # (B, ...)


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """(B, ...) -> (world*B, ...) concatenated in rank order; backward = this rank's slice of the
    gradient summed over ranks. Identity without an initialised multi-rank process group.

    Convention: the loss computed from the gathered tensor must be the single-process loss of the
    concatenated batch (not scaled by world_size); DDP's gradient averaging then yields exactly the
    single-process gradient. Every rank must call it (and backward) the same number of times with
    the same shape.
    """
    if not is_distributed():
        return x
    return _GatherWithGrad.apply(x)


@torch.no_grad()
def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """(B, ...) -> (world*B, ...) without a backward: for momentum-encoder keys, queue updates and
    DINO's teacher centre, which never receive gradient."""
    if not is_distributed():
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)
