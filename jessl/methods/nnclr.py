"""NNCLR (Dwibedi et al. 2021): SimCLR whose positive is the nearest neighbour of a view's
embedding in a support set (a queue of past embeddings), with a predictor.

With multi-crop (data.local_views k; solo-learn's NNCLR has none) the neighbours, the targets,
are looked up for the 2 global views only and every other view's prediction is contrasted
against each: the mean over the 2 + 2k directed pairs (`crop_pairs`), which for two views is
NNCLR's symmetrised loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..losses import nnclr_one_way
from ..models import heads
from ..queues import new_queue, push_
from .base import Method, StepOutput, apply_head, crop_pairs, encode, mean_over_pairs


@dataclass
class NNCLROptions:
    temperature: float = 0.1  # NNCLR section 4.1 (implementation details)
    queue_size: int = 98304  # support-set size Q, NNCLR section 4.1; at most the dataset size
    predictor_hidden: str = "4096"  # prediction MLP 256-4096-256, NNCLR section 4.1


class NNCLR(Method):
    name = "nnclr"
    options = NNCLROptions
    views = "byol"  # NNCLR section 4.1 uses BYOL's augmentations
    num_views = 2
    multicrop = True
    default_projector = "2048-2048-256"  # NNCLR section 4.1: 3 layers, hidden 2048, output 256
    # NNCLR section 4.1 "Implementation details" (ImageNet, 1000 epochs, batch 4096)
    recipe = {
        "optim.optimizer": ("lars", "NNCLR section 4.1"),
        "optim.lr": (0.3, "per 256 images, NNCLR section 4.1: base lr 0.3 x B/256"),
        "optim.scaling": ("linear", "NNCLR section 4.1"),
        "optim.weight_decay": (1e-6, "NNCLR section 4.1"),
        "optim.momentum": (0.9, "LARS momentum (SimCLR's setup, which NNCLR follows)"),
        "optim.warmup_epochs": (10.0, "NNCLR section 4.1: cosine decay after 10 warm-up epochs"),
        "optim.final_lr": (0.0, "NNCLR section 4.1: cosine decay"),
    }

    def __init__(self, backbone, projector=None, opts=None, gather=None):
        super().__init__(backbone, projector, opts, gather)
        spec = self.head_spec(projector)
        out_dim = heads.parse_dims(spec)[-1]
        self.projector = heads.projector(backbone.feature_dim, spec)
        self.predictor = heads.predictor(out_dim, self.opts.predictor_hidden)
        self.register_buffer("queue", new_queue(self.opts.queue_size, out_dim))  # (Q, D)
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    def forward(self, views):
        self.check_views(views)
        h = encode(self.backbone, views)  # V x (B, F)
        z = apply_head(self.projector, h)  # V x (B, D)
        p = apply_head(self.predictor, z)  # V x (B, D)
        loss = mean_over_pairs(lambda g, v: nnclr_one_way(z[g], p[v], self.queue,
                                                          self.opts.temperature, self.gather),
                               crop_pairs(len(views), symmetric=False))
        if self.training:  # the support set takes view 0's embeddings after the lookup
            self.queue_ptr.fill_(push_(self.queue, int(self.queue_ptr), z[0], self.gather))
        return StepOutput(loss, h[0].detach(), z[0].detach())
