"""SwAV (Caron et al. 2020; SSL Cookbook 2.2): online clustering. The 2 global views get soft codes
over K prototypes from Sinkhorn-Knopp (an equal partition of the batch, and of a queue of recent
embeddings when the batch is small); every other view, local crops included, predicts them."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import distributed
from ..losses import sinkhorn_knopp, swav_loss
from ..models import heads
from ..queues import push_
from .base import N_GLOBAL, Method, StepOutput, apply_head, encode

# codes come from the N_GLOBAL = 2 global crops only (main_swav.py --crops_for_assign 0 1)


@dataclass
class SwAVOptions:
    num_prototypes: int = 3000  # K, main_swav.py --nmb_prototypes; solo-learn's CIFAR also 3000
    temperature: float = 0.1  # tau of the swapped prediction, SwAV appendix A.1
    epsilon: float = 0.05  # Sinkhorn entropy weight, SwAV appendix A.1 (higher: trivial codes)
    sinkhorn_iterations: int = 3  # SwAV section 3.1
    # embeddings per global view kept for the codes (0: none). A batch smaller than K cannot be
    # split equally over K prototypes, so SwAV adds the last 15 batches of 256, 3840 embeddings
    # (section 3.1 "Working with small batches", appendix A.6); batches of 4096 use none
    queue_length: int = 3840
    # fraction of all steps before the queue fills (it joins the codes once full). SwAV starts
    # it after 15 of 200 epochs (appendix A.6, 7.5%), solo-learn's CIFAR after 50 of 1000 (5%):
    # earlier, "the network is changing a lot from an iteration to another". A CPU run is
    # ~10 epochs, where 15 epochs would mean never; 10% waits out its first epoch
    queue_start: float = 0.1
    # fraction of all steps with frozen prototypes: "the first epoch" (appendix A.1), which is
    # main_swav.py's 313 iterations at batch 4096, i.e. 1% of its 100-epoch run
    freeze_prototypes: float = 0.01


class SwAV(Method):
    name = "swav"
    options = SwAVOptions
    views = "swav"  # 2 global crops (scale 0.14-1) then 6 local ones (0.05-0.14), appendix A.2
    num_views = None  # any number >= 2: the first 2 are the global views
    multicrop = True  # takes data.local_views (issue 14's multi-crop option; unused before it)
    # SwAV appendix A.1: a 2-layer MLP to 128-D, main_swav.py's hidden_mlp 2048 with BatchNorm
    # (solo-learn's CIFAR SwAV: the same 2048-128)
    default_projector = "2048-128"
    # {config key: (value, source)} for the keys a user leaves unset (issue 14's method recipes):
    # the batch-256 setting with a queue (appendix A.6, swav_200ep_bs256_pretrain.sh), jessl's
    # default batch; A.1's batch 4096 uses 4.8 (0.3 per 256) with 10 warm-up epochs
    recipe = {
        "optim.optimizer": ("lars", "SwAV appendix A.6 (LARC, trust 0.001, in main_swav.py)"),
        "optim.lr": (0.6, "per 256 images, SwAV appendix A.6 (batch 256)"),
        "optim.scaling": ("linear", "lr x B/256, as solo-learn's SwAV"),
        "optim.weight_decay": (1e-6, "SwAV appendix A.1 and A.6"),
        "optim.momentum": (0.9, "main_swav.py: SGD momentum 0.9 under LARC"),
        "optim.warmup_epochs": (0.0, "swav_200ep_bs256_pretrain.sh --warmup_epochs 0"),
        "optim.final_lr": (0.001, "SwAV appendix A.6: cosine to 0.0006 = 0.001 x 0.6"),
    }

    def __init__(self, backbone, projector=None, opts=None, gather=None):
        super().__init__(backbone, projector, opts, gather)
        o = self.opts
        if o.num_prototypes < 1 or o.queue_length < 0 or min(o.epsilon, o.temperature) <= 0:
            raise ValueError(f"SwAV needs num_prototypes >= 1, queue_length >= 0 and positive "
                             f"epsilon and temperature, got {o}")
        spec = self.head_spec(projector)
        dim = heads.parse_dims(spec)[-1]
        self.projector = heads.projector(backbone.feature_dim, spec)
        self.prototypes = nn.Linear(dim, o.num_prototypes, bias=False)  # rows: prototypes c_k
        self.normalize_prototypes()
        # the last embeddings of each global view; every rank holds the same queue (pushes
        # gather), so rank 0's checkpoint resumes any number of processes
        self.register_buffer("queue", torch.zeros(N_GLOBAL, o.queue_length, dim))  # (2, L, D)
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        on = o.queue_length > 0 and o.queue_start <= 0  # pushes start; after_step sets it later
        self.register_buffer("queue_on", torch.tensor(on))

    @torch.no_grad()
    def normalize_prototypes(self) -> None:
        """Prototypes back onto the unit sphere, in place (main_swav.py, before every step)."""
        self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))

    def queue_full(self) -> bool:  # main_swav.py uses it once full; rows fill from 0, unit
        return self.queue.shape[1] > 0 and bool(self.queue[0, -1].any())

    @torch.no_grad()
    def codes(self, scores: torch.Tensor, i: int) -> torch.Tensor:
        """Sinkhorn codes (B, K) of global view i from its scores (B, K), the full queue joining
        the partition. Under DDP each rank adds every W-th queue row: the shares partition the
        queue, and the distributed Sinkhorn gives each rank its rows of the global codes."""
        queue, all_reduce = self.queue[i], None
        if self.gather is not None:
            queue = queue[distributed.rank()::distributed.world_size()]  # (L/W, D)
            all_reduce = distributed.all_reduce_sum
        rows = [queue @ self.prototypes.weight.T] if self.queue_full() else []  # queue first
        return sinkhorn_knopp(torch.cat(rows + [scores.detach()]), self.opts.epsilon,
                              self.opts.sinkhorn_iterations, all_reduce)[-scores.shape[0]:]

    def forward(self, views):
        self.check_views(views)
        h = encode(self.backbone, views)  # V x (B, F)
        z = apply_head(self.projector, h)  # V x (B, D)
        unit = [F.normalize(x, dim=1) for x in z]  # SwAV section 3.1: on the unit sphere
        logits = apply_head(self.prototypes, unit)  # V x (B, K) scores z . c
        used = self.queue_full()
        codes = [self.codes(logits[i], i) for i in range(N_GLOBAL)]  # local views: none
        if self.training and bool(self.queue_on):  # after the codes, as main_swav.py
            ptr = int(self.queue_ptr)
            for i in range(N_GLOBAL):
                new_ptr = push_(self.queue[i], ptr, unit[i], self.gather)
            self.queue_ptr.fill_(new_ptr)
        loss = swav_loss(logits, codes, self.opts.temperature)
        return StepOutput(loss, h[0].detach(), z[0].detach(), {"queue": float(used)})

    def before_optimizer_step(self, step, total_steps):
        # main_swav.py: prototype gradients dropped for the first iterations, after backward
        if step < int(round(self.opts.freeze_prototypes * total_steps)):
            self.prototypes.weight.grad = None

    def after_step(self, step, total_steps):
        self.normalize_prototypes()  # the next forward sees unit prototypes, as in main_swav.py
        if step + 1 >= int(round(self.opts.queue_start * total_steps)):
            self.queue_on.fill_(self.opts.queue_length > 0)
