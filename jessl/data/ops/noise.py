"""GaussianNoise on [0, 1] float images, from a seed: deterministic and order independent.

torchvision.transforms.v2.GaussianNoise draws `torch.randn_like` from torch's global generator.
Here the sampler draws one 64-bit seed from the view's Generator, and the kernel derives element
i's normal deviate from (seed, i) with a counter-based hash and Box-Muller. So a view is a pure
function of its seed, whichever thread computes it, and the numbers do not depend on the loop
order. The hash (two rounds of Wellons' "lowbias32") is for augmentation, not cryptography.
"""

from __future__ import annotations

import math

import numpy as np

from jessl.data.ops._jit import jit, jit_inline
from jessl.data.ops.spec import PHOTOMETRIC, PROBABILITY, Field, OpSpec, columns, draw

MEAN = 0.0  # on [0, 1] images; torchvision GaussianNoise default
SIGMA = 0.1  # on [0, 1] images; torchvision GaussianNoise default
CLIP = True  # clamp to [0, 1] afterwards, torchvision default
P = 1.0

M32 = 0xFFFFFFFF
TWO_PI = 2.0 * math.pi
INV_2_32 = 1.0 / 4294967296.0


CFG = columns("p")  # 0 when the view's noise_std is 0: nothing to add, nothing to draw
INTS = columns("on", "seed")
TWO_53 = 9007199254740992.0  # the seed: 53 bits, all a uniform carries


def recipe(view) -> tuple[float, ...]:
    return (view.noise_p if view.noise_std > 0 else 0.0,)


@jit_inline
def sample(u, k, height, width, cfg, ints, floats):
    """RandomApply(GaussianNoise, p): a coin, then a 53-bit seed from which the kernel derives
    every deviate; 2 uniforms when p > 0. Returns the next k."""
    ints[INTS.on] = 0
    ints[INTS.seed] = 0
    if cfg[CFG.p] > 0:
        ints[INTS.on] = u[k] < cfg[CFG.p]
        ints[INTS.seed] = int(u[k + 1] * TWO_53)
        k += 2
    return k


def sample_gaussian_noise(rng: np.random.Generator, p: float = P) -> int | None:
    """RandomApply(GaussianNoise, p) on `rng`, through the production sampler: a seed for the
    noise, or None."""
    ints, _ = draw(SPEC, rng, 1, 1, (p,))
    return int(ints[INTS.seed]) if ints[INTS.on] else None


@jit
def hash32(x):
    """Wellons' lowbias32 on the low 32 bits of x. Ints masked, so Python and numba agree."""
    x = int(x) & M32
    x = ((x ^ (x >> 16)) * 0x7FEB352D) & M32
    x = ((x ^ (x >> 15)) * 0x846CA68B) & M32
    return x ^ (x >> 16)


@jit
def normal_pair(seed, j):
    """Two independent N(0, 1) deviates for pair index j of the stream `seed` (Box-Muller)."""
    k1 = int(seed) & M32
    k2 = (int(seed) >> 32) & M32
    a = hash32(hash32((2 * j) ^ k1) + k2)
    b = hash32(hash32((2 * j + 1) ^ k1) + k2)
    u1 = (a + 1) * INV_2_32  # (0, 1]: log stays finite
    u2 = b * INV_2_32
    radius = math.sqrt(-2.0 * math.log(u1))
    return radius * math.cos(TWO_PI * u2), radius * math.sin(TWO_PI * u2)


@jit
def gaussian_noise_kernel(src, mean, sigma, clip, seed, dst):
    """dst = src + mean + sigma * N(0, 1)[seed, i], clamped to [0, 1] if clip; float32, any shape."""
    flat_src = src.reshape(src.size)
    flat_dst = dst.reshape(dst.size)
    n = flat_src.size
    for j in range((n + 1) // 2):
        z0, z1 = normal_pair(seed, j)
        flat_dst[2 * j] = add_noise(flat_src[2 * j], z0, mean, sigma, clip)
        if 2 * j + 1 < n:
            flat_dst[2 * j + 1] = add_noise(flat_src[2 * j + 1], z1, mean, sigma, clip)


@jit
def add_noise(x, z, mean, sigma, clip):
    """x + (mean + z * sigma) in float32, torchvision's order, clamped to [0, 1] if clip."""
    v = np.float32(x + np.float32(mean + np.float32(z) * sigma))
    if clip:
        v = min(max(v, np.float32(0.0)), np.float32(1.0))
    return v


def gaussian_noise_array(seed: int, shape, mean: float = MEAN, sigma: float = SIGMA) -> np.ndarray:
    """The float32 noise `gaussian_noise_kernel` adds for `seed`, as an array (for tests, plots)."""
    zero = np.zeros(shape, np.float32)
    out = np.empty(shape, np.float32)
    gaussian_noise_kernel(zero, np.float32(mean), np.float32(sigma), False, np.int64(seed), out)
    return out


def gaussian_noise(src: np.ndarray, seed: int | None, dst: np.ndarray, mean: float = MEAN,
                   sigma: float = SIGMA, clip: bool = CLIP) -> np.ndarray:
    """torchvision v2 F.gaussian_noise(img, mean, sigma, clip) on float32 [0, 1] images, into dst.

    `seed` None (the op not drawn) copies src. src and dst may be the same array.
    """
    for name, a in (("src", src), ("dst", dst)):
        if not isinstance(a, np.ndarray) or a.dtype != np.float32 or not a.flags.c_contiguous:
            raise ValueError(f"{name} must be a C-contiguous float32 array")
    if src.shape != dst.shape:
        raise ValueError(f"src {src.shape} and dst {dst.shape} must have the same shape")
    if sigma < 0:
        raise ValueError(f"sigma must be non-negative, got {sigma}")
    if seed is None:
        if dst is not src:
            np.copyto(dst, src)
        return dst
    gaussian_noise_kernel(src, np.float32(mean), np.float32(sigma), bool(clip), np.int64(seed), dst)
    return dst


SPEC = OpSpec(
    name="GaussianNoise",
    fields=(Field("noise_p", 0.0, "RandomApply(GaussianNoise(0, noise_std), p) probability",
                  PROBABILITY, PHOTOMETRIC),
            Field("noise_std", SIGMA, "on [0, 1] images, torchvision GaussianNoise default",
                  scaled=PHOTOMETRIC)),
    sampling="apply ~ Bernoulli(p); seed ~ 53 bits; deviates hashed from (seed, index)",
    recipe=recipe, sample=sample, cfg=CFG, ints=INTS, uniforms=2,
    render=None)  # fused into the float write (render.py): noise and normalise in one pass
