"""Barlow Twins (Zbontar et al. 2021): drive the views' cross-correlation to the identity.

With multi-crop (data.local_views k) the loss is the mean over the 1 + 2k pairs of a global view
with another view (`crop_pairs`, symmetric): global-global once and every global-local pair."""

from __future__ import annotations

from dataclasses import dataclass

from ..losses import barlow_twins
from ..models import heads
from .base import Method, StepOutput, apply_head, crop_pairs, encode, mean_over_pairs


@dataclass
class BarlowTwinsOptions:
    lambd: float = 0.0051  # off-diagonal weight, facebookresearch/barlowtwins main.py --lambd


class BarlowTwins(Method):
    name = "barlowtwins"
    options = BarlowTwinsOptions
    views = "byol"  # Barlow Twins section 3 uses BYOL's augmentations
    num_views = 2
    multicrop = True
    default_projector = "8192-8192-8192"  # Barlow Twins section 4 / main.py --projector
    # Barlow Twins section 4 "Implementation details" (ImageNet, 1000 epochs, batch 2048)
    recipe = {
        "optim.optimizer": ("lars", "Barlow Twins section 4, main.py LARS"),
        # the paper's 0.2 is for weights; biases and BN get 0.0048 (main.py
        # --learning-rate-biases), which jessl's single lr does not separate
        "optim.lr": (0.2, "per 256 images, Barlow Twins section 4: 0.2 x B/256 for the weights "
                          "(main.py --learning-rate-weights); biases there get 0.0048"),
        "optim.scaling": ("linear", "Barlow Twins section 4"),
        "optim.weight_decay": (1.5e-6, "Barlow Twins section 4, main.py --weight-decay"),
        "optim.momentum": (0.9, "LARS momentum, main.py"),
        "optim.warmup_epochs": (10.0, "Barlow Twins section 4: 10 warm-up epochs"),
        "optim.final_lr": (0.001, "Barlow Twins section 4: cosine decay by a factor 1000 "
                                  "(main.py end_lr = base_lr x 0.001)"),
    }

    def __init__(self, backbone, projector=None, opts=None, gather=None):
        super().__init__(backbone, projector, opts, gather)
        # main.py: Linear(bias=False)-BN-ReLU, last Linear without bias, then the reference's
        # BatchNorm1d(affine=False) on the output; that last BN is applied inside
        # jessl.losses.barlow_twins (batch statistics, as the reference in training), so the
        # projector does not repeat it
        self.projector = heads.projector(backbone.feature_dim, self.head_spec(projector),
                                   last_bias=False)

    def forward(self, views):
        self.check_views(views)
        h = encode(self.backbone, views)  # V x (B, F)
        z = apply_head(self.projector, h)  # V x (B, D)
        loss = mean_over_pairs(lambda g, v: barlow_twins(z[g], z[v], self.opts.lambd,
                                                         gather=self.gather),
                               crop_pairs(len(views), symmetric=True))
        return StepOutput(loss, h[0].detach(), z[0].detach())
