"""VICReg (Bardes, Ponce, LeCun 2022): invariance + variance + covariance on two views."""

from __future__ import annotations

from dataclasses import dataclass

from ..losses import vicreg
from ..models import heads
from .base import Method, StepOutput, apply_head, encode


@dataclass
class VICRegOptions:
    sim_weight: float = 25.0  # lambda, invariance weight, VICReg section 4.3
    var_weight: float = 25.0  # mu, variance weight, VICReg section 4.3
    cov_weight: float = 1.0  # nu, covariance weight, VICReg section 4.3


class VICReg(Method):
    name = "vicreg"
    options = VICRegOptions
    views = "byol"  # VICReg section 4.1 uses BYOL's augmentations
    num_views = 2
    default_projector = "8192-8192-8192"  # VICReg section 4.1 / main_vicreg.py --mlp

    def __init__(self, backbone, projector=None, opts=None, gather=None):
        super().__init__(backbone, projector, opts, gather)
        # main_vicreg.py Projector: Linear-BN-ReLU, last Linear without bias
        self.projector = heads.projector(backbone.feature_dim, self.head_spec(projector),
                                   last_bias=False)

    def forward(self, views):
        self.check_views(views)
        h = encode(self.backbone, views)  # 2 x (B, F)
        z = apply_head(self.projector, h)  # 2 x (B, D)
        o = self.opts
        terms = vicreg(z[0], z[1], o.sim_weight, o.var_weight, o.cov_weight, gather=self.gather)
        logs = {"invariance": terms.invariance.item(), "variance": terms.variance.item(),
                "covariance": terms.covariance.item()}
        return StepOutput(terms.loss, h[0].detach(), z[0].detach(), logs)
