"""SimCLR (Chen et al. 2020): NT-Xent between two augmented views, in-batch negatives."""

from __future__ import annotations

from dataclasses import dataclass

from ..losses import info_nce
from ..models import heads
from .base import Method, StepOutput, apply_head, encode


@dataclass
class SimCLROptions:
    temperature: float = 0.1  # SimCLR Table 5 (ImageNet, batch 4096); 0.5 on CIFAR-10, appendix B.9


class SimCLR(Method):
    name = "simclr"
    options = SimCLROptions
    views = "simclr"
    num_views = 2
    # SimCLR v2 (Chen et al. 2020b) section 2: a 3-layer head of width 2048 ending in 128; FFCV-SSL
    # Table 1: 3 layers beat 2 at every batch size (v1's was 2048-128)
    default_projector = "2048-2048-128"

    def __init__(self, backbone, projector=None, opts=None, gather=None):
        super().__init__(backbone, projector, opts, gather)
        self.projector = heads.projector(backbone.feature_dim, self.head_spec(projector))

    def forward(self, views):
        self.check_views(views)
        h = encode(self.backbone, views)  # 2 x (B, F)
        z = apply_head(self.projector, h)  # 2 x (B, D)
        loss = info_nce(z[0], z[1], self.opts.temperature, self.gather)
        return StepOutput(loss, h[0].detach(), z[0].detach())
