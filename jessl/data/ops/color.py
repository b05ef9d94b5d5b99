"""ColorJitter and RandomGrayscale, fused into one kernel over blocks of float32 planes.

Each adjustment copies torchvision.transforms.v2.functional on uint8 tensors operation for
operation in float32 (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue,
rgb_to_grayscale), including the truncation back to uint8 after every op, so a fused view equals
torchvision's chain of separate calls. What cannot be copied bit for bit is torch's vectorised
fused multiply-add in `_blend` and its cascade-summed mean: outputs differ by at most 1 level on
rare pixels (measured in tests/data/ops/test_color.py).

Contrast blends towards the mean grey level of the *current* image (after the ops drawn before it),
so the kernel makes two passes when contrast is on: the ops before it plus the reduction, then
contrast and the ops after it. Without contrast it is one pass.

Within a pass the image goes through in blocks of BLOCK pixels, deinterleaved into 3 float32
planes that stay in L1, and each op is one branch-free loop over the block, which LLVM vectorises
(8 or 16 floats per instruction with AVX2 or AVX-512). 224 px view, all 4 ops + grey, one
thread, 2-core shared AMD EPYC (AVX-512) dev machine, median of 60 runs in one process: 0.22 ms,
against 2.4 ms (photo) and 3.3 ms (noise) for the previous pixel-at-a-time loop, whose output
this equals bit for bit (checked on all 2**24 colours for every op).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from jessl.data.ops._jit import jit, jit_inline
from jessl.data.ops.crop import check_view
from jessl.data.ops.philox import coin, randint
from jessl.data.ops.spec import JITTER, PHOTOMETRIC, PROBABILITY, Field, OpSpec, columns, draw

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


# --- sampling ------------------------------------------------------------------------------------

JITTER_CFG = columns("p", "b0", "b1", "c0", "c1", "s0", "s1", "h0", "h1")  # factor ranges by op id
JITTER_INTS = columns("o0", "o1", "o2", "o3")  # op ids in the order applied, SKIP where none
JITTER_FLOATS = columns("brightness", "contrast", "saturation", "hue")  # factors, by op id
GREY_CFG = columns("p")
GREY_INTS = columns("on")


def jitter_recipe(view) -> tuple[float, ...]:
    # torchvision ColorJitter ranges: [max(0, 1 - v), 1 + v] and hue [-h, h]
    b, c, s, h = view.brightness, view.contrast, view.saturation, view.hue
    return (view.jitter_p, max(0.0, 1.0 - b), 1.0 + b, max(0.0, 1.0 - c), 1.0 + c,
            max(0.0, 1.0 - s), 1.0 + s, -h, h)


@jit_inline
def sample_jitter(u, k, height, width, cfg, ints, floats):
    """RandomApply(ColorJitter(...), p), as torchvision's make_params: a coin, a uniform
    permutation of the 4 ops (Fisher-Yates on 3 uniforms), each op's factor uniform in its range
    (4 uniforms), whatever the coin says; 8 uniforms when p > 0. An op whose range is its neutral
    value alone is left out of the order, as torchvision leaves out a None range."""
    for s in range(4):
        ints[s] = SKIP
    floats[JITTER_FLOATS.brightness] = 1.0
    floats[JITTER_FLOATS.contrast] = 1.0
    floats[JITTER_FLOATS.saturation] = 1.0
    floats[JITTER_FLOATS.hue] = 0.0
    if cfg[JITTER_CFG.p] > 0:
        applied = u[k] < cfg[JITTER_CFG.p]
        order = np.empty(4, np.int64)  # 0..3; filled by hand: np.arange costs a compile
        for i in range(4):
            order[i] = i
        for i in range(3, 0, -1):  # Fisher-Yates: each of the 24 orders equally likely
            j = randint(u[k + 4 - i], i + 1)
            order[i], order[j] = order[j], order[i]
        k += 4
        for op in range(4):
            lo, hi = cfg[JITTER_CFG.b0 + 2 * op], cfg[JITTER_CFG.b1 + 2 * op]
            floats[op] = lo + (hi - lo) * u[k + op]
        k += 4
        if applied:
            for s in range(4):
                op = order[s]
                neutral = 0.0 if op == HUE else 1.0
                enabled = cfg[JITTER_CFG.b0 + 2 * op] != neutral or \
                    cfg[JITTER_CFG.b1 + 2 * op] != neutral
                ints[s] = op if enabled else SKIP
    return k


def sample_color_jitter(rng: np.random.Generator, brightness=BRIGHTNESS_DEFAULT,
                        contrast=CONTRAST_DEFAULT, saturation=SATURATION_DEFAULT, hue=HUE_DEFAULT,
                        p: float = JITTER_P) -> JitterParams:
    """RandomApply(ColorJitter(...), p) on `rng`, through the production sampler: a random op
    order and uniform factors. A strength v means torchvision's [max(0, 1-v), 1+v] (hue
    [-v, v]); a (lo, hi) pair is taken as is."""
    ranges = (jitter_range(brightness, "brightness"), jitter_range(contrast, "contrast"),
              jitter_range(saturation, "saturation"),
              jitter_range(hue, "hue", center=0.0, bound=(-0.5, 0.5)))
    cfg = [p]
    for r, neutral in zip(ranges, (1.0, 1.0, 1.0, 0.0)):
        cfg += r if r is not None else (neutral, neutral)
    ints, floats = draw(JITTER_SPEC, rng, 1, 1, cfg)
    if (ints == SKIP).all():
        return NO_JITTER
    return JitterParams(ints.copy(), floats.astype(np.float32))


def grey_recipe(view) -> tuple[float, ...]:
    return (view.grey_p,)


@jit_inline
def sample_grey(u, k, height, width, cfg, ints, floats):
    """RandomGrayscale(p): one coin on u[k] when p > 0. Returns the next k."""
    return coin(u, k, cfg[GREY_CFG.p], ints, GREY_INTS.on)


def sample_grayscale(rng: np.random.Generator, p: float = GRAYSCALE_P) -> bool:
    """RandomGrayscale(p) on `rng`, through the production sampler: whether this view turns grey."""
    return bool(draw(GREY_SPEC, rng, 1, 1, (p,))[0][GREY_INTS.on])


# --- per-pixel arithmetic, shared by the kernel's passes -------------------------------------------
# Everything per pixel is branch-free (selects only), calls no libm function but floor, and divides
# with np.divide (numba's `/` adds a ZeroDivisionError branch): a branch, an exception path or an
# uninlined call in a block loop keeps LLVM from vectorising it.

@jit
def gray_level(r, g, b):
    """rgb_to_grayscale in float32 (before truncation), torch's multiply-add order."""
    return F32(F32(F32(r * WR) + F32(g * WG)) + F32(b * WB))


@jit
def blend(x, other_alpha, ratio):
    """torchvision _blend for uint8: x*ratio + other*(1-ratio), clamped, truncated.

    `other_alpha` is float64(other) * float64(1 - ratio), exact (a product of two float32 is
    exact in float64). torch's `add_(other, alpha=...)` is a fused multiply-add on AVX2 CPUs: one
    rounding of other*alpha + x*ratio, which the float64 sum reproduces without relying on an fma
    instruction that plain Python lacks.
    """
    v = F32(np.float64(F32(x * ratio)) + other_alpha)
    return np.floor(min(max(v, ZERO), MAX))


# --- one op over a block of pixels held as float32 planes (3, n) of integral levels --------------

BLOCK = 1024  # pixels per block: 3 float32 planes of 4 KiB, in L1 from one op's pass to the next


@jit
def load_block(flat, start, n, planes):
    """Levels of pixels start..start+n of a flat (H*W*3,) uint8 image into planes[:, :n]."""
    r, g, b = planes[0], planes[1], planes[2]
    # Indexing a slice from 0 (not flat[3 * (start + i)]) lets LLVM prove the index non-negative,
    # drop numba's wraparound select and vectorise the stride-3 access: 4-5x faster.
    px = flat[3 * start:3 * (start + n)]
    for i in range(n):
        r[i] = F32(px[3 * i])
        g[i] = F32(px[3 * i + 1])
        b[i] = F32(px[3 * i + 2])


@jit
def store_block(planes, n, flat, start):
    """planes[:, :n] (integral levels in [0, 255]) back into pixels start..start+n of `flat`."""
    r, g, b = planes[0], planes[1], planes[2]
    px = flat[3 * start:3 * (start + n)]  # as in load_block
    for i in range(n):
        px[3 * i] = np.uint8(r[i])
        px[3 * i + 1] = np.uint8(g[i])
        px[3 * i + 2] = np.uint8(b[i])


@jit
def brightness_block(planes, n, factor):
    """adjust_brightness: _blend with a black image, i.e. x*factor clamped to 255, truncated."""
    for c in range(3):
        x = planes[c]
        for i in range(n):
            x[i] = np.floor(min(F32(x[i] * factor), MAX))


@jit
def contrast_block(planes, n, factor, mean):
    """adjust_contrast: _blend with the image's mean grey level."""
    other_alpha = np.float64(mean) * np.float64(F32(1.0 - factor))
    for c in range(3):
        x = planes[c]
        for i in range(n):
            x[i] = blend(x[i], other_alpha, factor)


@jit
def saturation_block(planes, n, factor):
    """adjust_saturation: _blend with the pixel's own (truncated) grey level."""
    r, g, b = planes[0], planes[1], planes[2]
    alpha = np.float64(F32(1.0 - factor))
    for i in range(n):
        grey_alpha = np.float64(np.floor(gray_level(r[i], g[i], b[i]))) * alpha
        r[i] = blend(r[i], grey_alpha, factor)
        g[i] = blend(g[i], grey_alpha, factor)
        b[i] = blend(b[i], grey_alpha, factor)


@jit
def hue_block(planes, n, shift):
    """adjust_hue on every pixel: to [0,1], HSV, rotate hue by `shift` turns, back, truncate.

    Written out in the loop rather than called per pixel: numba leaves a function this size
    uninlined, and a call in the loop keeps LLVM from vectorising it.
    """
    rp, gp, bp = planes[0], planes[1], planes[2]
    for i in range(n):
        r = F32(rp[i] * INV255)
        g = F32(gp[i] * INV255)
        b = F32(bp[i] * INV255)
        # Selects, not data-dependent branches: on photos branches mispredict often enough to
        # double the time, and they keep LLVM from vectorising. Same float32 operations as torch.
        maxc = max(r, max(g, b))
        minc = min(r, min(g, b))
        eqc = maxc == minc
        crange = F32(maxc - minc)
        s = np.divide(crange, ONE if eqc else maxc)
        div = ONE if eqc else crange
        rc = np.divide(F32(maxc - r), div)
        gc = np.divide(F32(maxc - g), div)
        bc = np.divide(F32(maxc - b), div)
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
        rp[i] = np.floor(F32(r * TO_U8))
        gp[i] = np.floor(F32(g * TO_U8))
        bp[i] = np.floor(F32(b * TO_U8))


@jit
def grey_block(planes, n):
    """rgb_to_grayscale(num_output_channels=3): the truncated grey level in all 3 planes."""
    r, g, b = planes[0], planes[1], planes[2]
    for i in range(n):
        v = np.floor(gray_level(r[i], g[i], b[i]))
        r[i] = v
        g[i] = v
        b[i] = v


@jit
def grey_sum_block(planes, n):
    """Sum of the truncated grey levels, as an integer (exact, and a reduction LLVM vectorises)."""
    r, g, b = planes[0], planes[1], planes[2]
    total = 0
    for i in range(n):
        total += np.int64(np.floor(gray_level(r[i], g[i], b[i])))
    return total


@jit
def ops_block(planes, n, order, factors, first, stop, mean):
    """The ops order[first:stop] (SKIP slots ignored) over one block, one pass per op."""
    for k in range(first, stop):
        op = order[k]
        if op == BRIGHTNESS:
            brightness_block(planes, n, factors[op])
        elif op == CONTRAST:
            contrast_block(planes, n, factors[op], mean)
        elif op == SATURATION:
            saturation_block(planes, n, factors[op])
        elif op == HUE:
            hue_block(planes, n, factors[op])


@jit_inline
def color_kernel(src, order, factors, grayscale, planes, dst):
    """ColorJitter ops in `order` with `factors`, then rgb_to_grayscale if `grayscale`.

    src, dst: (H, W, 3) uint8, may be the same array. order: (4,) int64 op ids, SKIP = none.
    factors: (4,) float32 by op id. planes: (3, BLOCK) float32 scratch. The image is processed
    in blocks of pixels deinterleaved into float32 planes, one pass per op, so every pass is a
    branch-free loop over contiguous floats. When contrast is on, pass 1 applies the ops before
    it and sums the truncated grey levels (torch's mean of the current image); pass 2 does the rest.
    """
    npix = src.shape[0] * src.shape[1]
    flat_src = src.reshape(npix * 3)
    flat_dst = dst.reshape(npix * 3)
    block = planes.shape[1]
    # order index of contrast; 4 = no contrast, one pass. Set from a value, not a bare 4, as
    # below: numba compiles a callee again for each literal argument (it saw split as 4 first)
    split = order.shape[0]
    for k in range(4):
        if order[k] == CONTRAST:
            split = k
    cur = flat_src
    mean = ZERO
    no_op, all_ops = np.int64(0), order.shape[0]
    if split < 4:
        total = 0
        for start in range(0, npix, block):
            n = min(block, npix - start)
            load_block(flat_src, start, n, planes)
            if split > 0:
                ops_block(planes, n, order, factors, no_op, split, ZERO)
                store_block(planes, n, flat_dst, start)
            total += grey_sum_block(planes, n)
        mean = F32(np.float64(total) / npix)  # exact sum below 2**53: torch's mean, rounded once
        if split > 0:
            cur = flat_dst
    first = split if split < 4 else 0
    for start in range(0, npix, block):
        n = min(block, npix - start)
        load_block(cur, start, n, planes)
        ops_block(planes, n, order, factors, first, all_ops, mean)
        if grayscale:
            grey_block(planes, n)
        store_block(planes, n, flat_dst, start)


_SCRATCH = threading.local()  # one (3, BLOCK) float32 block per loader thread, reused every call


def scratch_planes() -> np.ndarray:
    """This thread's float32 (3, BLOCK) scratch for color_kernel."""
    planes = getattr(_SCRATCH, "planes", None)
    if planes is None:
        planes = _SCRATCH.planes = np.empty((3, BLOCK), np.float32)
    return planes


# --- the ops ------------------------------------------------------------------------------------

def color(src: np.ndarray, jitter: JitterParams, grayscale: bool, dst: np.ndarray) -> np.ndarray:
    """ColorJitter (drawn params) then RandomGrayscale on an (H, W, 3) uint8 view, into dst."""
    # Called once per view: the checks run on Python ints and floats (numpy scalars cost ~1 us
    # each) and skip the overlap test in the usual in-place call.
    check_view(src, "src")
    if dst is not src:
        check_view(dst)
        if src.shape != dst.shape:
            raise ValueError(f"src {src.shape} and dst {dst.shape} must have the same shape")
        if np.shares_memory(src, dst) and \
                src.__array_interface__["data"] != dst.__array_interface__["data"]:
            raise ValueError("src and dst must be the same array or not overlap")
    order = np.ascontiguousarray(jitter.order, np.int64)
    factors = np.ascontiguousarray(jitter.factors, np.float32)
    if order.shape != (4,) or factors.shape != (4,):
        raise ValueError(f"bad jitter params: order {order}, factors {factors}")
    ops, f = order.tolist(), factors.tolist()
    used = [op for op in ops if op != SKIP]
    if not all(op in (BRIGHTNESS, CONTRAST, SATURATION, HUE) for op in used):
        raise ValueError(f"bad jitter params: order {order}, factors {factors}")
    if len(set(used)) != len(used):
        raise ValueError(f"each op may appear once in order, got {order}")
    if any(f[op] < 0 for op in used if op != HUE) or (HUE in used and not -0.5 <= f[HUE] <= 0.5):
        raise ValueError(f"factors out of range: {factors}")
    color_kernel(src, order, factors, bool(grayscale), scratch_planes(), dst)
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


# --- the loader's pass --------------------------------------------------------------------------

@jit
def color_chunk_kernel(stage, orders, factors, greys):
    """ColorJitter and grey of every record's view stage[j] as drawn, in place."""
    planes = np.empty((3, BLOCK), np.float32)
    for j in range(stage.shape[0]):
        order = orders[j]
        grey = greys[j] != 0
        if grey or order.max() >= 0:
            color_kernel(stage[j], order, factors[j].astype(np.float32), grey, planes, stage[j])


def render(stage: np.ndarray, params, view) -> None:
    """The chunk's pass: ColorJitter then grey, fused (one read and write of each view)."""
    orders = params.ints(JITTER_SPEC)
    greys = params.ints(GREY_SPEC)[:, GREY_INTS.on]
    if greys.any() or (orders >= 0).any():
        color_chunk_kernel(stage, np.ascontiguousarray(orders),
                           np.ascontiguousarray(params.floats(JITTER_SPEC)),
                           np.ascontiguousarray(greys))


def _strength(name: str, default: float) -> Field:
    return Field(name, default, f"ColorJitter {name}: factor ~ U[max(0, 1-v), 1+v] (SimCLR "
                 f"appendix A at strength 0.5)" if name != "hue" else
                 "ColorJitter hue: shift ~ U[-v, v] turns (SimCLR appendix A at strength 0.5)",
                 scaled=JITTER)


JITTER_SPEC = OpSpec(
    name="ColorJitter",
    fields=(Field("jitter_p", 0.0, "RandomApply(ColorJitter(...), p) probability", PROBABILITY,
                  PHOTOMETRIC),
            _strength("brightness", 0.4), _strength("contrast", 0.4),
            _strength("saturation", 0.4), _strength("hue", 0.1)),
    sampling="apply ~ Bernoulli(p); order ~ uniform permutation of 4; factors uniform in range",
    recipe=jitter_recipe, sample=sample_jitter, cfg=JITTER_CFG, ints=JITTER_INTS,
    floats=JITTER_FLOATS, uniforms=8, render=render,
    kernels=lambda view: (color_chunk_kernel,) if view.jitter_p > 0 or view.grey_p > 0 else ())

GREY_SPEC = OpSpec(
    name="RandomGrayscale",
    fields=(Field("grey_p", 0.0, "RandomGrayscale probability", PROBABILITY, PHOTOMETRIC),),
    sampling="grey ~ Bernoulli(p)",
    recipe=grey_recipe, sample=sample_grey, cfg=GREY_CFG, ints=GREY_INTS, uniforms=1,
    render=None)  # fused into ColorJitter's pass (`render` above)
