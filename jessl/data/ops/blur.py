"""GaussianBlur: torchvision's kernel weights, applied by OpenCV's separable filter.

torchvision's gaussian_blur pads with "reflect" (OpenCV's BORDER_REFLECT_101), convolves in
float32 and rounds. cv2.sepFilter2D does the same separably with SIMD and without the GIL;
summation order differs, so outputs differ by at most 1 level on rare pixels
(tests/data/ops/test_blur.py). OpenCV's own cv2.GaussianBlur is not used: its weights for a
given sigma are not torchvision's.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from jessl.data.ops._jit import jit, jit_inline
from jessl.data.ops.crop import check_view
from jessl.data.ops.spec import PHOTOMETRIC, PROBABILITY, Field, OpSpec, columns, draw

SIGMA = (0.1, 2.0)  # px, uniform range of the blur's standard deviation: SimCLR appendix A
KERNEL_SIZE = 23  # px, odd; SimCLR uses 10% of the view side (22.4 -> 23 for 224 px views)

CFG = columns("p", "sigma0", "sigma1")
INTS = columns("on")
FLOATS = columns("sigma")  # px


def recipe(view) -> tuple[float, ...]:
    return (view.blur_p, *view.blur_sigma)


@jit_inline
def sample(u, k, height, width, cfg, ints, floats):
    """RandomApply(GaussianBlur(k, sigma), p): a coin, then sigma ~ U(sigma0, sigma1), as
    torchvision's make_params; 2 uniforms when p > 0. Returns the next k."""
    ints[INTS.on] = 0
    floats[FLOATS.sigma] = 0.0
    if cfg[CFG.p] > 0:
        ints[INTS.on] = u[k] < cfg[CFG.p]
        floats[FLOATS.sigma] = cfg[CFG.sigma0] + (cfg[CFG.sigma1] - cfg[CFG.sigma0]) * u[k + 1]
        k += 2
    return k


def gaussian_kernel1d(kernel_size: int, sigma: float) -> np.ndarray:
    """(kernel_size,) float32 weights, torchvision's _get_gaussian_kernel1d computed the same way."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    lim = (kernel_size - 1) / (2.0 * math.sqrt(2.0))
    # torch.linspace in float32, then softmax(-(x/sigma)^2): exp(-t^2 / (2 sigma^2)), normalised
    x = np.linspace(-lim, lim, kernel_size, dtype=np.float64).astype(np.float32)
    logits = -np.square(x / np.float32(sigma))
    e = np.exp(logits - logits.max())
    return (e / e.sum()).astype(np.float32)


# levels: the most the taps a blur leaves out may add to any output before rounding (uint8
# pixels <= 255 times the left-out weights). torchvision's 23 taps at sigma ~ U(0.1, 2) px are
# mostly zeros or nearly so (at sigma 1 the outer 10 weigh 2e-11 together), and OpenCV's time
# is linear in the taps: 10.9 taps on average instead of 23, an output level changing only
# where the exact value lies within this of a rounding boundary (measured: 1 level on 0.005%
# of the values of 40 photos x 5 sigmas; docs/benchmarks.md)
TAIL_LEVELS = 1 / 4096


def trimmed(k: np.ndarray, tail_levels: float = TAIL_LEVELS) -> np.ndarray:
    """The middle of the symmetric kernel `k`: the fewest taps whose left-out weights, times
    255, sum to at most `tail_levels`; the kept weights unchanged (not renormalised, so each
    output moves by at most `tail_levels` before rounding). 0 keeps every tap."""
    outer = np.cumsum(k[:len(k) // 2].astype(np.float64))  # outer[i]: taps 0..i of one side
    drop = int(np.searchsorted(outer, tail_levels / (2 * 255.0), side="right"))  # per side
    return k[drop:len(k) - drop]


def sample_gaussian_blur(rng: np.random.Generator, sigma: tuple[float, float] = SIGMA,
                         p: float = 1.0) -> float | None:
    """RandomApply(GaussianBlur(k, sigma), p) on `rng`, through the production sampler: the
    sigma in px, or None if not applied."""
    if not 0 < sigma[0] <= sigma[1]:
        raise ValueError(f"sigma must be (min, max) with 0 < min <= max, got {sigma}")
    ints, floats = draw(SPEC, rng, 1, 1, (p, *sigma))
    return float(floats[FLOATS.sigma]) if ints[INTS.on] else None


def gaussian_blur(src: np.ndarray, kernel_size: int, sigma: float, dst: np.ndarray,
                  tail_levels: float = TAIL_LEVELS) -> np.ndarray:
    """torchvision v2 F.gaussian_blur(img, [k, k], [sigma, sigma]) on (H, W, 3) uint8, into dst,
    without the outer taps that add at most `tail_levels` to any output (`trimmed`; 0: all).

    src and dst may be the same array (OpenCV filters through its own row buffers).
    """
    check_view(src, "src")
    check_view(dst)
    if src.shape != dst.shape:
        raise ValueError(f"src {src.shape} and dst {dst.shape} must have the same shape")
    half = kernel_size // 2
    if half >= src.shape[0] or half >= src.shape[1]:
        # torch's reflect padding needs pad < side; matching it beyond that is undefined
        raise ValueError(f"kernel_size {kernel_size} needs an image larger than {half} px a side, "
                         f"got {src.shape[:2]}")
    k = trimmed(gaussian_kernel1d(kernel_size, sigma), tail_levels)
    out = cv2.sepFilter2D(src, -1, k, k, dst=dst, borderType=cv2.BORDER_REFLECT_101)
    if out is not dst and not np.shares_memory(out, dst):
        dst[...] = out
    return dst


def kernel_size(view) -> int:
    """The view's blur kernel in px: `blur_kernel`, else 10% of the view's shorter side, odd
    and at least 3 (SimCLR appendix A)."""
    if view.blur_kernel is not None:
        return view.blur_kernel
    k = max(3, int(0.1 * min(view.hw)))
    return k if k % 2 else k + 1


def render(stage: np.ndarray, params, view) -> None:
    """The chunk's pass: blur the records that drew it, each with its sigma (OpenCV per image:
    it is already SIMD, and few records draw it on most presets)."""
    on = params.ints(SPEC)[:, INTS.on]
    sigma = params.floats(SPEC)[:, FLOATS.sigma]
    size = kernel_size(view)
    for j in np.flatnonzero(on):
        gaussian_blur(stage[j], size, float(sigma[j]), stage[j])


SPEC = OpSpec(
    name="GaussianBlur",
    fields=(Field("blur_p", 0.0, "RandomApply(GaussianBlur(kernel, sigma), p) probability",
                  PROBABILITY, PHOTOMETRIC),
            Field("blur_sigma", SIGMA, "px, uniform range of sigma (SimCLR appendix A)"),
            Field("blur_kernel", None, "px, odd; None: 10% of the view side (SimCLR appendix A)")),
    sampling="apply ~ Bernoulli(p); sigma ~ U(sigma) px",
    recipe=recipe, sample=sample, cfg=CFG, ints=INTS, floats=FLOATS, uniforms=2, render=render)
