"""Crop a box from the decoded image and resize it to the view size, in one resampling pass.

Sampling follows torchvision's `RandomResizedCrop.get_params` draw for draw (Chen et al. 2020,
SimCLR, and every joint-embedding paper since use it), but from an explicit NumPy Generator.

Resampling matches torchvision's `F.resized_crop(..., antialias=True)` bilinear on uint8: a
triangle filter whose support grows with the downscale factor (Pillow's algorithm, which torch's
uint8 CPU path copies), applied horizontally into a uint8 buffer, then vertically. Two backends:

- `numba` (`resample_rows_kernel`): that exact algorithm with float64-computed, float32-applied
  weights. Torch rounds its weights to int16 fixed point, and both round to uint8 between the
  passes, so outputs differ by at most 2 levels: measured max 1 (mean 0.002) over 1,500 random
  boxes and view sizes of ImageNet photos, max 2 on 24 of 156 M pixels of uniform noise (3,000
  random boxes, 8-300 px sources, 8-256 px views); `bench/loader_accuracy.py --kernels N`.
  Both passes resample whole rows, so their inner loops run over contiguous memory and
  vectorise; the horizontal pass runs on the transposed crop (OpenCV's transpose, there and back).
- `cv2`: `cv2.resize` INTER_LINEAR is the same filter when no axis shrinks (support 1, edge
  clamping = edge renormalisation), again within 1 level, and it is SIMD. OpenCV has no triangle
  antialiasing for shrinking; INTER_AREA (a box filter) is far from torchvision where a crop
  shrinks a lot across sharp edges: measured mean 2.6, max 217 levels over the same 1,500
  photo boxes (56-213 in the issue 15 campaign), 25 on the single tench box of the tests. So
  the `cv2` backend uses it only when asked explicitly, and the loader never does.

`auto` takes cv2 where no axis shrinks and the numba kernel where any axis shrinks, since only the
triangle filter matches torchvision there. Median of 100 runs in one process, one thread, 2-core
shared AMD EPYC (AVX-512) dev machine:

    300x400 -> 224: numba 0.15 ms (0.55 for the earlier pixel-at-a-time loop, same output),
                    torch's AVX2 int16 path 0.28 ms, cv2 INTER_AREA 0.73 ms
    100x90 -> 224:  numba 0.054 ms, cv2 INTER_LINEAR 0.058 ms (torch 0.18)
    28 -> 32:       numba 0.016 ms, cv2 0.009 ms (mostly per-call overhead)

so on pure upscales the numba kernel is now about as fast as cv2 at view sizes, and closer to
torchvision (mean |diff| 0.003 vs 0.19 levels); `auto` still picks cv2 there.
"""

from __future__ import annotations

import functools
import math
import threading

import cv2
import numpy as np

from jessl.data.ops._jit import jit, jit_inline
from jessl.data.ops.philox import randint
from jessl.data.ops.spec import Field, OpSpec, columns, draw

SCALE = (0.08, 1.0)  # area fraction of the source, torchvision RandomResizedCrop default (SimCLR)
RATIO = (3.0 / 4.0, 4.0 / 3.0)  # aspect ratio w/h range, torchvision RandomResizedCrop default
ATTEMPTS = 10  # rejection-sampling tries before the central fallback, as torchvision
BACKENDS = ("auto", "numba", "cv2")
# float32 constant: a bare 0.5 is float64 to numba and would promote the float32 accumulators
HALF = np.float32(0.5)


# --- sampling ------------------------------------------------------------------------------------

CROPS = ("random", "center", "full")  # View.crop: RandomResizedCrop, Resize + CenterCrop, Resize
CFG = columns("mode", "out_h", "out_w", "scale0", "scale1", "logr0", "logr1", "resize")
INTS = columns("top", "left", "h", "w")  # the box in the full-size source


def recipe(view) -> tuple[float, ...]:
    out_h, out_w = view.hw
    resize = view.resize or round(min(view.hw) * 256 / 224)
    return (CROPS.index(view.crop), out_h, out_w, *view.scale, math.log(view.ratio[0]),
            math.log(view.ratio[1]), resize)


@jit_inline
def random_box(u, k, height, width, cfg, ints):
    """torchvision RandomResizedCrop.get_params on uniforms u[k:]; returns the next k."""
    area = height * width
    for _ in range(ATTEMPTS):
        target = area * (cfg[CFG.scale0] + (cfg[CFG.scale1] - cfg[CFG.scale0]) * u[k])
        aspect = math.exp(cfg[CFG.logr0] + (cfg[CFG.logr1] - cfg[CFG.logr0]) * u[k + 1])
        k += 2
        w = int(np.rint(math.sqrt(target * aspect)))  # rint: half to even, as Python's round
        h = int(np.rint(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            ints[INTS.top] = randint(u[k], height - h + 1)
            ints[INTS.left] = randint(u[k + 1], width - w + 1)
            ints[INTS.h], ints[INTS.w] = h, w
            return k + 2
    # the central fallback, its aspect ratio clamped into `ratio`
    ratio_lo, ratio_hi = math.exp(cfg[CFG.logr0]), math.exp(cfg[CFG.logr1])
    in_ratio = width / height
    if in_ratio < ratio_lo:
        w, h = width, int(np.rint(width / ratio_lo))
    elif in_ratio > ratio_hi:
        h, w = height, int(np.rint(height * ratio_hi))
    else:
        w, h = width, height
    ints[INTS.top], ints[INTS.left], ints[INTS.h], ints[INTS.w] = \
        (height - h) // 2, (width - w) // 2, h, w
    return k


@jit_inline
def center_box(height, width, cfg, ints):
    """Resize(shorter side -> resize) + CenterCrop(out) as one box of the source: torchvision's
    truncated long side and rounded crop offsets, mapped back and rounded to source pixels;
    clamped to the source where the crop is larger than the resized image (center_crop_box,
    its Python entry, refuses that)."""
    out_h, out_w, resize = int(cfg[CFG.out_h]), int(cfg[CFG.out_w]), int(cfg[CFG.resize])
    new_long = int(resize * max(height, width) / min(height, width))
    new_h, new_w = (resize, new_long) if height <= width else (new_long, resize)
    crop_top = int(np.rint((new_h - out_h) / 2.0))  # np.rint and round() both round half to even
    crop_left = int(np.rint((new_w - out_w) / 2.0))
    h = min(height, max(1, int(np.rint(out_h * height / new_h))))
    w = min(width, max(1, int(np.rint(out_w * width / new_w))))
    ints[INTS.top] = max(0, min(int(np.rint(crop_top * height / new_h)), height - h))
    ints[INTS.left] = max(0, min(int(np.rint(crop_left * width / new_w)), width - w))
    ints[INTS.h], ints[INTS.w] = h, w


@jit_inline
def sample(u, k, height, width, cfg, ints, floats):
    """The view's box in a height x width source: random (up to 22 uniforms), center or full."""
    mode = int(cfg[CFG.mode])
    if mode == 0:
        return random_box(u, k, height, width, cfg, ints)
    if mode == 1:
        center_box(height, width, cfg, ints)
    else:
        ints[INTS.top], ints[INTS.left], ints[INTS.h], ints[INTS.w] = 0, 0, height, width
    return k


def sample_resized_crop(rng: np.random.Generator, height: int, width: int,
                        scale: tuple[float, float] = SCALE,
                        ratio: tuple[float, float] = RATIO) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a random crop: torchvision's RandomResizedCrop.get_params on `rng`,
    through the production sampler."""
    if height < 1 or width < 1:
        raise ValueError(f"image must be non-empty, got {height}x{width}")
    if scale[0] > scale[1] or ratio[0] > ratio[1]:
        raise ValueError(f"scale and ratio must be (min, max), got {scale}, {ratio}")
    cfg = (0, 1, 1, *scale, math.log(ratio[0]), math.log(ratio[1]), 1)
    ints, _ = draw(SPEC, rng, height, width, cfg)
    return tuple(int(v) for v in ints)


def center_crop_box(height: int, width: int, size: int | tuple[int, int],
                    resize: int) -> tuple[int, int, int, int]:
    """(top, left, h, w) in the source of torchvision's Resize(resize) + CenterCrop(size).

    The evaluation transform (resize the shorter side to `resize`, e.g. 256, then take the central
    `size`, e.g. 224) as one box, so the view is resampled once instead of twice (as FFCV does).
    The box is the centre crop mapped back through the resize and rounded to whole source
    pixels, so it can sit up to half a source pixel away from torchvision's two-step result.
    """
    out_h, out_w = (size, size) if isinstance(size, int) else size
    if height < 1 or width < 1 or resize < 1 or out_h < 1 or out_w < 1:
        raise ValueError(f"sizes must be positive: image {height}x{width}, size {size}, resize {resize}")
    # torchvision's _compute_resized_output_size: the longer side is truncated, not rounded
    short, long = min(height, width), max(height, width)
    new_short, new_long = resize, int(resize * long / short)
    new_h, new_w = (new_short, new_long) if height <= width else (new_long, new_short)
    if out_h > new_h or out_w > new_w:
        raise ValueError(f"center crop {out_h}x{out_w} is larger than the resized {new_h}x{new_w} "
                         "(torchvision would pad; jessl does not)")
    # the loader's own center box (center_box above), so the two cannot drift apart
    # (center mode reads none of the uniforms draw() takes from the generator)
    cfg = (1, out_h, out_w, 0, 0, 0, 0, resize)
    ints, _ = draw(SPEC, np.random.default_rng(0), height, width, cfg)
    return tuple(int(v) for v in ints)


# --- shared math: the antialiased bilinear filter --------------------------------------------------

@jit
def filter_taps(in_size, out_size):
    """Most source pixels one output pixel reads along an axis (the weights table's width)."""
    support = max(in_size / out_size, 1.0)  # bilinear: half-width 1 output pixel, in source pixels
    return int(math.ceil(support)) * 2 + 1


@jit
def aa_weights_kernel(in_size, out_size, starts, counts, weights):
    """Fill one axis' triangle-filter taps: output i reads counts[i] pixels from starts[i].

    Torch's `_compute_indices_min_size_weights_aa` (from Pillow's precompute_coeffs) with
    align_corners=False: output pixel centres at scale*(i + 0.5), filter stretched by the
    downscale factor so that shrinking averages every source pixel (antialiasing).
    """
    scale = in_size / out_size
    support = scale if scale >= 1.0 else 1.0
    invscale = 1.0 / scale if scale >= 1.0 else 1.0
    ntaps = weights.shape[1]
    for i in range(out_size):
        center = scale * (i + 0.5)
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        n = min(hi - lo, ntaps)
        total = 0.0
        for j in range(ntaps):
            w = 0.0
            if j < n:
                x = abs((j + lo - center + 0.5) * invscale)
                w = 1.0 - x if x < 1.0 else 0.0
            weights[i, j] = w
            total += w
        if total > 0.0:
            for j in range(n):
                weights[i, j] /= total
        starts[i] = lo
        counts[i] = n


@jit
def resample_rows_kernel(src, starts, counts, weights, flip, acc, dst):
    """Resample along axis 0: dst[o] = round(sum_k weights[o, k] * src[starts[o] + k]).

    src (n_in, n) uint8, dst (n_out, n) uint8, or (n_out, 3n) to replicate a grey row into RGB.
    `flip` writes output row o to dst[n_out - 1 - o]. acc (>= n,) float32 scratch holds one
    output row. Each tap is one pass over contiguous memory, which LLVM vectorises; per element
    the float32 sum runs over the taps in order from 0, exactly as the pixel-at-a-time loop did
    (the first tap stores w*x, which equals 0 + w*x). The weights are non-negative and sum to 1,
    so every sum lies in [0, 255]: truncating sum+0.5 rounds half up (as torch's fixed point does)
    without a clamp.
    """
    n_out = dst.shape[0]
    n = src.shape[1]
    grey_to_rgb = dst.shape[1] != n
    for o in range(n_out):
        first = starts[o]
        count = counts[o]
        w0 = weights[o, 0]
        r = src[first]
        for i in range(n):
            acc[i] = w0 * np.float32(r[i])
        for k in range(1, count):
            wk = weights[o, k]
            r = src[first + k]
            for i in range(n):
                acc[i] += wk * np.float32(r[i])
        out = dst[n_out - 1 - o if flip else o]
        if grey_to_rgb:
            for i in range(n):
                v = np.uint8(acc[i] + HALF)
                out[3 * i] = v
                out[3 * i + 1] = v
                out[3 * i + 2] = v
        else:
            for i in range(n):
                out[i] = np.uint8(acc[i] + HALF)


@jit
def axis_taps(in_size, out_size):
    """(starts, counts, float32 weights) of one axis, as crop.axis_weights computes them."""
    starts = np.empty(out_size, np.int64)
    counts = np.empty(out_size, np.int64)
    weights = np.empty((out_size, filter_taps(in_size, out_size)), np.float64)
    aa_weights_kernel(in_size, out_size, starts, counts, weights)
    return starts, counts, weights.astype(np.float32)


@jit
def transpose_kernel(src, dst):
    """dst[x, y, :] = src[y, x, :] for (h, w, c) -> (w, h, c) uint8."""
    for y in range(src.shape[0]):
        for x in range(src.shape[1]):
            for c in range(src.shape[2]):
                dst[x, y, c] = src[y, x, c]


@jit_inline
def crop_resize_kernel(src, top, left, h, w, flip, dst):
    """`resized_crop`'s numba path as one numba-callable function, for callers already inside
    numba (the loader's small-view chunks): loops instead of OpenCV's transposes, taps computed
    instead of cached. src (H, W, 1|3) -> dst (out_h, out_w, 3), box already checked."""
    out_h, out_w = dst.shape[0], dst.shape[1]
    c = src.shape[2]
    crop = src[top:top + h, left:left + w]
    if h == out_h and w == out_w:  # torch returns the crop unresampled
        for y in range(h):
            for x in range(w):
                sx = w - 1 - x if flip else x
                for k in range(3):
                    dst[y, x, k] = crop[y, sx, k if c == 3 else 0]
        return
    xs, xc, xw = axis_taps(w, out_w)
    ys, yc, yw = axis_taps(h, out_h)
    acc = np.empty(max(h, out_w) * c, np.float32)
    cols = np.empty((w, h, c), np.uint8)
    transpose_kernel(crop, cols)
    tmp_t = np.empty((out_w, h, c), np.uint8)
    resample_rows_kernel(cols.reshape((w, h * c)), xs, xc, xw, flip, acc,
                         tmp_t.reshape((out_w, h * c)))
    tmp = np.empty((h, out_w, c), np.uint8)
    transpose_kernel(tmp_t, tmp)
    # np.bool_, not a bare False: numba compiles a callee again for each literal argument
    resample_rows_kernel(tmp.reshape((h, out_w * c)), ys, yc, yw, np.bool_(False), acc,
                         dst.reshape((out_h, out_w * 3)))



# --- the op -------------------------------------------------------------------------------------

def check_image(src: np.ndarray, name: str = "src") -> None:
    """Raise ValueError unless `src` is a C-contiguous uint8 (H, W, 1|3) array."""
    if not isinstance(src, np.ndarray) or src.dtype != np.uint8 or src.ndim != 3 \
            or src.shape[2] not in (1, 3) or src.shape[0] < 1 or src.shape[1] < 1:
        shape = getattr(src, "shape", None)
        dtype = getattr(src, "dtype", type(src).__name__)
        raise ValueError(f"{name} must be a uint8 (H, W, 1|3) array, got {dtype} {shape}")
    if not src.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (the kernels are compiled for one layout)")


def check_view(dst: np.ndarray, name: str = "dst") -> None:
    """Raise ValueError unless `dst` is a writable C-contiguous uint8 (H, W, 3) view buffer."""
    check_image(dst, name)
    if dst.shape[2] != 3:
        raise ValueError(f"{name} must have 3 channels (grey sources are replicated), got {dst.shape}")
    if not dst.flags.writeable:
        raise ValueError(f"{name} must be writable")


def check_box(box, height: int, width: int) -> tuple[int, int, int, int]:
    """The box as 4 ints, or ValueError if it is empty or leaves the image."""
    if len(box) != 4:
        raise ValueError(f"box must be (top, left, h, w), got {box!r}")
    top, left, h, w = (int(v) for v in box)
    if (top, left, h, w) != tuple(box):
        raise ValueError(f"box must hold integers, got {box!r}")
    if h < 1 or w < 1 or top < 0 or left < 0 or top + h > height or left + w > width:
        raise ValueError(f"box (top={top}, left={left}, h={h}, w={w}) is empty or outside the "
                         f"{height}x{width} image")
    return top, left, h, w


@functools.lru_cache(maxsize=4096)
def axis_weights(in_size: int, out_size: int):
    """(starts, counts, weights) of one axis: the triangle-filter taps as read-only arrays.

    Cached: a loader sees a few hundred (crop side, view side) pairs, each many times.
    """
    ntaps = filter_taps(in_size, out_size)
    starts = np.empty(out_size, np.int64)
    counts = np.empty(out_size, np.int64)
    weights = np.empty((out_size, ntaps), np.float64)  # float64: computed like torch's
    aa_weights_kernel(in_size, out_size, starts, counts, weights)
    weights = weights.astype(np.float32)  # float32: applied 2x wider in SIMD
    for a in (starts, counts, weights):
        a.flags.writeable = False  # shared by every caller through the cache
    return starts, counts, weights


_SCRATCH = threading.local()  # per loader thread: growable uint8 / float32 buffers for resampling


SCRATCH_KEEP = 1 << 22  # elements a thread keeps per buffer: an RGB crop of ~1180 px square


def scratch(name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """A C-contiguous `shape` view of this thread's buffer `name`, grown when too small.

    Requests above SCRATCH_KEEP get a fresh array, so one huge image does not pin its buffers.
    """
    size = math.prod(shape)
    buf = getattr(_SCRATCH, name, None)
    if buf is None or buf.size < size:
        buf = np.empty(max(size, 1 << 16), dtype)
        if size <= SCRATCH_KEEP:
            setattr(_SCRATCH, name, buf)
    return buf[:size].reshape(shape)


def transpose(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """dst = src with axes 0 and 1 swapped (channels kept), by OpenCV's SIMD transpose."""
    out = cv2.transpose(src, dst=dst)
    if out is not dst:  # OpenCV reallocated (it never should for these shapes): copy back
        dst[...] = out.reshape(dst.shape)
    return dst


def choose_backend(h: int, w: int, out_h: int, out_w: int) -> str:
    """`auto`'s choice: cv2 where it equals torchvision's filter and is faster, else numba."""
    return "cv2" if out_h >= h and out_w >= w else "numba"


def resized_crop(src: np.ndarray, box, dst: np.ndarray, flip: bool = False,
                 backend: str = "auto") -> np.ndarray:
    """Crop `box` = (top, left, h, w) of src (H, W, 1|3) and resize into dst (out_h, out_w, 3).

    torchvision's `F.resized_crop(img, *box, dst.shape[:2], antialias=True)` (bilinear), then
    `F.horizontal_flip` if `flip`, written into the preallocated uint8 `dst`.
    """
    check_image(src)
    check_view(dst)
    if np.shares_memory(src, dst):
        raise ValueError("dst must not overlap src")
    top, left, h, w = check_box(box, src.shape[0], src.shape[1])
    out_h, out_w = dst.shape[0], dst.shape[1]
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        backend = choose_backend(h, w, out_h, out_w)
    if backend == "cv2":
        crop = src[top:top + h, left:left + w]
        shrink = out_h < h or out_w < w
        interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        if src.shape[2] == 1:
            # cv2 drops the channel axis; a 2-D resize then a replicating colour conversion
            grey = cv2.resize(crop[:, :, 0], (out_w, out_h), interpolation=interp)
            out = cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB, dst=dst)
        else:
            out = cv2.resize(crop, (out_w, out_h), dst=dst, interpolation=interp)
        if flip:
            out = cv2.flip(out, 1, dst=dst)
        if out is not dst and not np.shares_memory(out, dst):  # OpenCV reallocated: copy back
            dst[...] = out
        return dst
    if (h, w) == (out_h, out_w):  # torch returns the crop unresampled; so do we, fast
        crop = src[top:top + h, left:left + w]
        dst[...] = (crop[:, ::-1] if flip else crop)  # broadcasting replicates a grey channel
        return dst
    ys, yc, yw = axis_weights(h, out_h)
    xs, xc, xw = axis_weights(w, out_w)
    c = src.shape[2]
    crop = src[top:top + h, left:left + w] if c == 3 else src[top:top + h, left:left + w, 0]
    # Horizontal pass, then vertical, with uint8 rounding in between (torch's order). Each pass
    # resamples whole rows, so the horizontal one runs on the transposed crop: two OpenCV
    # transposes (~0.05 ms at 224 px) buy a vectorised pass instead of a scalar gather.
    cols = transpose(crop, scratch("cols", (w, h * c), np.uint8).reshape((w, h) + crop.shape[2:]))
    acc = scratch("acc", (max(h, out_w) * c,), np.float32)
    tmp_t = scratch("tmp_t", (out_w, h * c), np.uint8)
    resample_rows_kernel(cols.reshape(w, h * c), xs, xc, xw, bool(flip), acc, tmp_t)
    tmp = scratch("tmp", (h, out_w * c), np.uint8)
    transpose(tmp_t.reshape((out_w, h) + crop.shape[2:]), tmp.reshape((h, out_w) + crop.shape[2:]))
    resample_rows_kernel(tmp, ys, yc, yw, False, acc, dst.reshape(out_h, out_w * 3))
    return dst


def check(view) -> None:
    h, w = view.hw
    if h < 1 or w < 1:
        raise ValueError(f"view size must be positive, got {view.size}")
    if view.crop not in CROPS:
        raise ValueError(f"crop must be one of {CROPS}, not {view.crop!r}")


SPEC = OpSpec(
    name="RandomResizedCrop",
    fields=(Field("size", 224, "px output (h, w); an int means square"),
            Field("crop", "random", "random: RandomResizedCrop; center: Resize + CenterCrop; "
                  "full: Resize"),
            Field("scale", SCALE, "RandomResizedCrop area fraction (SimCLR)"),
            Field("ratio", RATIO, "RandomResizedCrop aspect ratio w/h"),
            Field("resize", None, "center crop: shorter side first (default size * 256 / 224)")),
    sampling="box: 10 tries of area ~ U(scale), log aspect ~ U(log ratio), then central fallback",
    recipe=recipe, sample=sample, cfg=CFG, ints=INTS, uniforms=2 * ATTEMPTS + 2,
    render=None,  # the first pass, source -> view: render.py (it reads the decoded sources)
    check=check)
