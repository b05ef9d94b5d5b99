"""Instance SimCLR (Bordes, Balestriero, Vincent 2023, "Towards democratizing JE-SSL", section 3.4):
no other image is a negative. Views: two Gaussian-noise versions of the whole image (the positive
pair) and one small random patch of the same image (its only negative); see the "instance" preset
in jessl/data/views.py and `jessl.losses.instance_info_nce` for our reading of the loss."""

from __future__ import annotations

from dataclasses import dataclass

from ..losses import instance_info_nce
from ..models import heads
from .base import Method, StepOutput, apply_head, encode
from .simclr import SimCLR


@dataclass
class InstanceSimCLROptions:
    # the paper states no temperature; SimCLR's ImageNet value (Table 5) as a start
    temperature: float = 0.1


class InstanceSimCLR(Method):
    name = "instance_simclr"
    options = InstanceSimCLROptions
    views = "instance"
    num_views = 3  # [noise view 1, noise view 2, patch]
    default_projector = "2048-2048-128"  # SimCLR's (FFCV-SSL trains it as a SimCLR variant)
    recipe = SimCLR.recipe  # FFCV-SSL section 3.4 trains it with SimCLR's setup

    def __init__(self, backbone, projector=None, opts=None, gather=None):
        # gather unused: each image's loss involves only its own three views, so DDP's mean of
        # per-rank means is already exact (jessl.distributed)
        super().__init__(backbone, projector, opts, gather)
        self.projector = heads.projector(backbone.feature_dim, self.head_spec(projector))

    def forward(self, views):
        self.check_views(views)
        h = encode(self.backbone, views)  # 3 x (B, F)
        z = apply_head(self.projector, h)  # 3 x (B, D)
        loss = instance_info_nce(z[0], z[1], z[2], self.opts.temperature)
        return StepOutput(loss, h[0].detach(), z[0].detach())
