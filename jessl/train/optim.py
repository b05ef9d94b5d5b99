"""Optimizers: LARS as the BYOL / Barlow Twins / VICReg reference code runs it, parameter groups that
spare biases and norm layers from weight decay, and one builder keyed by the config's name."""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from torch import nn

OPTIMIZERS = ("sgd", "adamw", "lars")


def param_groups(model: nn.Module, weight_decay: float, fixed_lr=(),
                 fixed_lr_value: float | None = None) -> list[dict]:
    """Weights (ndim >= 2) with `weight_decay`; biases and norm-layer scales/shifts (ndim <= 1)
    with none. The no-decay groups are flagged `no_decay`: LARS then also skips their trust
    ratio (the references' `exclude_bias_and_norm`, `p.ndim == 1`), and `set_hyperparams` leaves
    their weight decay at 0. Parameters in `fixed_lr` (SimSiam's predictor) get a second pair
    of groups, flagged `fixed_lr`, whose learning rate is `fixed_lr_value` (the peak) and which
    `set_hyperparams` leaves alone. torch's optimizers keep unknown group keys, so the flags are
    harmless. The first group is always the scheduled weights (the lr that the trainer logs)."""
    fixed = {id(p) for p in fixed_lr}
    trained = [p for p in model.parameters() if p.requires_grad]
    groups = []
    for is_fixed in (False, True):
        params = [p for p in trained if (id(p) in fixed) == is_fixed]
        if is_fixed and not params:
            break
        if is_fixed and fixed_lr_value is None:
            raise ValueError("param_groups: fixed_lr parameters need fixed_lr_value")
        extra = {"fixed_lr": True, "lr": fixed_lr_value} if is_fixed else {}
        groups += [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay,
                    **extra},
                   {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0,
                    "no_decay": True, **extra}]
    return groups


class LARS(torch.optim.Optimizer):
    """Layer-wise Adaptive Rate Scaling (You et al. 2017) in the form of facebookresearch/vicreg and
    barlowtwins (and BYOL's): per parameter tensor p with gradient g,
        d  = g + weight_decay * p
        d *= eta * ||p|| / ||d||        (only if both norms are > 0; otherwise 1)
        mu = momentum * mu + d
        p -= lr * mu
    Parameters that are 1-D (biases, norm layers), or in a group with `no_decay=True`, get
    neither weight decay nor the trust ratio: plain momentum SGD.
    """

    def __init__(
        self,
        params,
        lr: float,
        momentum: float = 0.9,  # BYOL / Barlow Twins / VICReg references
        weight_decay: float = 0.0,
        eta: float = 0.001,  # trust coefficient, You et al. 2017; the same three references
        exclude_1d: bool = True,  # the references' exclude_bias_and_norm
    ):
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta,
                        no_decay=False, exclude_1d=exclude_1d)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                d = p.grad
                excluded = g["no_decay"] or (g["exclude_1d"] and p.ndim <= 1)
                if not excluded:
                    d = d.add(p, alpha=g["weight_decay"])
                    p_norm = torch.linalg.vector_norm(p)
                    d_norm = torch.linalg.vector_norm(d)
                    trust = torch.where(
                        (p_norm > 0) & (d_norm > 0), g["eta"] * p_norm / d_norm, torch.ones_like(p_norm)
                    )
                    d = d.mul(trust)
                state = self.state[p]
                if "mu" not in state:
                    state["mu"] = torch.zeros_like(p)
                mu = state["mu"]
                mu.mul_(g["momentum"]).add_(d)
                p.add_(mu, alpha=-g["lr"])
        return loss


def build_optimizer(
    name: str,
    params: Iterable,
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
) -> torch.optim.Optimizer:
    """`name` in {"sgd", "adamw", "lars"}. `params` are tensors or groups (e.g. `param_groups`);
    a group's own weight_decay wins over the argument. For AdamW, `momentum` is beta1, so the
    momentum schedules (F1-CLR) drive all three the same way through `set_hyperparams`."""
    params = list(params)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        # beta2 0.999: torch's default and the value used by DINO / MoCo v3 ViT recipes.
        return torch.optim.AdamW(params, lr=lr, betas=(momentum, 0.999), weight_decay=weight_decay)
    if name == "lars":
        return LARS(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")


def set_hyperparams(
    optimizer: torch.optim.Optimizer,
    lr: float | None = None,
    momentum: float | None = None,
    weight_decay: float | None = None,
) -> None:
    """Write one step's scheduled values into every group. The learning rate skips groups flagged
    `fixed_lr`; weight decay only touches groups that decay (groups flagged `no_decay` stay at
    0); momentum is AdamW's beta1."""
    for g in optimizer.param_groups:
        if lr is not None and not g.get("fixed_lr", False):
            g["lr"] = lr
        if momentum is not None:
            if "betas" in g:
                g["betas"] = (momentum, g["betas"][1])
            else:
                g["momentum"] = momentum
        if weight_decay is not None and not g.get("no_decay", False):
            g["weight_decay"] = weight_decay


def weight_decay_schedule(start: float, end: float | None, total_steps: int) -> np.ndarray:
    """(total_steps,) weight decay: constant `start`, or a half-cosine from `start` to `end`
    (DINO section 4.1 / main_dino.py: 0.04 -> 0.4, "the weight decay follows a cosine schedule")."""
    from jessl.schedules import cosine
    if end is None:
        return np.full(total_steps, float(start))
    return cosine(start, end, total_steps)
