"""SimSiam (Chen & He 2021): a predictor and a stop-gradient, no negatives and no EMA."""

from __future__ import annotations

from dataclasses import dataclass

from ..losses import neg_cosine
from ..models import heads
from .base import Method, StepOutput, apply_head, encode


@dataclass
class SimSiamOptions:
    predictor_hidden: str = "512"  # bottleneck width, SimSiam section 3 (2048 -> 512 -> 2048)
    # SimSiam section 4.2 / Table 1: the predictor at a constant lr (not decayed) did better,
    # 68.1% against 67.7%, and facebookresearch/simsiam's --fix-pred-lr; solo-learn's static_lr
    fix_predictor_lr: bool = True


class SimSiam(Method):
    name = "simsiam"
    options = SimSiamOptions
    views = "simclr"  # SimSiam section 4 uses MoCo v2's = SimCLR's augmentations
    num_views = 2
    # SimSiam section 3: 3 layers of 2048, BN on every layer including the output (affine-free in
    # facebookresearch/simsiam builder.py), no ReLU after the last
    default_projector = "2048-2048-2048"
    # SimSiam section 4 "Optimizer" (ImageNet, 100 epochs, batch 512)
    recipe = {
        "optim.optimizer": ("sgd", "SimSiam section 4: SGD, LARS only for batches >= 1024"),
        "optim.lr": (0.05, "per 256 images, SimSiam section 4: lr x B/256, base lr 0.05"),
        "optim.scaling": ("linear", "SimSiam section 4"),
        "optim.weight_decay": (1e-4, "SimSiam section 4"),
        "optim.momentum": (0.9, "SimSiam section 4"),
        "optim.warmup_epochs": (0.0, "SimSiam section 4: no warm-up at batch 512 (10 epochs "
                                     "only with LARS at batch >= 1024, appendix B)"),
        "optim.final_lr": (0.0, "SimSiam section 4: cosine decay schedule"),
    }

    def __init__(self, backbone, projector=None, opts=None, gather=None):
        # gather unused: the loss is a per-sample mean, exact under DDP (jessl.distributed)
        super().__init__(backbone, projector, opts, gather)
        self.projector = heads.projector(backbone.feature_dim, self.head_spec(projector),
                                         last_norm="bn_noaffine", last_bias=False)
        out_dim = heads.parse_dims(self.head_spec(projector))[-1]
        # SimSiam section 3: Linear-BN-ReLU then a plain Linear (with bias)
        self.predictor = heads.predictor(out_dim, self.opts.predictor_hidden)

    def fixed_lr_parameters(self):
        return list(self.predictor.parameters()) if self.opts.fix_predictor_lr else []

    def forward(self, views):
        self.check_views(views)
        h = encode(self.backbone, views)  # 2 x (B, F)
        z = apply_head(self.projector, h)  # 2 x (B, D)
        p = apply_head(self.predictor, z)  # 2 x (B, D)
        # SimSiam eq. 2 is D(p1, sg(z2))/2 + D(p2, sg(z1))/2 with D = -cos; neg_cosine is
        # 2 - 2 cos, so a quarter of the sum is SimSiam's loss + 1: the same gradient, and the
        # paper's learning rate carries over
        loss = 0.25 * (neg_cosine(p[0], z[1]) + neg_cosine(p[1], z[0]))
        return StepOutput(loss, h[0].detach(), z[0].detach())
