"""VICReg (Bardes, Ponce, LeCun 2022): invariance + variance + covariance on two views.

With multi-crop (data.local_views k) the loss and its logged terms are means over the 1 + 2k
pairs of a global view with another view (`crop_pairs`, symmetric): global-global once and
every global-local pair, never local-local."""

from __future__ import annotations

from dataclasses import dataclass

from ..losses import vicreg
from ..models import heads
from .base import Method, StepOutput, apply_head, crop_pairs, encode


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
    multicrop = True
    default_projector = "8192-8192-8192"  # VICReg section 4.1 / main_vicreg.py --mlp
    # VICReg section 4.1 and appendix C (ImageNet, 1000 epochs, batch 2048); main_vicreg.py
    recipe = {
        "optim.optimizer": ("lars", "VICReg section 4.1, main_vicreg.py LARS"),
        "optim.lr": (0.2, "per 256 images, VICReg section 4.1: base_lr 0.2 x B/256 "
                          "(main_vicreg.py --base-lr)"),
        "optim.scaling": ("linear", "VICReg section 4.1"),
        "optim.weight_decay": (1e-6, "VICReg section 4.1, main_vicreg.py --wd"),
        "optim.momentum": (0.9, "LARS momentum, main_vicreg.py"),
        "optim.warmup_epochs": (10.0, "VICReg section 4.1, main_vicreg.py adjust_learning_rate"),
        "optim.final_lr": (0.001, "main_vicreg.py adjust_learning_rate: end_lr = base_lr x 0.001"),
    }

    def __init__(self, backbone, projector=None, opts=None, gather=None):
        super().__init__(backbone, projector, opts, gather)
        # main_vicreg.py Projector: Linear-BN-ReLU, last Linear without bias
        self.projector = heads.projector(backbone.feature_dim, self.head_spec(projector),
                                   last_bias=False)

    def forward(self, views):
        self.check_views(views)
        h = encode(self.backbone, views)  # V x (B, F)
        z = apply_head(self.projector, h)  # V x (B, D)
        o = self.opts
        pairs = crop_pairs(len(views), symmetric=True)
        terms = [vicreg(z[g], z[v], o.sim_weight, o.var_weight, o.cov_weight, gather=self.gather)
                 for g, v in pairs]
        loss, inv, var, cov = (sum(t[i] for t in terms) / len(pairs) for i in range(4))
        logs = {"invariance": inv.item(), "variance": var.item(), "covariance": cov.item()}
        return StepOutput(loss, h[0].detach(), z[0].detach(), logs)
