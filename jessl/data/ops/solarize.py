"""RandomSolarize: invert every level at or above a threshold (BYOL, Grill et al. 2020, table 6)."""

from __future__ import annotations

import numpy as np

from jessl.data.ops._jit import jit
from jessl.data.ops.crop import check_view

THRESHOLD = 128  # uint8 levels; BYOL's 0.5 on [0, 1] images, torchvision RandomSolarize usage
P = 0.2  # BYOL's second view (the first view uses 0.0)


def sample_solarize(rng: np.random.Generator, p: float = P) -> bool:
    """RandomSolarize(threshold, p) on `rng`: whether this view is solarized. One draw."""
    return bool(rng.random() < p)


@jit
def solarize_kernel(src, threshold, dst):
    """dst = where(src >= threshold, 255 - src, src) on uint8 arrays of any shape; src may be dst."""
    flat_src = src.reshape(src.size)
    flat_dst = dst.reshape(dst.size)
    for i in range(flat_src.size):
        v = flat_src[i]
        flat_dst[i] = np.uint8(255 - int(v)) if v >= threshold else v


def solarize(src: np.ndarray, threshold: float, dst: np.ndarray) -> np.ndarray:
    """torchvision v2 F.solarize(img, threshold) on (H, W, 3) uint8, into dst."""
    check_view(src, "src")
    check_view(dst)
    if src.shape != dst.shape:
        raise ValueError(f"src {src.shape} and dst {dst.shape} must have the same shape")
    if not 0 <= threshold <= 255:
        raise ValueError(f"threshold must be in [0, 255] for uint8 images, got {threshold}")
    solarize_kernel(src, float(threshold), dst)
    return dst
