"""Gathers across processes for the losses that need the whole batch (SSL Cookbook, section 3.8.1),
batch-norm over the global batch, and joining the process group torchrun or submitit describes.

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
sizes (`neg_cosine`, `instance_info_nce`, MoCo v2's queue loss, `swav_loss`). It also needs all
ranks to hold the same local batch size, which `torch.distributed.all_gather` requires anyway.
SwAV couples the samples only through its codes, which carry no gradient: `sinkhorn_knopp` sums
its statistics over ranks (`all_reduce_sum`), so each rank's codes are its rows of the
global-batch codes and its per-sample loss falls under the rule above.

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

import os

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def is_distributed() -> bool:
    """True when a process group is initialised with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


# --- the process group ----------------------------------------------------------------------

def init_from_env(backend: str | None = None) -> bool:
    """Join the process group that torchrun (or `jessl submit`, through submitit) describes in
    RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT; True when this call joined one.

    The default backend is gloo for CPU tensors and, where torch sees a GPU, NCCL for CUDA
    tensors in the same group ("cpu:gloo,cuda:nccl"), so the collectives work on whichever
    device train.device puts the model. Nothing happens without WORLD_SIZE > 1, so a plain
    `jessl train` never opens a socket."""
    if not dist.is_available() or dist.is_initialized():
        return False
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if backend is None:
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend, init_method="env://")
    return True


def shutdown() -> None:
    """Leave the process group (no barrier: rank 0 may still be evaluating, and the others need
    not wait for it; torchrun and SLURM wait for every process)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@torch.no_grad()
def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """The sum of a tensor over ranks, as a new tensor without a gradient (SwAV's Sinkhorn
    statistics); `x` itself in one process."""
    if not is_distributed():
        return x
    x = x.detach().clone()
    dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def mean_over_ranks(x: torch.Tensor) -> torch.Tensor:
    """The mean of a tensor over ranks (no gradient): the loss to log, which for every method
    equals the single-process loss of the global batch (see the module docstring)."""
    if not is_distributed():
        return x
    return all_reduce_sum(x) / dist.get_world_size()


def average_gradients_before_step(optimizer: torch.optim.Optimizer):
    """Make `optimizer` average its gradients over ranks before each step, as DDP does for the
    model: for modules trained outside DDP (the online probe), so every rank keeps the same
    weights. Every rank must step the same number of times. Returns the hook handle."""

    def hook(opt, args, kwargs):
        grads = [p.grad for group in opt.param_groups for p in group["params"]
                 if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])  # one collective, not one per tensor
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= dist.get_world_size()
        for g, part in zip(grads, flat.split([g.numel() for g in grads])):
            g.copy_(part.view_as(g))

    if not is_distributed():
        return None
    return optimizer.register_step_pre_hook(hook)


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


# --- synchronised batch-norm ----------------------------------------------------------------

class _AllReduceWithGrad(torch.autograd.Function):
    """Sum over ranks; the backward is the same sum (every rank's loss depends on the global
    sum, so the gradient of a local term is the sum of all ranks' gradients, which DDP's
    average then turns into the gradient of the mean loss, as for `gather_with_grad`)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


class SyncBatchNorm(_BatchNorm):
    """Batch-norm whose training statistics are those of the global batch over all ranks, on any
    device (torch's nn.SyncBatchNorm runs on GPUs only). Outside training, or in one process,
    it is plain batch-norm; its parameters and buffers are named as BatchNorm's, so checkpoints
    load either way. Input (N, C, ...).

    Two all-reduces per call: the sum (and count) for the mean, then the centred sum of
    squares for the variance, which is as accurate as the single-process two-pass variance.
    Every rank must call it the same number of times (the local batch sizes may differ).
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected an (N, C, ...) input, got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_distributed()):
            return super().forward(x)
        self._check_input_dim(x)
        dtype = x.dtype
        x = x.float() if dtype in (torch.float16, torch.bfloat16) else x  # sums in fp32
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = x.new_tensor([x.numel() // x.shape[1]])
        total = _AllReduceWithGrad.apply(torch.cat([x.sum(dims), count]))  # (C + 1,)
        n = total[-1]
        mean = total[:-1] / n  # (C,)
        centred = x - mean.view(shape)
        var = _AllReduceWithGrad.apply(centred.pow(2).sum(dims)) / n  # (C,) biased, as BN uses
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None \
                    else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), m)
                unbiased = var.detach() * n / (n - 1).clamp(min=1)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), m)
        return y.to(dtype)


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """`module` with every BatchNorm replaced by `SyncBatchNorm`, sharing its parameters and
    buffers (an optimizer built before still holds the right tensors); returns the module, or
    the replacement when `module` is itself a BatchNorm."""
    if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
        new = SyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                            module.track_running_stats)
        if module.affine:
            new.weight, new.bias = module.weight, module.bias
        if module.track_running_stats:
            new.running_mean, new.running_var = module.running_mean, module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        new = convert_sync_batchnorm(child)
        if new is not child:
            module.add_module(name, new)
    return module
