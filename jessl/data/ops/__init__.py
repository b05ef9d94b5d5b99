"""Augmentation ops for the multi-view loader: sample parameters, then run a pure kernel.

A view is cut from a decoded uint8 (H, W, 1|3) image in this order (SimCLR / BYOL recipes):

    RandomResizedCrop | CenterCrop  ->  RandomHorizontalFlip (fused into the crop)
    -> ColorJitter -> RandomGrayscale (one fused pass)  -> GaussianBlur -> RandomSolarize
    -> GaussianNoise + Normalize (fused into the final float32 (3, H, W) write)

Two registries. The loader's is `jessl.data.ops.registry.PIPELINE`: each op file declares its
View fields, recipe columns, production sampler (a numba kernel over named columns) and render
pass (`jessl.data.ops.spec`), and the View class, the parameter layout and the generated
sampler come from that list. `OPS` below is the one-image-at-a-time face of the same code, under
torchvision's class names with one contract, so one test runs over all of them:

    params = op.sample(rng, height, width, **kwargs)   # the production sampler on rng's uniforms
    op.apply(src, params, dst, **kwargs)               # pure; params None = op not drawn: copy

`op.src` / `op.dst` say what the arrays are ("uint8 HWC" or "float32 CHW").
How each op draws its parameters (`op.sampling` says the same):

- RandomResizedCrop: torchvision get_params: up to 10 tries of area ~ U(scale) * H*W and
  log aspect ~ U(log ratio), box position uniform; then a central crop clamped to `ratio`.
- CenterCrop: no draw; Resize(resize) + CenterCrop(size) as one source box.
- RandomHorizontalFlip: one Bernoulli(p).
- ColorJitter: Bernoulli(p) (RandomApply), a uniform permutation of the 4 ops, then factors
  brightness/contrast/saturation ~ U[max(0, 1-v), 1+v], hue ~ U[-h, h].
- RandomGrayscale: one Bernoulli(p).
- GaussianBlur: Bernoulli(p), sigma ~ U(sigma).
- RandomSolarize: one Bernoulli(p).
- GaussianNoise: Bernoulli(p), then a 53-bit seed from which the kernel derives every deviate.
- Normalize: no draw.

Kernels compile with numba (nogil) unless `jessl.runtime.set_jit(False)` (or JESSL_JIT=0)
switched that off before this package was imported; see `_jit.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from jessl.data.ops import blur as _blur
from jessl.data.ops import color as _color
from jessl.data.ops import crop as _crop
from jessl.data.ops import flip as _flip
from jessl.data.ops import noise as _noise
from jessl.data.ops import normalize as _normalize
from jessl.data.ops import solarize as _solarize
from jessl.data.ops.blur import gaussian_blur, sample_gaussian_blur
from jessl.data.ops.color import (JitterParams, adjust_brightness, adjust_contrast, adjust_hue,
                                  adjust_saturation, rgb_to_grayscale, sample_color_jitter,
                                  sample_grayscale)
from jessl.data.ops.crop import center_crop_box, resized_crop, sample_resized_crop
from jessl.data.ops.flip import horizontal_flip, sample_horizontal_flip
from jessl.data.ops.noise import gaussian_noise, sample_gaussian_noise
from jessl.data.ops.normalize import normalize_lut, to_float_chw, to_uint8_chw
from jessl.data.ops.solarize import sample_solarize  # not `solarize`: it would shadow the module

U8_HWC = "uint8 HWC"
F32_CHW = "float32 CHW"


@dataclass(frozen=True)
class Op:
    """One registered op: how its parameters are drawn and the kernel wrapper that applies them."""
    sample: Callable[..., Any]  # (rng, height, width, **kwargs) -> params, None = not drawn
    apply: Callable[..., np.ndarray]  # (src, params, dst, **kwargs) -> dst
    src: str  # U8_HWC or F32_CHW
    dst: str
    sampling: str  # one line: how the parameters are drawn


def _copy(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """An op not drawn: the view passes through unchanged."""
    if dst is not src:
        np.copyto(dst, src)
    return dst


def _copy_if_none(fn):
    """Wrap `fn(src, params, dst, **kw)` so that params None copies src to dst."""
    def apply(src, params, dst, **kwargs):
        return _copy(src, dst) if params is None else fn(src, params, dst, **kwargs)
    apply.__doc__ = fn.__doc__
    return apply


OPS: dict[str, Op] = {
    "RandomResizedCrop": Op(
        sample=lambda rng, height, width, scale=_crop.SCALE, ratio=_crop.RATIO:
            sample_resized_crop(rng, height, width, scale, ratio),
        apply=lambda src, box, dst, flip=False, backend="auto":
            resized_crop(src, box, dst, flip=flip, backend=backend),
        src=U8_HWC, dst=U8_HWC,
        sampling="box: 10 tries of area ~ U(scale), log aspect ~ U(log ratio), then central fallback"),
    "CenterCrop": Op(
        sample=lambda rng, height, width, size=224, resize=256:
            center_crop_box(height, width, size, resize),
        apply=lambda src, box, dst, backend="auto": resized_crop(src, box, dst, backend=backend),
        src=U8_HWC, dst=U8_HWC,
        sampling="none: Resize(resize) + CenterCrop(size) as one box (evaluation, 256 -> 224)"),
    "RandomHorizontalFlip": Op(
        sample=lambda rng, height, width, p=_flip.P: sample_horizontal_flip(rng, p),
        apply=lambda src, on, dst: horizontal_flip(src, bool(on), dst),
        src=U8_HWC, dst=U8_HWC, sampling="flip ~ Bernoulli(p)"),
    "ColorJitter": Op(
        sample=lambda rng, height, width, brightness=_color.BRIGHTNESS_DEFAULT,
        contrast=_color.CONTRAST_DEFAULT, saturation=_color.SATURATION_DEFAULT,
        hue=_color.HUE_DEFAULT, p=_color.JITTER_P:
            sample_color_jitter(rng, brightness, contrast, saturation, hue, p),
        apply=lambda src, params, dst: _color.color(src, params, False, dst),
        src=U8_HWC, dst=U8_HWC,
        sampling="apply ~ Bernoulli(p); order ~ uniform permutation of 4; factors uniform in range"),
    "RandomGrayscale": Op(
        sample=lambda rng, height, width, p=_color.GRAYSCALE_P: sample_grayscale(rng, p),
        apply=lambda src, on, dst: _color.color(src, _color.NO_JITTER, bool(on), dst),
        src=U8_HWC, dst=U8_HWC, sampling="grey ~ Bernoulli(p)"),
    "GaussianBlur": Op(
        sample=lambda rng, height, width, sigma=_blur.SIGMA, p=1.0: sample_gaussian_blur(rng, sigma, p),
        apply=_copy_if_none(lambda src, sigma, dst, kernel_size=_blur.KERNEL_SIZE:
                            gaussian_blur(src, kernel_size, sigma, dst)),
        src=U8_HWC, dst=U8_HWC, sampling="apply ~ Bernoulli(p); sigma ~ U(sigma) px"),
    "RandomSolarize": Op(
        sample=lambda rng, height, width, p=_solarize.P: sample_solarize(rng, p),
        apply=lambda src, on, dst, threshold=_solarize.THRESHOLD:
            _solarize.solarize(src, threshold, dst) if on else _copy(src, dst),
        src=U8_HWC, dst=U8_HWC, sampling="solarize ~ Bernoulli(p)"),
    "GaussianNoise": Op(
        sample=lambda rng, height, width, p=_noise.P: sample_gaussian_noise(rng, p),
        apply=lambda src, seed, dst, mean=_noise.MEAN, sigma=_noise.SIGMA, clip=_noise.CLIP:
            gaussian_noise(src, seed, dst, mean, sigma, clip),
        src=F32_CHW, dst=F32_CHW,
        sampling="apply ~ Bernoulli(p); seed ~ 53 bits; deviates hashed from (seed, index)"),
    "Normalize": Op(
        sample=lambda rng, height, width: None,
        apply=lambda src, params, dst, mean=_normalize.MEAN, std=_normalize.STD:
            to_float_chw(src, dst, mean, std),
        src=U8_HWC, dst=F32_CHW, sampling="none"),
}

__all__ = [
    "OPS", "Op", "JitterParams",
    "sample_resized_crop", "center_crop_box", "resized_crop",
    "sample_horizontal_flip", "horizontal_flip",
    "sample_color_jitter", "sample_grayscale", "adjust_brightness", "adjust_contrast",
    "adjust_saturation", "adjust_hue", "rgb_to_grayscale",
    "sample_gaussian_blur", "gaussian_blur",
    "sample_solarize",
    "sample_gaussian_noise", "gaussian_noise",
    "normalize_lut", "to_float_chw", "to_uint8_chw",
]
