"""gather_with_grad under real DDP: 2 processes, gloo backend, one spawn for every check (~5 s).

For each loss, each rank runs DDP on its half of a global batch and the losses gather with
`gather_with_grad`; after DDP's gradient averaging, every parameter gradient must equal the
single-process gradient on the whole batch, and the loss value must equal the single-process one.
The same run with a gather whose backward skips the all-reduce (lightly's old GatherLayer) must be
off by exactly 1/world_size, which shows the check can fail. SwAV's loss gathers nothing: its
Sinkhorn sums statistics over ranks, and without that sum the gradients must differ.
"""

import json

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from jessl import losses as L
from jessl import queues as Q

from jessl.distributed import all_reduce_sum, gather_no_grad, gather_with_grad

from .spawn import run_in_group, spawn

W, B, F_IN, D = 2, 4, 6, 5


def batch():
    g = torch.Generator().manual_seed(0)
    x1, x2 = (torch.randn(W * B, F_IN, generator=g, dtype=torch.float64) for _ in range(2))
    support = torch.randn(13, D, generator=g, dtype=torch.float64)
    return x1, x2, support


def model():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(F_IN, 8), nn.Tanh(), nn.Linear(8, D)).double()


SUPPORT = batch()[2]
# name -> (loss of (z1, z2, gather), does it gather). Keys stand-ins (k = detached function of z)
# are row-wise so the local rows of the single-process keys are the local keys.
LOSSES = {
    "info_nce": (lambda a, b, g: L.info_nce(a, b, 0.2, gather=g), True),
    "vicreg": (lambda a, b, g: L.vicreg(a, b, gather=g).loss, True),
    "barlow_twins": (lambda a, b, g: L.barlow_twins(a, b, gather=g), True),
    "moco_v3": (lambda a, b, g: L.moco_v3(a, b, 1.3 * a.detach() + 0.1, b.detach() - 0.2, 0.2, gather=g), True),
    "nnclr": (lambda a, b, g: L.nnclr(a, b, SUPPORT, gather=g), True),
    # Per-sample means: no gather, DDP's average of the local means is already the global mean.
    "neg_cosine": (lambda a, b, g: L.neg_cosine(a, b) + L.neg_cosine(b, a), False),
    "instance_info_nce": (lambda a, b, g: L.instance_info_nce(a, b, a * b, 0.1), False),
}


PROTOTYPES = F.normalize(batch()[2][:7], dim=1)  # (K, D) unit prototypes


def swav(a, b, all_reduce):
    """SwAV's loss with fixed prototypes: the codes of each view from Sinkhorn (summing its
    statistics with `all_reduce`), predicted from the other view."""
    logits = [F.normalize(z, dim=1) @ PROTOTYPES.T for z in (a, b)]  # (B, K)
    codes = [L.sinkhorn_knopp(s, 0.05, 3, all_reduce) for s in logits]
    return L.swav_loss(logits, codes, 0.1)


class _GatherNoSum(torch.autograd.Function):
    """The bug to catch: backward returns this rank's slice of its own gradient only."""

    @staticmethod
    def forward(ctx, x):
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad):
        n = grad.shape[0] // dist.get_world_size()
        return grad[dist.get_rank() * n:(dist.get_rank() + 1) * n]


def run_step(fn, gather, x1, x2, ddp):
    """Loss and parameter gradients of one step; DDP(...) when ddp, else one process."""
    net = model()
    wrapped = DDP(net) if ddp else net
    z1, z2 = wrapped(torch.cat([x1, x2])).chunk(2)  # both views in one forward, as the trainer does
    loss = fn(z1, z2, gather)
    loss.backward()
    return loss.detach(), [p.grad for p in net.parameters()]


def close(a, b):
    return all(torch.allclose(x, y, rtol=1e-9, atol=1e-12) for x, y in zip(a, b))


def checks(rank):
    x1, x2, _ = batch()
    mine = slice(rank * B, (rank + 1) * B)
    checked = []
    for name, (fn, gathers) in LOSSES.items():
        ref_loss, ref_grads = run_step(fn, None, x1, x2, ddp=False)
        loss, grads = run_step(fn, gather_with_grad if gathers else None, x1[mine], x2[mine], ddp=True)
        assert close(grads, ref_grads), f"{name}: DDP gradient differs from single-process"
        if gathers:
            assert torch.allclose(loss, ref_loss, rtol=1e-12), f"{name}: value {loss} != {ref_loss}"
            _, bad = run_step(fn, _GatherNoSum.apply, x1[mine], x2[mine], ddp=True)
            assert close(bad, [g / W for g in ref_grads]), f"{name}: the unsummed gather should be 1/W"
        else:
            mean = loss.clone()
            dist.all_reduce(mean)
            assert torch.allclose(mean / W, ref_loss, rtol=1e-12), name
        checked.append(name)

    # DINO's centre and the queues: no gradient, but every rank must hold the global state.
    t = torch.cat([x1, x2])[:, :D]  # (2*W*B, D) stand-in teacher logits, rank-major halves
    local = torch.cat([x1[mine], x2[mine]])[:, :D]
    c0 = torch.zeros(1, D, dtype=torch.float64)
    assert torch.allclose(L.update_center(c0, local, gather=gather_no_grad), L.update_center(c0, t))
    q_ref, q = torch.zeros(20, D, dtype=torch.float64), torch.zeros(20, D, dtype=torch.float64)
    assert Q.push_(q, 3, x1[mine][:, :D], gather=gather_no_grad) == Q.push_(q_ref, 3, x1[:, :D]) == 11
    assert torch.equal(q, q_ref)
    checked.append("center_and_queue")

    # SwAV: the distributed Sinkhorn gives each rank its rows of the global codes, so the
    # per-sample swapped-prediction loss needs no gather; Sinkhorn on the local rows alone differs
    ref_loss, ref_grads = run_step(swav, None, x1, x2, ddp=False)
    loss, grads = run_step(swav, all_reduce_sum, x1[mine], x2[mine], ddp=True)
    assert close(grads, ref_grads), "swav: DDP gradient differs from single-process"
    assert torch.allclose(all_reduce_sum(loss) / W, ref_loss, rtol=1e-12), "swav: loss"
    scores = x1[:, :D] @ PROTOTYPES.T
    assert torch.allclose(L.sinkhorn_knopp(scores[mine], 0.05, 3, all_reduce_sum),
                          L.sinkhorn_knopp(scores, 0.05, 3)[mine], rtol=1e-10, atol=1e-14)
    _, local = run_step(swav, None, x1[mine], x2[mine], ddp=True)
    assert not close(local, ref_grads), "swav: Sinkhorn without the all-reduce should differ"
    checked.append("swav")
    return checked


def worker(rank, port, out):
    run_in_group(checks, rank, port, W, out)


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not built")
def test_ddp_gradients_equal_single_process(tmp_path):
    spawn(worker, W, tmp_path)
    for r in range(W):
        assert json.loads((tmp_path / f"rank{r}.json").read_text()) == \
            [*LOSSES, "center_and_queue", "swav"]


def test_gather_is_identity_in_one_process():
    x = torch.randn(3, 2, requires_grad=True)
    assert gather_with_grad(x) is x and gather_no_grad(x) is x
