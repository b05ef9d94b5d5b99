"""Cut the views of a chunk of records, one numba call per view and phase, without the GIL.

The loader's worker thread hands over: the sources (raw records straight from the memory map,
JPEGs decoded once into one buffer at their DCT scale), and the parameters of every
(record, view) drawn by `jessl.data.sampler`. Per view it then runs

    crop_chunk_kernel   crop box -> antialiased resize (+ flip)
    color_chunk_kernel  ColorJitter -> grey
    GaussianBlur        OpenCV's separable filter, only on the records whose coin came up
    solarize_chunk_kernel, then (noise +) normalise into the batch tensor

so the per-image Python work is a handful of calls per chunk instead of a dozen per view.
The kernels are those of `jessl.data.ops`, called from numba; the samplers' parameter layout is
`jessl.data.sampler`'s. Boxes are checked against the sources in the kernel (numba does no
bounds checks, so a bad box raises instead of reading outside the image).
"""

from __future__ import annotations

import numpy as np

from jessl.data import sampler as S
from jessl.data.ops import gaussian_blur
from jessl.data.ops._jit import jit
from jessl.data.ops.color import BLOCK, color_kernel
from jessl.data.ops.crop import crop_resize_kernel, resized_crop
from jessl.data.ops.normalize import (to_float_chw_kernel, to_float_chw_noise_kernel,
                                      to_uint8_chw_kernel)
from jessl.data.ops.solarize import solarize_kernel

MAX_DCT_FACTOR = 8  # libjpeg-turbo decodes at 1/2, 1/4 and 1/8 scale at no extra cost
LARGE_VIEW = 96 * 96  # px: from here crops go through ops.resized_crop, one Python call each


def dct_factors(ints: np.ndarray, cfgs: np.ndarray) -> np.ndarray:
    """(J,) largest of 1, 2, 4, 8 by which every view's crop of record j may shrink first."""
    box_h, box_w = ints[:, :, S.I_H], ints[:, :, S.I_W]  # (J, V)
    room = np.minimum(box_h / cfgs[None, :, S.C_OUT_H], box_w / cfgs[None, :, S.C_OUT_W])
    room = room.min(axis=1)
    factor = np.ones(len(room), np.int64)
    f = 2
    while f <= MAX_DCT_FACTOR:
        factor[room >= f] = f
        f *= 2
    return factor


@jit
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
                      src_hs, src_ws, ints, stage):
    """Per record j: crop + resize (+ flip) its source into stage[j].

    Sources: record j's pixels are raw_data[offsets[j]:] (from_raw) or decoded[offsets[j]:],
    (src_hs[j], src_ws[j], channels[j]); its parameters were drawn for (heights[j], widths[j]).
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
        p = ints[j]
        top, left, h, w = map_box(p[S.I_TOP], p[S.I_LEFT], p[S.I_H], p[S.I_W],
                                  heights[j], widths[j], sh, sw)
        if top < 0 or left < 0 or h < 1 or w < 1 or top + h > sh or left + w > sw:
            return j
        crop_resize_kernel(src, top, left, h, w, p[S.I_FLIP] != 0, stage[j])
    return -1


@jit
def color_chunk_kernel(stage, ints, floats):
    """ColorJitter and grey of every record's view as drawn, in place."""
    planes = np.empty((3, BLOCK), np.float32)
    for j in range(stage.shape[0]):
        p = ints[j]
        order = p[S.I_ORDER:S.I_ORDER + 4]
        grey = p[S.I_GREY] != 0
        if grey or order.max() >= 0:
            factors = floats[j, S.F_FACTORS:S.F_FACTORS + 4].astype(np.float32)
            color_kernel(stage[j], order, factors, grey, planes, stage[j])


@jit
def solarize_chunk_kernel(stage, ints, threshold):
    """Solarize in place the records whose coin came up."""
    for j in range(stage.shape[0]):
        if ints[j, S.I_SOLARIZE] != 0:
            solarize_kernel(stage[j], threshold, stage[j])


@jit
def float_chunk_kernel(stage, lut, out):
    """Normalise every record's stage[j] into float out[j] through the per-channel table."""
    for j in range(stage.shape[0]):
        to_float_chw_kernel(stage[j], lut, out[j])


@jit
def float_noise_chunk_kernel(stage, ints, lut, mean, std, noise_sigma, out):
    """Per record j: noise + normalise if drawn, else normalise, stage[j] into float out[j]."""
    for j in range(stage.shape[0]):
        p = ints[j]
        if p[S.I_NOISE] != 0:
            to_float_chw_noise_kernel(stage[j], mean, std, np.float32(0.0), noise_sigma,
                                      p[S.I_SEED], out[j])
        else:
            to_float_chw_kernel(stage[j], lut, out[j])


@jit
def uint8_chunk_kernel(stage, out):
    """Transpose every record's stage[j] into uint8 CHW out[j]."""
    for j in range(stage.shape[0]):
        to_uint8_chw_kernel(stage[j], out[j])


def crop_each(sources, ints_v: np.ndarray, stage: np.ndarray) -> int:
    """Crop + resize every record's view through `ops.resized_crop` (OpenCV's SIMD transposes,
    cached filter taps): for large views its per-call Python cost is noise next to the work."""
    raw_data, decoded, from_raw, offsets, heights, widths, channels, src_hs, src_ws = sources
    for j in range(stage.shape[0]):
        sh, sw, c = int(src_hs[j]), int(src_ws[j]), int(channels[j])
        base = raw_data if from_raw[j] else decoded
        o = int(offsets[j])
        if o < 0 or o + sh * sw * c > base.shape[0]:
            return j
        p = ints_v[j]
        box = map_box(p[S.I_TOP], p[S.I_LEFT], p[S.I_H], p[S.I_W], heights[j], widths[j], sh, sw)
        try:
            resized_crop(base[o:o + sh * sw * c].reshape(sh, sw, c), box, stage[j],
                         flip=bool(p[S.I_FLIP]), backend="numba")
        except ValueError:  # a box outside the source
            return j
    return -1


def render_view(sources, ints_v: np.ndarray, floats_v: np.ndarray, view, lut, out: np.ndarray,
                stage: np.ndarray) -> int:
    """All records of a chunk for one view; returns -1 or the index of a bad record.

    Each op family is its own kernel, called only when some record of the chunk drew it, so a
    fresh install compiles only the ops the run's views use (crops + flip: no colour, solarize
    or noise code), and a chunk skips the passes none of its records needs."""
    out_h, out_w = view.hw
    if out_h * out_w >= LARGE_VIEW:
        bad = crop_each(sources, ints_v, stage)
    else:  # small views: one call for the chunk, no Python per record
        bad = crop_chunk_kernel(*sources, ints_v, stage)
    if bad >= 0:
        return bad
    if ints_v[:, S.I_GREY].any() or (ints_v[:, S.I_ORDER:S.I_ORDER + 4] >= 0).any():
        color_chunk_kernel(stage, ints_v, floats_v)
    for j in np.flatnonzero(ints_v[:, S.I_BLUR]):
        gaussian_blur(stage[j], view.kernel_size, float(floats_v[j, S.F_SIGMA]), stage[j])
    if ints_v[:, S.I_SOLARIZE].any():
        solarize_chunk_kernel(stage, ints_v, np.float64(view.solarize_threshold))
    if lut is None:
        uint8_chunk_kernel(stage, out)
    elif ints_v[:, S.I_NOISE].any():
        float_noise_chunk_kernel(stage, ints_v, lut, np.asarray(view.mean, np.float32),
                                 np.asarray(view.std, np.float32), np.float32(view.noise_std),
                                 out)
    else:
        float_chunk_kernel(stage, lut, out)
    return -1
