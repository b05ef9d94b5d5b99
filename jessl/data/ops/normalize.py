"""The last step of a view: uint8 (H, W, C) -> float32 (3, H, W), (x/255 - mean)/std, noise fused.

Written straight into a preallocated destination, typically `batch[i]` of a contiguous
(B, 3, H, W) array that is a torch tensor's `.numpy()` view, so the batch needs no further copy.
Without noise each level maps through a (3, 256) table computed exactly as torchvision's
to_dtype(scale=True) then normalize compute it, so outputs equal torchvision's bit for bit.
`to_uint8_chw` keeps bytes for normalisation on the accelerator (4x less memory traffic).
"""

from __future__ import annotations

import numpy as np

from jessl.data.ops._jit import jit
from jessl.data.ops.noise import MEAN as NOISE_MEAN
from jessl.data.ops.noise import SIGMA as NOISE_SIGMA
from jessl.data.ops.noise import add_noise, normal_pair
from jessl.data.ops.spec import Field, OpSpec

MEAN = (0.485, 0.456, 0.406)  # ImageNet RGB means on [0, 1], torchvision reference scripts
STD = (0.229, 0.224, 0.225)  # ImageNet RGB standard deviations on [0, 1], same source
INV255 = np.float32(1.0 / 255)


def normalize_lut(mean=MEAN, std=STD) -> np.ndarray:
    """(3, 256) float32: lut[c, v] = (v * float32(1/255) - mean[c]) / std[c], torch's float32 ops."""
    mean = np.asarray(mean, np.float32).reshape(3, 1)
    std = np.asarray(std, np.float32).reshape(3, 1)
    if mean.size != 3 or std.size != 3 or not (std > 0).all():
        raise ValueError(f"mean and std need 3 values each, std positive: {mean.ravel()}, {std.ravel()}")
    levels = np.arange(256, dtype=np.float32)[None, :] * INV255
    return np.ascontiguousarray((levels - mean) / std, np.float32)


@jit
def to_float_chw_kernel(src, lut, dst):
    """dst[c, y, x] = lut[c, src[y, x, c]]; a 1-channel src feeds all 3 channels."""
    height, width, channels = src.shape
    for c in range(3):
        sc = c if channels == 3 else 0
        for y in range(height):
            for x in range(width):
                dst[c, y, x] = lut[c, src[y, x, sc]]


@jit
def to_float_chw_noise_kernel(src, mean, std, noise_mean, noise_sigma, seed, dst):
    """dst[c, y, x] = (clip(src/255 + noise) - mean[c]) / std[c]; noise element = its CHW index.

    Element i (its flat (3, H, W) index) gets deviate i of `noise.normal_pair(seed, i // 2)`, the
    numbers `noise.gaussian_noise_kernel` adds to the float image, so the fused and the separate
    paths agree. Walking pairs uses both Box-Muller outputs; still about 4 ms per 224 px view
    (2-core dev machine, vs 0.05 ms without noise), dominated by the hash and log/cos/sin.
    """
    height, width, channels = src.shape
    n = 3 * height * width
    for j in range((n + 1) // 2):
        z0, z1 = normal_pair(seed, j)
        for i in range(2 * j, min(2 * j + 2, n)):
            c = i // (height * width)
            y = (i // width) % height
            x = i % width
            sc = c if channels == 3 else 0
            v = add_noise(np.float32(src[y, x, sc]) * INV255, z0 if i == 2 * j else z1,
                          noise_mean, noise_sigma, True)
            dst[c, y, x] = np.float32(np.float32(v - mean[c]) / std[c])


@jit
def to_uint8_chw_kernel(src, dst):
    """dst[c, y, x] = src[y, x, c] (uint8); a 1-channel src feeds all 3 channels."""
    height, width, channels = src.shape
    for c in range(3):
        sc = c if channels == 3 else 0
        for y in range(height):
            for x in range(width):
                dst[c, y, x] = src[y, x, sc]


def _check(src: np.ndarray, dst: np.ndarray, dtype) -> None:
    if not isinstance(src, np.ndarray) or src.dtype != np.uint8 or src.ndim != 3 \
            or src.shape[2] not in (1, 3) or not src.flags.c_contiguous:
        raise ValueError(f"src must be a C-contiguous uint8 (H, W, 1|3) array, got "
                         f"{getattr(src, 'dtype', None)} {getattr(src, 'shape', None)}")
    want = (3, src.shape[0], src.shape[1])
    if not isinstance(dst, np.ndarray) or dst.dtype != dtype or dst.shape != want \
            or not dst.flags.c_contiguous or not dst.flags.writeable:
        raise ValueError(f"dst must be a writable C-contiguous {np.dtype(dtype)} {want} array, got "
                         f"{getattr(dst, 'dtype', None)} {getattr(dst, 'shape', None)}")


def to_float_chw(src: np.ndarray, dst: np.ndarray, mean=MEAN, std=STD, noise_seed: int | None = None,
                 noise_mean: float = NOISE_MEAN, noise_sigma: float = NOISE_SIGMA,
                 lut: np.ndarray | None = None) -> np.ndarray:
    """ToDtype(float32, scale=True) [+ GaussianNoise(noise_mean, noise_sigma) if noise_seed] +
    Normalize(mean, std): uint8 (H, W, 1|3) -> float32 (3, H, W) into dst.

    `lut` (from `normalize_lut(mean, std)`) may be passed to skip rebuilding it per view.
    """
    _check(src, dst, np.float32)
    if noise_seed is None:
        if lut is None:
            lut = normalize_lut(mean, std)
        elif lut.shape != (3, 256) or lut.dtype != np.float32 or not lut.flags.c_contiguous:
            raise ValueError("lut must be a C-contiguous float32 (3, 256) table from normalize_lut")
        to_float_chw_kernel(src, lut, dst)
        return dst
    normalize_lut(mean, std)  # validates mean and std
    if noise_sigma < 0:
        raise ValueError(f"noise_sigma must be non-negative, got {noise_sigma}")
    to_float_chw_noise_kernel(src, np.asarray(mean, np.float32), np.asarray(std, np.float32),
                              np.float32(noise_mean), np.float32(noise_sigma), np.int64(noise_seed),
                              dst)
    return dst


def to_uint8_chw(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 1|3) -> uint8 (3, H, W) into dst, for normalisation on the accelerator."""
    _check(src, dst, np.uint8)
    to_uint8_chw_kernel(src, dst)
    return dst


SPEC = OpSpec(
    name="Normalize",
    fields=(Field("mean", MEAN, "RGB on [0, 1]: ImageNet's, or the dataset's (views.CIFAR_MEAN)"),
            Field("std", STD, "RGB on [0, 1]: ImageNet's, or the dataset's (views.CIFAR_STD)")),
    sampling="none",
    render=None)  # the last pass, uint8 view -> float batch, noise fused: render.py
