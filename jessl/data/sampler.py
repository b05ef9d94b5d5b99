"""Every view's random parameters for a chunk of records, in one GIL-free call.

The numbers are NumPy's: view v of record r in `epoch` draws the stream that
`np.random.Generator(np.random.Philox(key=[seed, epoch], counter=[0, 0, r, v])).random()`
gives, reproduced bit for bit by a numba Philox4x64-10 (tests compare it with NumPy's). So a
record's views depend on (seed, epoch, record, view) only: not on the thread, the batch or the
batch size, and any batch can be replayed.

The samplers turn those uniforms into parameters with torchvision's algorithms (the same ones
the `sample_*` functions of `jessl.data.ops` run on a Generator in Python, which stay the
readable reference and are what the distribution tests compare against torchvision):
RandomResizedCrop's 10 tries of area ~ U(scale) and log-aspect ~ U(log ratio) with its central
fallback, Bernoulli(p) coins, ColorJitter's uniform permutation and uniform factors, the blur's
sigma ~ U(sigma), and a 53-bit seed for the Gaussian noise.
"""

from __future__ import annotations

import math

import numpy as np

from jessl.data.ops._jit import jit
from jessl.data.views import View

U64 = np.uint64
M32 = U64(0xFFFFFFFF)
S32 = U64(32)
ONE64 = U64(1)
PHILOX_M0, PHILOX_M1 = U64(0xD2E7470EE14C6C93), U64(0xCA5A826395121157)  # Random123 / NumPy
PHILOX_W0, PHILOX_W1 = U64(0x9E3779B97F4A7C15), U64(0xBB67AE8584CAA73B)
TO_UNIT = 1.0 / 9007199254740992.0  # 2**-53: NumPy's random() takes the top 53 bits
UNIFORMS = 48  # per view: RandomResizedCrop needs at most 22, the photometric ops at most 13

# Parameter layout of one view, as int64 and float64 columns (see `unpack` for names).
I_TOP, I_LEFT, I_H, I_W, I_FLIP, I_ORDER, I_GREY, I_BLUR, I_SOLARIZE, I_NOISE, I_SEED = (
    0, 1, 2, 3, 4, 5, 9, 10, 11, 12, 13)
N_INT = 14
F_FACTORS, F_SIGMA = 0, 4
N_FLOAT = 5
SKIP = -1  # an ColorJitter order slot with no op (jessl.data.ops.color.SKIP)

# Per-view recipe columns (float64), after the magnitude is applied.
(C_CROP, C_OUT_H, C_OUT_W, C_SCALE0, C_SCALE1, C_LOGR0, C_LOGR1, C_RESIZE, C_FLIP_P,
 C_JITTER_P, C_B0, C_B1, C_C0, C_C1, C_S0, C_S1, C_H0, C_H1, C_GREY_P, C_BLUR_P, C_SIG0,
 C_SIG1, C_SOL_P, C_NOISE_P) = range(24)
N_CFG = 24
CROP_CODES = {"random": 0, "center": 1, "full": 2}


@jit
def mulhilo(a, b):
    """(high, low) 64-bit halves of the 128-bit product a * b, from 32-bit pieces."""
    a_lo, a_hi = a & M32, a >> S32
    b_lo, b_hi = b & M32, b >> S32
    p0, p1, p2, p3 = a_lo * b_lo, a_lo * b_hi, a_hi * b_lo, a_hi * b_hi
    mid = (p0 >> S32) + (p1 & M32) + (p2 & M32)
    return p3 + (p1 >> S32) + (p2 >> S32) + (mid >> S32), a * b


@jit
def philox_block(c0, c1, c2, c3, k0, k1, out, at):
    """Philox4x64-10 of counter (c0..c3) under key (k0, k1) into out[at:at+4]."""
    for r in range(10):
        if r > 0:
            k0 = k0 + PHILOX_W0
            k1 = k1 + PHILOX_W1
        hi0, lo0 = mulhilo(PHILOX_M0, c0)
        hi1, lo1 = mulhilo(PHILOX_M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    out[at], out[at + 1], out[at + 2], out[at + 3] = c0, c1, c2, c3


@jit
def uniforms_kernel(k0, k1, record, view, raw, out):
    """out[i] = the i-th `random()` of Generator(Philox(key=[k0, k1], counter=[0, 0, r, v]))."""
    n = out.shape[0]
    blocks = (n + 3) // 4
    for b in range(blocks):
        # NumPy bumps the counter before each block, so the first block is counter 1
        philox_block(U64(b + 1), U64(0), U64(record), U64(view), k0, k1, raw, 4 * b)
    for i in range(n):
        out[i] = np.float64(raw[i] >> U64(11)) * TO_UNIT


@jit
def randint(u, n):
    """A uniform integer in [0, n) from one uniform (bias below n / 2**53)."""
    return min(int(u * n), n - 1)


@jit
def sample_crop(u, k, height, width, cfg, ints):
    """torchvision RandomResizedCrop.get_params on uniforms u[k:]; returns the next k."""
    area = height * width
    for _ in range(10):
        target = area * (cfg[C_SCALE0] + (cfg[C_SCALE1] - cfg[C_SCALE0]) * u[k])
        aspect = math.exp(cfg[C_LOGR0] + (cfg[C_LOGR1] - cfg[C_LOGR0]) * u[k + 1])
        k += 2
        w = int(np.rint(math.sqrt(target * aspect)))  # rint: half to even, as Python's round
        h = int(np.rint(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            ints[I_TOP] = randint(u[k], height - h + 1)
            ints[I_LEFT] = randint(u[k + 1], width - w + 1)
            ints[I_H], ints[I_W] = h, w
            return k + 2
    ratio_lo, ratio_hi = math.exp(cfg[C_LOGR0]), math.exp(cfg[C_LOGR1])
    in_ratio = width / height
    if in_ratio < ratio_lo:
        w, h = width, int(np.rint(width / ratio_lo))
    elif in_ratio > ratio_hi:
        h, w = height, int(np.rint(height * ratio_hi))
    else:
        w, h = width, height
    ints[I_TOP], ints[I_LEFT], ints[I_H], ints[I_W] = (height - h) // 2, (width - w) // 2, h, w
    return k


@jit
def center_box(height, width, cfg, ints):
    """Resize(shorter side -> resize) + CenterCrop(out) as one box of the source."""
    out_h, out_w, resize = cfg[C_OUT_H], cfg[C_OUT_W], cfg[C_RESIZE]
    scale = resize / min(height, width)
    h = min(height, max(1, int(np.rint(out_h / scale))))
    w = min(width, max(1, int(np.rint(out_w / scale))))
    ints[I_TOP], ints[I_LEFT], ints[I_H], ints[I_W] = (height - h) // 2, (width - w) // 2, h, w


@jit
def sample_view_kernel(u, height, width, cfg, ints, floats):
    """One view's parameters from its uniforms `u` for a height x width source."""
    ints[:] = 0
    floats[:] = 0.0
    floats[F_FACTORS:F_FACTORS + 3] = 1.0
    for s in range(4):
        ints[I_ORDER + s] = SKIP
    k = 0
    crop = int(cfg[C_CROP])
    if crop == 0:
        k = sample_crop(u, k, height, width, cfg, ints)
    elif crop == 1:
        center_box(height, width, cfg, ints)
    else:
        ints[I_TOP], ints[I_LEFT], ints[I_H], ints[I_W] = 0, 0, height, width
    if cfg[C_FLIP_P] > 0:
        ints[I_FLIP] = u[k] < cfg[C_FLIP_P]
        k += 1
    if cfg[C_JITTER_P] > 0:
        applied = u[k] < cfg[C_JITTER_P]
        order = np.empty(4, np.int64)  # 0..3; filled by hand: np.arange costs a compile
        for i in range(4):
            order[i] = i
        for i in range(3, 0, -1):  # Fisher-Yates: each of the 24 orders equally likely
            j = randint(u[k + 4 - i], i + 1)
            order[i], order[j] = order[j], order[i]
        k += 4
        for op in range(4):
            lo, hi = cfg[C_B0 + 2 * op], cfg[C_B1 + 2 * op]
            floats[F_FACTORS + op] = lo + (hi - lo) * u[k + op]
        k += 4
        if applied:
            for s in range(4):
                op = order[s]
                neutral = 0.0 if op == 3 else 1.0
                enabled = cfg[C_B0 + 2 * op] != neutral or cfg[C_B1 + 2 * op] != neutral
                ints[I_ORDER + s] = op if enabled else SKIP
    if cfg[C_GREY_P] > 0:
        ints[I_GREY] = u[k] < cfg[C_GREY_P]
        k += 1
    if cfg[C_BLUR_P] > 0:
        ints[I_BLUR] = u[k] < cfg[C_BLUR_P]
        floats[F_SIGMA] = cfg[C_SIG0] + (cfg[C_SIG1] - cfg[C_SIG0]) * u[k + 1]
        k += 2
    if cfg[C_SOL_P] > 0:
        ints[I_SOLARIZE] = u[k] < cfg[C_SOL_P]
        k += 1
    if cfg[C_NOISE_P] > 0:
        ints[I_NOISE] = u[k] < cfg[C_NOISE_P]
        ints[I_SEED] = int(u[k + 1] * 9007199254740992.0)
        k += 2


@jit
def sample_chunk_kernel(k0, k1, records, heights, widths, cfgs, ints, floats):
    """Parameters of every (record, view) of a chunk: ints (J, V, N_INT), floats (J, V, N_FLOAT)."""
    raw = np.empty(UNIFORMS, np.uint64)
    u = np.empty(UNIFORMS, np.float64)
    for j in range(records.shape[0]):
        for v in range(cfgs.shape[0]):
            uniforms_kernel(k0, k1, records[j], v, raw, u)
            sample_view_kernel(u, heights[j], widths[j], cfgs[v], ints[j, v], floats[j, v])


def view_config(view: View) -> np.ndarray:
    """The (N_CFG,) float64 recipe row of one view (magnitude already applied)."""
    cfg = np.zeros(N_CFG, np.float64)
    out_h, out_w = view.hw
    cfg[C_CROP], cfg[C_OUT_H], cfg[C_OUT_W] = CROP_CODES[view.crop], out_h, out_w
    cfg[C_SCALE0], cfg[C_SCALE1] = view.scale
    cfg[C_LOGR0], cfg[C_LOGR1] = math.log(view.ratio[0]), math.log(view.ratio[1])
    cfg[C_RESIZE] = view.resize or round(min(view.hw) * 256 / 224)
    cfg[C_FLIP_P], cfg[C_JITTER_P] = view.flip_p, view.jitter_p
    # torchvision ColorJitter ranges: [max(0, 1 - v), 1 + v] and hue [-h, h]
    for col, value in ((C_B0, view.brightness), (C_C0, view.contrast), (C_S0, view.saturation)):
        cfg[col], cfg[col + 1] = max(0.0, 1.0 - value), 1.0 + value
    cfg[C_H0], cfg[C_H1] = -view.hue, view.hue
    cfg[C_GREY_P], cfg[C_BLUR_P] = view.grey_p, view.blur_p
    cfg[C_SIG0], cfg[C_SIG1] = view.blur_sigma
    cfg[C_SOL_P] = view.solarize_p
    cfg[C_NOISE_P] = view.noise_p if view.noise_std > 0 else 0.0
    return cfg


def view_configs(views: list[View]) -> np.ndarray:
    """(V, N_CFG) recipe rows of a list of views, as `sample_chunk` takes them."""
    return np.stack([view_config(v) for v in views])


def sample_chunk(seed: int, epoch: int, records: np.ndarray, heights: np.ndarray,
                 widths: np.ndarray, cfgs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ints (J, V, N_INT), floats (J, V, N_FLOAT)) for records of the given source sizes;
    `cfgs` from `view_configs`, computed once per epoch by the loader."""
    j, v = len(records), len(cfgs)
    ints = np.empty((j, v, N_INT), np.int64)
    floats = np.empty((j, v, N_FLOAT), np.float64)
    sample_chunk_kernel(U64(seed & (2**64 - 1)), U64(epoch), np.asarray(records, np.int64),
                        np.asarray(heights, np.int64), np.asarray(widths, np.int64), cfgs,
                        ints, floats)
    return ints, floats
