"""Every registered method under real DDP equals the single-process method on the global batch:
2 processes, gloo backend, one spawn for every check (~10 s on 2 cores).

Each rank runs the method wrapped in DDP on its half of a global batch, with
`gather_with_grad` and synchronised batch-norm, as `jessl train` does with `train.sync_bn`.
Two forward/backward passes with the same weights: the first checks the loss, every parameter
gradient (after DDP's averaging) and the state the step leaves behind (MoCo's and SwAV's queues,
NNCLR's support set, DINO's centre, batch-norm running statistics); the second checks that the
loss computed *from* that state still equals the single-process one. In float64, so a mismatch is a
bug and not rounding. The same run with per-process batch-norm must differ, which shows the
check can fail; tests/test_distributed.py checks the gathered losses alone, with the
1/world_size bug as its failing case.
"""

import json

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from jessl.distributed import convert_sync_batchnorm, gather_with_grad
from jessl.methods import build_method
from jessl.models.backbones import SmallCNN

from .spawn import run_in_group, spawn

W, B = 2, 4  # processes, images per process
# name -> (options, projector, view sizes): small heads and queues, and the state each keeps
METHODS = {
    "simclr": ({"temperature": 0.2}, "16-8", (8, 8)),  # negatives: the gathered batch
    "vicreg": ({}, "16-8", (8, 8)),  # variance and covariance of the gathered batch
    "barlowtwins": ({}, "16-8", (8, 8)),  # cross-correlation of the gathered batch
    "nnclr": ({"queue_size": 24, "predictor_hidden": "16"}, "16-8", (8, 8)),  # support set
    "dino": ({"num_prototypes": 16}, "16-8", (8, 8, 6, 6)),  # centre; 2 global + 2 local crops
    # distributed Sinkhorn, with a queue shared out over the ranks (see build)
    "swav": ({"num_prototypes": 16, "queue_length": 12, "queue_start": 0.0}, "16-8", (8, 8, 6, 6)),
    "moco": ({"queue_size": 24}, "16-8", (8, 8)),  # v2: the queue of keys
    "moco_v3": ({"version": "v3", "predictor_hidden": "16"}, "16-8", (8, 8)),  # in-batch keys
    "byol": ({}, "16-8", (8, 8)),  # per-sample losses: DDP's average alone is exact
    # multi-crop: the two-view losses over the global-local pairs (jessl.methods.base.crop_pairs)
    "simclr_multicrop": ({"temperature": 0.2}, "16-8", (8, 8, 6, 6)),
    "vicreg_multicrop": ({}, "16-8", (8, 8, 6)),
    "barlowtwins_multicrop": ({}, "16-8", (8, 8, 6)),
    "nnclr_multicrop": ({"queue_size": 24, "predictor_hidden": "16"}, "16-8", (8, 8, 6)),
    "byol_multicrop": ({}, "16-8", (8, 8, 6, 6)),
}


def views(sizes):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(W * B, 3, s, s, generator=g, dtype=torch.float64) for s in sizes]


def build(name, sync):
    opts, projector, _ = METHODS[name]
    torch.manual_seed(1)  # the same weights, queues and prototypes in every process
    method = build_method(name.split("_")[0], SmallCNN(widths=(4, 8)), projector,
                          opts, gather_with_grad if sync is not None else None).double()
    if name == "swav":  # a full queue from the start: both steps share it out, the first one
        # of random rows, the second one of those and the first batch (a queue holding only
        # copies of the batch would hide a rank that used all of it: Sinkhorn ignores duplication)
        method.queue.copy_(F.normalize(torch.randn(method.queue.shape, dtype=torch.float64), dim=2))
    return convert_sync_batchnorm(method) if sync else method


def two_steps(method, model, xs):
    """[(loss, parameter gradients, state tensors)] of two forward/backward passes."""
    out = []
    for _ in range(2):
        method.zero_grad(set_to_none=True)
        loss = model(xs).loss
        loss.backward()
        grads = [p.grad.clone() for p in method.parameters_to_optimize()]
        state = {k: v.clone() for k, v in method.state_dict().items()
                 if k.endswith(("queue", "center", "running_mean", "running_var"))}
        out.append((loss.detach(), grads, state))
    return out


def close(a, b):
    return all(torch.allclose(x, y, rtol=1e-7, atol=1e-10) for x, y in zip(a, b))


def checks(rank):
    mine = slice(rank * B, (rank + 1) * B)
    checked = []
    for name, (_, _, sizes) in METHODS.items():
        xs = views(sizes)
        single = build(name, None)
        ref = two_steps(single, single, xs)
        method = build(name, True)
        got = two_steps(method, DDP(method), [x[mine] for x in xs])
        for step, ((loss, grads, state), (ref_loss, ref_grads, ref_state)) in \
                enumerate(zip(got, ref)):
            # BYOL's loss is a per-sample mean: the mean over ranks is the global value
            mean = loss.clone()
            dist.all_reduce(mean)
            assert torch.allclose(mean / W, ref_loss, rtol=1e-9), f"{name} {step}: loss"
            assert close(grads, ref_grads), f"{name} step {step}: gradients differ"
            assert state.keys() == ref_state.keys()
            assert close(state.values(), ref_state.values()), f"{name} {step}: state differs"
        checked.append(name)
    # the failing case: batch-norm per process changes the gradients
    method = build("simclr", False)
    got = two_steps(method, DDP(method), [x[mine] for x in views(METHODS["simclr"][2])])
    single = build("simclr", None)
    ref = two_steps(single, single, views(METHODS["simclr"][2]))
    assert not close(got[0][1], ref[0][1]), "per-process batch-norm should differ"
    checked.append("unsynced_bn_differs")
    return checked


def worker(rank, port, out):
    run_in_group(checks, rank, port, W, out)


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not built")
def test_ddp_methods_equal_single_process(tmp_path):
    spawn(worker, W, tmp_path)
    for r in range(W):
        assert json.loads((tmp_path / f"rank{r}.json").read_text()) == \
            [*METHODS, "unsynced_bn_differs"]
