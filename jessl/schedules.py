"""Schedules as NumPy arrays, one value per optimizer step, computed once before training (the DINO
habit): the trainer indexes `lr[step]`, and tests and plots read the array directly.

Step t runs from 0 to total_steps - 1; every array has length total_steps.
"""

from __future__ import annotations

import math

import numpy as np


def cosine(start: float, end: float, total_steps: int) -> np.ndarray:
    """Half-cosine from `start` at step 0 to `end` at the last step, for EMA momentum (BYOL:
    0.996 -> 1, BYOL section 3.2), weight decay (DINO: 0.04 -> 0.4) or the teacher temperature.
    Ending exactly on `end` matters for BYOL, whose target stops moving at tau = 1."""
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if total_steps == 1:
        return np.array([start], dtype=np.float64)
    t = np.arange(total_steps) / (total_steps - 1)
    return end + (start - end) * 0.5 * (1 + np.cos(np.pi * t))


def warmup_cosine(
    base: float, final: float, total_steps: int, warmup_steps: int, start_warmup: float = 0.0
) -> np.ndarray:
    """Linear warm-up from `start_warmup` to `base` over `warmup_steps`, then half-cosine from
    `base` towards `final`, exactly DINO's utils.cosine_scheduler (the efficient-training paper's
    eq. 6 with a floor): the warm-up is linspace(start_warmup, base, warmup_steps), so its last
    step is `base`, and the cosine's last step is one step short of `final`."""
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"need 0 <= warmup_steps <= total_steps, got {warmup_steps}, {total_steps}")
    warmup = np.linspace(start_warmup, base, warmup_steps)
    decay_steps = total_steps - warmup_steps
    t = np.arange(decay_steps) / max(decay_steps, 1)
    decay = final + (base - final) * 0.5 * (1 + np.cos(np.pi * t))
    return np.concatenate([warmup, decay]).astype(np.float64)


def one_cycle_f1clr(
    lr_max: float,
    total_steps: int,
    warmup_steps: int,
    beta_high: float = 0.95,  # 1cycle's upper momentum, Smith 2018 (arXiv:1803.09820) 4.3
    beta_low: float = 0.85,  # 1cycle's lower momentum, same source; also torch OneCycleLR's default
    # (both config options: optim.f1clr_momentum_high / _low)
) -> tuple[np.ndarray, np.ndarray]:
    """Fixed 1-cycle (F1-CLR), Kocyigit, Hospedales, Bilen, WACV 2023, eq. 8: (lr, momentum).

    With t_w = warmup_steps and L = total_steps,
      t <  t_w: lr = lr_max - lr_max/2 (cos(pi t/t_w) + 1)
                beta = beta_l + (beta_h - beta_l)/2 (cos(pi t/t_w) + 1)
      t >= t_w: lr = lr_max/2 (cos(pi (t - t_w)/(L - t_w)) + 1)
                beta = beta_h - (beta_h - beta_l)/2 (cos(pi (t - t_w)/(L - t_w)) + 1)
    Learning rate rises 0 -> lr_max while momentum falls beta_h -> beta_l, then both reverse.
    t_w is an absolute step count: a longer run only lengthens the annealing phase (the "fixed" in
    F1-CLR). The paper warms up 80 of 480 epochs on Imagenette (its Table 5 ablation picks 80) and
    10 of 120 epochs on ImageNet, with lr_max 0.2 and 0.16 for SimSiam; it does not print beta_h,
    beta_l, hence Smith's 1cycle values above.
    """
    if not 0 < warmup_steps < total_steps:
        raise ValueError(f"need 0 < warmup_steps < total_steps, got {warmup_steps}, {total_steps}")
    t = np.arange(total_steps, dtype=np.float64)
    up = t < warmup_steps
    c_up = np.cos(np.pi * t / warmup_steps) + 1  # 2 -> 0 over the warm-up
    c_down = np.cos(np.pi * (t - warmup_steps) / (total_steps - warmup_steps)) + 1  # 2 -> 0 after
    lr = np.where(up, lr_max - lr_max / 2 * c_up, lr_max / 2 * c_down)
    momentum = np.where(
        up,
        beta_low + (beta_high - beta_low) / 2 * c_up,
        beta_high - (beta_high - beta_low) / 2 * c_down,
    )
    return lr, momentum


def scaled_lr(base_lr_per_256: float, batch_size: int, rule: str = "linear") -> float:
    """Learning rate for an effective (all-process) batch size, SSL Cookbook section 3.8.1.

    "linear": base * B / 256 (Goyal et al. 2017; SimCLR, BYOL, VICReg).
    "sqrt":   base * sqrt(B / 256), for small batches (SimCLR appendix B.1 writes it
              0.075 * sqrt(B), the same rule with base 1.2 per 256). Both rules give `base` at
              B = 256, so one per-256 number serves either.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if rule == "linear":
        return base_lr_per_256 * batch_size / 256
    if rule == "sqrt":
        return base_lr_per_256 * math.sqrt(batch_size / 256)
    raise ValueError(f"rule must be 'linear' or 'sqrt', got {rule!r}")
