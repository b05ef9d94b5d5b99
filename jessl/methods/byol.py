"""BYOL (Grill et al. 2020): an online network with a predictor regresses an EMA target network.

With multi-crop (data.local_views k) the target network sees the 2 global views only and every
other view's prediction regresses each global target, as solo-learn's BYOL: 2 + 2k directed
pairs (`crop_pairs`). solo-learn sums them; here their mean x 2, so that two views give BYOL's
symmetrised loss exactly and the loss scale (hence the tuned lr) does not grow with k."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..losses import neg_cosine
from ..models import heads
from .base import (N_GLOBAL, Method, StepOutput, apply_head, cosine_at, crop_pairs, ema_copy,
                   ema_update_, encode, mean_over_pairs)


@dataclass
class BYOLOptions:
    predictor_hidden: str = "4096"  # predictor MLP widths before the output, BYOL section 3.3
    momentum: float = 0.996  # tau_base, EMA momentum at step 0, BYOL section 3.2
    momentum_end: float = 1.0  # tau at the last step (cosine from momentum), BYOL section 3.2


class BYOL(Method):
    name = "byol"
    options = BYOLOptions
    views = "byol"
    num_views = 2
    multicrop = True
    default_projector = "4096-256"  # BYOL section 3.3: Linear 4096-BN-ReLU-Linear 256
    # BYOL section 3.3 "Optimization" (ImageNet, 1000 epochs, batch 4096)
    recipe = {
        "optim.optimizer": ("lars", "BYOL section 3.3, biases and BN excluded from LARS and decay"),
        "optim.lr": (0.2, "per 256 images, BYOL section 3.3: 0.2 x B/256"),
        "optim.scaling": ("linear", "BYOL section 3.3"),
        "optim.weight_decay": (1.5e-6, "BYOL section 3.3"),
        "optim.momentum": (0.9, "LARS momentum, BYOL's reference code"),
        "optim.warmup_epochs": (10.0, "BYOL section 3.3: cosine decay after 10 warm-up epochs"),
        "optim.final_lr": (0.0, "BYOL section 3.3: cosine decay, no restarts"),
    }

    def __init__(self, backbone, projector=None, opts=None, gather=None):
        # gather unused: neg_cosine is a per-sample mean, exact under DDP (jessl.distributed)
        super().__init__(backbone, projector, opts, gather)
        self.projector = heads.projector(backbone.feature_dim, self.head_spec(projector))
        out_dim = heads.parse_dims(self.head_spec(projector))[-1]
        self.predictor = heads.predictor(out_dim, self.opts.predictor_hidden)
        self.teacher = ema_copy(nn.ModuleDict({"backbone": backbone, "projector": self.projector}))
        self.momentum = self.opts.momentum  # the value the last after_step used

    def forward(self, views):
        self.check_views(views)
        h = encode(self.backbone, views)  # V x (B, F)
        z = apply_head(self.projector, h)  # V x (B, D)
        p = apply_head(self.predictor, z)  # V x (B, D)
        with torch.no_grad():  # targets: the global views only
            t = apply_head(self.teacher["projector"],
                           encode(self.teacher["backbone"], views[:N_GLOBAL]))  # 2 x (B, D)
        # BYOL eq. 2: each 2 - 2 cos; two views: the loss plus its symmetric twin
        pairs = crop_pairs(len(views), symmetric=False)
        loss = 2 * mean_over_pairs(lambda g, v: neg_cosine(p[v], t[g]), pairs)
        return StepOutput(loss, h[0].detach(), z[0].detach(), {"momentum": self.momentum})

    def after_step(self, step, total_steps):
        self.momentum = cosine_at(self.opts.momentum, self.opts.momentum_end, step, total_steps)
        ema_update_(self.teacher["backbone"], self.backbone, self.momentum)
        ema_update_(self.teacher["projector"], self.projector, self.momentum)

