"""Cut the views of a chunk of records, one numba call per view and phase, without the GIL.

The loader's worker thread hands over: the sources (raw records straight from the memory map,
JPEGs decoded once into one buffer at their DCT scale), and the parameters of every
(record, view) drawn by `jessl.data.sampler`. Per view it then runs

    crop_chunk_kernel   crop box -> antialiased resize (+ the flip, fused)
    each registered op's `render` pass, in pipeline order (jessl.data.ops.registry): ColorJitter
                        (+ grey, fused), GaussianBlur, RandomSolarize ... each only on the
                        records whose coin came up
    (noise +) normalise into the batch tensor

so the per-image Python work is a handful of calls per chunk instead of a dozen per view.
The first and last passes change the arrays (sources -> uint8 views -> float batch) and live
here; every pass in between is its op's own. Boxes are checked against the sources in the
kernel (numba does no bounds checks, so a bad box raises instead of reading outside the image).
"""

from __future__ import annotations

import numpy as np

from jessl.data import warm
from jessl.data.ops import crop, flip, noise
from jessl.data.ops._jit import jit, jit_inline
from jessl.data.ops.crop import crop_resize_kernel, resized_crop
from jessl.data.ops.normalize import (to_float_chw_kernel, to_float_chw_noise_kernel,
                                      to_uint8_chw_kernel)
from jessl.data.ops.registry import LAYOUT, PIPELINE, Params

MAX_DCT_FACTOR = 8  # libjpeg-turbo decodes at 1/2, 1/4 and 1/8 scale at no extra cost
LARGE_VIEW = 96 * 96  # px: from here crops go through ops.resized_crop, one Python call each


BOX = [LAYOUT.col("ints", crop.SPEC, name) for name in ("top", "left", "h", "w")]
FLIP = LAYOUT.col("ints", flip.SPEC, "on")
OUT_H, OUT_W = LAYOUT.col("cfg", crop.SPEC, "out_h"), LAYOUT.col("cfg", crop.SPEC, "out_w")


def dct_factors(ints: np.ndarray, cfgs: np.ndarray) -> np.ndarray:
    """(J,) largest of 1, 2, 4, 8 by which every view's crop of record j may shrink first."""
    box_h, box_w = ints[:, :, BOX[2]], ints[:, :, BOX[3]]  # (J, V)
    room = np.minimum(box_h / cfgs[None, :, OUT_H], box_w / cfgs[None, :, OUT_W])
    room = room.min(axis=1)
    factor = np.ones(len(room), np.int64)
    f = 2
    while f <= MAX_DCT_FACTOR:
        factor[room >= f] = f
        f *= 2
    return factor


@jit_inline
def map_box(top, left, h, w, height, width, src_h, src_w):
    """A (top, left, h, w) box of the full-size image mapped into a reduced decode of it."""
    if src_h == height and src_w == width:
        return top, left, h, w
    sy, sx = src_h / height, src_w / width
    t, b = int(np.rint(top * sy)), int(np.rint((top + h) * sy))
    l, r = int(np.rint(left * sx)), int(np.rint((left + w) * sx))
    h2 = max(1, min(b, src_h) - t)
    w2 = max(1, min(r, src_w) - l)
    return min(t, src_h - h2), min(l, src_w - w2), h2, w2


@jit
def crop_chunk_kernel(raw_data, decoded, from_raw, offsets, heights, widths, channels,
                      src_hs, src_ws, boxes, flips, stage):
    """Per record j: crop + resize (+ flip) its source into stage[j].

    Sources: record j's pixels are raw_data[offsets[j]:] (from_raw) or decoded[offsets[j]:],
    (src_hs[j], src_ws[j], channels[j]); its box (top, left, h, w) = boxes[j] and flip flips[j]
    were drawn for (heights[j], widths[j]).
    Returns -1, or the first record whose box falls outside its source (nothing read then).
    """
    for j in range(stage.shape[0]):
        c = channels[j]
        sh, sw = src_hs[j], src_ws[j]
        base = raw_data if from_raw[j] else decoded
        o = offsets[j]
        if o < 0 or o + sh * sw * c > base.shape[0]:
            return j
        src = base[o:o + sh * sw * c].reshape((sh, sw, c))
        b = boxes[j]
        top, left, h, w = map_box(b[0], b[1], b[2], b[3], heights[j], widths[j], sh, sw)
        if top < 0 or left < 0 or h < 1 or w < 1 or top + h > sh or left + w > sw:
            return j
        crop_resize_kernel(src, top, left, h, w, flips[j] != 0, stage[j])
    return -1


@jit
def float_chunk_kernel(stage, lut, out):
    """Normalise every record's stage[j] into float out[j] through the per-channel table."""
    for j in range(stage.shape[0]):
        to_float_chw_kernel(stage[j], lut, out[j])


@jit
def float_noise_chunk_kernel(stage, on, seeds, lut, mean, std, noise_sigma, out):
    """Per record j: noise + normalise if drawn, else normalise, stage[j] into float out[j]."""
    for j in range(stage.shape[0]):
        if on[j] != 0:
            to_float_chw_noise_kernel(stage[j], mean, std, np.float32(0.0), noise_sigma,
                                      seeds[j], out[j])
        else:
            to_float_chw_kernel(stage[j], lut, out[j])


@jit
def uint8_chunk_kernel(stage, out):
    """Transpose every record's stage[j] into uint8 CHW out[j]."""
    for j in range(stage.shape[0]):
        to_uint8_chw_kernel(stage[j], out[j])


def crop_each(sources, boxes: np.ndarray, flips: np.ndarray, stage: np.ndarray) -> int:
    """Crop + resize every record's view through `ops.resized_crop` (OpenCV's SIMD transposes,
    cached filter taps): for large views its per-call Python cost is noise next to the work."""
    raw_data, decoded, from_raw, offsets, heights, widths, channels, src_hs, src_ws = sources
    for j in range(stage.shape[0]):
        sh, sw, c = int(src_hs[j]), int(src_ws[j]), int(channels[j])
        base = raw_data if from_raw[j] else decoded
        o = int(offsets[j])
        if o < 0 or o + sh * sw * c > base.shape[0]:
            return j
        b = boxes[j]
        box = map_box(b[0], b[1], b[2], b[3], heights[j], widths[j], sh, sw)
        try:
            resized_crop(base[o:o + sh * sw * c].reshape(sh, sw, c), box, stage[j],
                         flip=bool(flips[j]), backend="numba")
        except ValueError:  # a box outside the source
            return j
    return -1


PASSES = tuple(spec for spec in PIPELINE if spec.render is not None)  # in pipeline order


def crop_pass(sources, ints_v: np.ndarray, view, stage: np.ndarray) -> int:
    """The first pass: every record's box of its source, resized (and flipped) into stage[j].
    Returns -1, or the first record whose box falls outside its source."""
    boxes = np.ascontiguousarray(ints_v[:, BOX])
    flips = np.ascontiguousarray(ints_v[:, FLIP])
    out_h, out_w = view.hw
    if out_h * out_w >= LARGE_VIEW:
        return crop_each(sources, boxes, flips, stage)
    return crop_chunk_kernel(*sources, boxes, flips, stage)  # one call, no Python per record


def write_pass(stage: np.ndarray, params: Params, view, lut, out: np.ndarray) -> None:
    """The last pass: (noise +) normalise into the float batch, or transpose into uint8 when
    `lut` is None (normalisation on the accelerator)."""
    if lut is None:
        uint8_chunk_kernel(stage, out)
        return
    drawn = params.ints(noise.SPEC)
    on, seeds = drawn[:, noise.INTS.on], drawn[:, noise.INTS.seed]
    if on.any():
        float_noise_chunk_kernel(stage, np.ascontiguousarray(on), np.ascontiguousarray(seeds),
                                 lut, np.asarray(view.mean, np.float32),
                                 np.asarray(view.std, np.float32), np.float32(view.noise_std),
                                 out)
    else:
        float_chunk_kernel(stage, lut, out)


def write_kernels(view, output: str) -> tuple:
    """The kernels `write_pass` may call for a view: what a cold start warms (data/warm.py)."""
    if output != "float":
        return (uint8_chunk_kernel,)
    noise_p = view.noise_p if view.noise_std > 0 else 0.0
    return ((float_chunk_kernel,) if noise_p < 1 else ()) + \
        ((float_noise_chunk_kernel,) if noise_p > 0 else ())


def render_view(sources, ints_v: np.ndarray, floats_v: np.ndarray, view, lut, out: np.ndarray,
                stage: np.ndarray) -> int:
    """All records of a chunk for one view; returns -1 or the index of a bad record.

    Each op's pass is its own kernel, called only when some record of the chunk drew it, so a
    fresh install compiles only the ops the run's views use (crops + flip: no colour, solarize
    or noise code), and a chunk skips the passes none of its records needs."""
    bad = crop_pass(sources, ints_v, view, stage)
    if bad >= 0:
        return bad
    warm.wait()  # a cold start's second process compiles the passes below (data/warm.py)
    params = Params(ints_v, floats_v)
    for spec in PASSES:
        spec.render(stage, params, view)
    write_pass(stage, params, view, lut, out)
    return -1
