"""SimCLR (Chen et al. 2020): NT-Xent between two augmented views, in-batch negatives.

With multi-crop (data.local_views k) the loss is NT-Xent's mean over the 1 + 2k pairs of a
global view with another view (`crop_pairs`, symmetric): each local crop is contrasted with each
global one, never with another local (SwAV's multi-crop, section 3.2, compares small crops with
the large ones). solo-learn's multi-crop SimCLR instead takes every view of an image as a
positive of every other (local-local pairs included)."""

from __future__ import annotations

from dataclasses import dataclass

from ..losses import info_nce
from ..models import heads
from .base import Method, StepOutput, apply_head, crop_pairs, encode, mean_over_pairs


@dataclass
class SimCLROptions:
    temperature: float = 0.1  # SimCLR Table 5 (ImageNet, batch 4096); 0.5 on CIFAR-10, appendix B.9
    # DCL (Yeh et al. 2022): the positive pair out of the softmax's denominator, which they find
    # matters most at small batches (their Fig. 1, batch 32-256)
    decoupled: bool = False


class SimCLR(Method):
    name = "simclr"
    options = SimCLROptions
    views = "simclr"
    num_views = 2
    multicrop = True
    # SimCLR v2 (Chen et al. 2020b) section 2: a 3-layer head of width 2048 ending in 128; FFCV-SSL
    # Table 1: 3 layers beat 2 at every batch size (v1's was 2048-128)
    default_projector = "2048-2048-128"
    # SimCLR appendix B.1 (ImageNet, 100-800 epochs at batch 256-8192): RunConfig's defaults. A
    # short CPU run wants the square-root rule, docs/recipes/cifar10_simclr.yaml
    recipe = {
        "optim.optimizer": ("lars", "SimCLR appendix B.1: LARS at every batch size"),
        "optim.lr": (0.3, "per 256 images, SimCLR appendix B.1: 0.3 x B/256"),
        "optim.scaling": ("linear", "SimCLR appendix B.1 (0.075 x sqrt(B) for small batches "
                                    "and short runs, appendix B.1 figure B.1)"),
        "optim.weight_decay": (1e-6, "SimCLR appendix B.1"),
        "optim.momentum": (0.9, "LARS momentum, SimCLR's lars_optimizer.py"),
        "optim.warmup_epochs": (10.0, "SimCLR appendix B.1: linear warm-up for 10 epochs"),
        "optim.final_lr": (0.0, "SimCLR appendix B.1: cosine decay without restarts, to 0"),
    }

    def __init__(self, backbone, projector=None, opts=None, gather=None):
        super().__init__(backbone, projector, opts, gather)
        self.projector = heads.projector(backbone.feature_dim, self.head_spec(projector))

    def forward(self, views):
        self.check_views(views)
        h = encode(self.backbone, views)  # V x (B, F)
        z = apply_head(self.projector, h)  # V x (B, D)
        loss = mean_over_pairs(lambda g, v: info_nce(z[g], z[v], self.opts.temperature,
                                                     self.gather, self.opts.decoupled),
                               crop_pairs(len(views), symmetric=True))
        return StepOutput(loss, h[0].detach(), z[0].detach())
