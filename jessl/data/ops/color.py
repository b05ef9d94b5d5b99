"""ColorJitter and RandomGrayscale, fused into one float32 pass per pixel.

Each adjustment copies torchvision.transforms.v2.functional on uint8 tensors operation for
operation in float32 (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue,
rgb_to_grayscale), including the truncation back to uint8 after every op, so a fused view equals
torchvision's chain of separate calls. What cannot be copied bit for bit is torch's vectorised
fused multiply-add in `_blend` and its cascade-summed mean: outputs differ by at most 1 level on
rare pixels (measured in tests/data/ops/test_color.py).

Contrast blends towards the mean grey level of the *current* image (after the ops drawn before it),
so the kernel makes two passes when contrast is on: the ops before it plus the reduction, then
contrast and the ops after it. Without contrast it is one pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jessl.data.ops._jit import jit
from jessl.data.ops.crop import check_view

# op ids: torchvision ColorJitter's fn_idx numbering
BRIGHTNESS, CONTRAST, SATURATION, HUE = 0, 1, 2, 3
SKIP = -1  # an order slot with no op (a disabled adjustment, or the whole jitter not applied)

# Defaults: SimCLR's colour distortion at strength s=1 (Chen et al. 2020, appendix A):
# ColorJitter(0.8s, 0.8s, 0.8s, 0.2s) applied with p=0.8, RandomGrayscale p=0.2.
BRIGHTNESS_DEFAULT = 0.8  # factor drawn in [max(0, 1-b), 1+b]
CONTRAST_DEFAULT = 0.8  # factor drawn in [max(0, 1-c), 1+c]
SATURATION_DEFAULT = 0.8  # factor drawn in [max(0, 1-s), 1+s]
HUE_DEFAULT = 0.2  # hue shift drawn in [-h, h], in turns of the colour wheel (max 0.5)
JITTER_P = 0.8  # SimCLR RandomApply probability
GRAYSCALE_P = 0.2  # SimCLR RandomGrayscale probability

# torchvision's constants, as float32 so numba keeps the arithmetic in float32 as torch does
F32 = np.float32
ZERO, ONE, TWO, FOUR, SIX = F32(0.0), F32(1.0), F32(2.0), F32(4.0), F32(6.0)
MAX = F32(255.0)
WR, WG, WB = F32(0.2989), F32(0.587), F32(0.114)  # rgb_to_grayscale (ITU-R 601-2 luma, rounded)
INV255 = F32(1.0 / 255)  # to_dtype(uint8 -> float32, scale=True)
TO_U8 = F32(255 + 1.0 - 1e-3)  # to_dtype(float32 -> uint8, scale=True): x * 255.999, truncated
SIXTH = F32(1.0 / 6.0)


@dataclass(frozen=True)
class JitterParams:
    """One ColorJitter draw: the op ids in application order and each op's factor."""
    order: np.ndarray  # (4,) int64: op ids in the order applied, SKIP where no op
    factors: np.ndarray  # (4,) float32, indexed by op id (unused for skipped ops)


NO_JITTER = JitterParams(np.full(4, SKIP, np.int64), np.array([1, 1, 1, 0], np.float32))


def jitter_range(value, name: str, center: float = 1.0, bound: tuple[float, float] = (0.0, np.inf),
                 ) -> tuple[float, float] | None:
    """torchvision ColorJitter._check_input: a number v means [center-v, center+v]; None if off."""
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"{name} must be non-negative, got {value}")
        lo, hi = center - float(value), center + float(value)
        if name != "hue":
            lo = max(lo, 0.0)
    else:
        lo, hi = (float(v) for v in value)
    if not bound[0] <= lo <= hi <= bound[1]:
        raise ValueError(f"{name} range must lie in {bound}, got {(lo, hi)}")
    return None if lo == hi == center else (lo, hi)


def sample_color_jitter(rng: np.random.Generator, brightness=BRIGHTNESS_DEFAULT,
                        contrast=CONTRAST_DEFAULT, saturation=SATURATION_DEFAULT, hue=HUE_DEFAULT,
                        p: float = JITTER_P) -> JitterParams:
    """RandomApply(ColorJitter(...), p) on `rng`: a random op order and uniform factors.

    As torchvision's ColorJitter.make_params: a permutation of the 4 ops, then each enabled op's
    factor uniform in its range. Always 6 draws (coin, permutation, 4 factors) whatever applies.
    """
    ranges = (jitter_range(brightness, "brightness"), jitter_range(contrast, "contrast"),
              jitter_range(saturation, "saturation"),
              jitter_range(hue, "hue", center=0.0, bound=(-0.5, 0.5)))
    applied = rng.random() < p
    order = rng.permutation(4).astype(np.int64)
    factors = np.array([1.0, 1.0, 1.0, 0.0], np.float32)
    for op, r in enumerate(ranges):
        u = rng.random()
        if r is not None:
            factors[op] = r[0] + (r[1] - r[0]) * u
    if not applied:
        return NO_JITTER
    order = np.array([op if ranges[op] is not None else SKIP for op in order], np.int64)
    return JitterParams(order, factors)


def sample_grayscale(rng: np.random.Generator, p: float = GRAYSCALE_P) -> bool:
    """RandomGrayscale(p) on `rng`: whether this view turns grey."""
    return bool(rng.random() < p)


# --- per-pixel arithmetic, shared by the kernel's passes -------------------------------------------

@jit
def gray_level(r, g, b):
    """rgb_to_grayscale in float32 (before truncation), torch's multiply-add order."""
    return F32(F32(F32(r * WR) + F32(g * WG)) + F32(b * WB))


@jit
def blend(x, other, ratio, alpha):
    """torchvision _blend for uint8: x*ratio + other*(1-ratio), clamped, truncated.

    torch's `add_(other, alpha=...)` is a fused multiply-add on AVX2 CPUs: one rounding of
    other*alpha + x*ratio. float64 reproduces it (a product of two float32 is exact in float64)
    without relying on an fma instruction that plain Python lacks.
    """
    v = F32(np.float64(F32(x * ratio)) + np.float64(other) * np.float64(alpha))
    return np.floor(min(max(v, ZERO), MAX))


@jit
def hue_shift(r, g, b, shift):
    """adjust_hue on one uint8 pixel: to [0,1], HSV, rotate hue by `shift` turns, back, truncate."""
    r = F32(r * INV255)
    g = F32(g * INV255)
    b = F32(b * INV255)
    # Written without data-dependent branches (selects only): on photos the branchy form
    # mispredicts often enough to double the kernel's time. Same float32 operations as torch.
    maxc = max(r, max(g, b))
    minc = min(r, min(g, b))
    eqc = maxc == minc
    crange = F32(maxc - minc)
    s = F32(crange / (ONE if eqc else maxc))
    div = ONE if eqc else crange
    rc = F32(F32(maxc - r) / div)
    gc = F32(F32(maxc - g) / div)
    bc = F32(F32(maxc - b) / div)
    is_r = maxc == r
    is_g = (maxc == g) & (~is_r)
    hr = F32(bc - gc) if is_r else ZERO
    hg = F32(F32(rc + TWO) - bc) if is_g else ZERO
    hb = F32(F32(gc + FOUR) - rc) if (~is_r) & (maxc != g) else ZERO
    h = F32(F32(hr + hg) + hb)
    h = F32(F32(h * SIXTH) + ONE)
    # fmod(h, 1) without libm's fmod: h lies in [5/6, 11/6], and for h in [1, 2) h - 1 is
    # exact in float32 (Sterbenz), so this is fmod bit for bit
    h = F32(h - ONE) if h >= ONE else h
    # remainder_(1.0) as torch computes it: fmod, then shift negatives up by the divisor;
    # h + shift lies in [-0.5, 1.5), where the same exactness argument holds
    h = F32(h + shift)
    h = F32(h - ONE) if h >= ONE else (F32(h + ONE) if h < ZERO else h)
    # _hsv_to_rgb; sector 6 (h * 6 rounding up to 6) is sector 0, as torch's remainder(i, 6)
    h6 = F32(h * SIX)
    fi = np.floor(h6)
    f = F32(h6 - fi)
    sxf = F32(s * f)
    one_minus_s = F32(ONE - s)
    q = min(max(F32(F32(ONE - sxf) * maxc), ZERO), ONE)
    t = min(max(F32(F32(sxf + one_minus_s) * maxc), ZERO), ONE)
    p = min(max(F32(one_minus_s * maxc), ZERO), ONE)
    v = maxc
    i0 = (fi == ZERO) | (fi == SIX)
    r = v if i0 | (fi == 5) else (q if fi == 1 else (t if fi == 4 else p))
    g = t if i0 else (v if (fi == 1) | (fi == 2) else (q if fi == 3 else p))
    b = p if i0 | (fi == 1) else (t if fi == 2 else (q if fi == 5 else v))
    return np.floor(F32(r * TO_U8)), np.floor(F32(g * TO_U8)), np.floor(F32(b * TO_U8))


@jit
def apply_op(op, factor, mean, r, g, b):
    """One ColorJitter op on a pixel held as integral float32 levels; returns the new levels."""
    if op == BRIGHTNESS:
        return (np.floor(min(F32(r * factor), MAX)), np.floor(min(F32(g * factor), MAX)),
                np.floor(min(F32(b * factor), MAX)))
    if op == CONTRAST:
        alpha = F32(1.0 - factor)
        return blend(r, mean, factor, alpha), blend(g, mean, factor, alpha), blend(b, mean, factor, alpha)
    if op == SATURATION:
        alpha = F32(1.0 - factor)
        grey = np.floor(gray_level(r, g, b))
        return blend(r, grey, factor, alpha), blend(g, grey, factor, alpha), blend(b, grey, factor, alpha)
    if op == HUE:
        return hue_shift(r, g, b, factor)
    return r, g, b


@jit
def color_kernel(src, order, factors, grayscale, dst):
    """ColorJitter ops in `order` with `factors`, then rgb_to_grayscale if `grayscale`.

    src, dst: (H, W, 3) uint8, may be the same array. order: (4,) int64 op ids, SKIP = none.
    factors: (4,) float32 by op id. When contrast is on, pass 1 applies the ops before it and
    sums the floored grey levels (torch's mean of the current image); pass 2 does the rest.
    """
    height, width = src.shape[0], src.shape[1]
    split = 4  # order index of contrast; 4 = no contrast, one pass
    for k in range(4):
        if order[k] == CONTRAST:
            split = k
    cur = src
    mean = ZERO
    if split < 4:
        total = 0.0  # float64: exact for any image below 2**45 pixels
        for y in range(height):
            for x in range(width):
                r = F32(src[y, x, 0])
                g = F32(src[y, x, 1])
                b = F32(src[y, x, 2])
                for k in range(split):
                    if order[k] != SKIP:
                        r, g, b = apply_op(order[k], factors[order[k]], ZERO, r, g, b)
                if split > 0:
                    dst[y, x, 0] = np.uint8(r)
                    dst[y, x, 1] = np.uint8(g)
                    dst[y, x, 2] = np.uint8(b)
                total += np.floor(gray_level(r, g, b))
        mean = F32(total / (height * width))
        if split > 0:
            cur = dst
    for y in range(height):
        for x in range(width):
            r = F32(cur[y, x, 0])
            g = F32(cur[y, x, 1])
            b = F32(cur[y, x, 2])
            for k in range(split if split < 4 else 0, 4):
                if order[k] != SKIP:
                    r, g, b = apply_op(order[k], factors[order[k]], mean, r, g, b)
            if grayscale:
                r = np.floor(gray_level(r, g, b))
                g = r
                b = r
            dst[y, x, 0] = np.uint8(r)
            dst[y, x, 1] = np.uint8(g)
            dst[y, x, 2] = np.uint8(b)


# --- the ops ------------------------------------------------------------------------------------

def color(src: np.ndarray, jitter: JitterParams, grayscale: bool, dst: np.ndarray) -> np.ndarray:
    """ColorJitter (drawn params) then RandomGrayscale on an (H, W, 3) uint8 view, into dst."""
    check_view(src, "src")
    check_view(dst)
    if src.shape != dst.shape:
        raise ValueError(f"src {src.shape} and dst {dst.shape} must have the same shape")
    if np.shares_memory(src, dst) and src.__array_interface__["data"] != dst.__array_interface__["data"]:
        raise ValueError("src and dst must be the same array or not overlap")
    order = np.ascontiguousarray(jitter.order, np.int64)
    factors = np.ascontiguousarray(jitter.factors, np.float32)
    if order.shape != (4,) or factors.shape != (4,) or not set(order.tolist()) <= {SKIP, 0, 1, 2, 3}:
        raise ValueError(f"bad jitter params: order {order}, factors {factors}")
    used = [op for op in order.tolist() if op != SKIP]
    if len(set(used)) != len(used):
        raise ValueError(f"each op may appear once in order, got {order}")
    if any(factors[op] < 0 for op in used if op != HUE) or \
            (HUE in used and not -0.5 <= factors[HUE] <= 0.5):
        raise ValueError(f"factors out of range: {factors}")
    color_kernel(src, order, factors, bool(grayscale), dst)
    return dst


def _single(op: int, factor: float, src: np.ndarray, dst: np.ndarray | None) -> np.ndarray:
    factors = np.array([1, 1, 1, 0], np.float32)
    factors[op] = factor
    order = np.array([op, SKIP, SKIP, SKIP], np.int64)
    return color(src, JitterParams(order, factors), False, src.copy() if dst is None else dst)


def adjust_brightness(src, brightness_factor: float, dst=None):
    """torchvision v2 F.adjust_brightness on an (H, W, 3) uint8 array."""
    return _single(BRIGHTNESS, brightness_factor, src, dst)


def adjust_contrast(src, contrast_factor: float, dst=None):
    """torchvision v2 F.adjust_contrast on an (H, W, 3) uint8 array."""
    return _single(CONTRAST, contrast_factor, src, dst)


def adjust_saturation(src, saturation_factor: float, dst=None):
    """torchvision v2 F.adjust_saturation on an (H, W, 3) uint8 array."""
    return _single(SATURATION, saturation_factor, src, dst)


def adjust_hue(src, hue_factor: float, dst=None):
    """torchvision v2 F.adjust_hue on an (H, W, 3) uint8 array."""
    return _single(HUE, hue_factor, src, dst)


def rgb_to_grayscale(src, dst=None):
    """torchvision v2 F.rgb_to_grayscale(num_output_channels=3) on an (H, W, 3) uint8 array."""
    return color(src, NO_JITTER, True, src.copy() if dst is None else dst)
