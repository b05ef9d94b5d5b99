"""RandomHorizontalFlip. The crop kernel can mirror while it writes (`resized_crop(flip=True)`),
which is what the loader uses; this standalone op is for recipes that flip without cropping."""

from __future__ import annotations

import numpy as np

from jessl.data.ops._jit import jit, jit_inline
from jessl.data.ops.crop import check_view
from jessl.data.ops.philox import coin
from jessl.data.ops.spec import PROBABILITY, Field, OpSpec, columns, draw

P = 0.5  # flip probability, torchvision RandomHorizontalFlip default (SimCLR, BYOL, VICReg)

CFG = columns("p")
INTS = columns("on")  # 1 = mirror: the crop's resampling reads it (render.py)


def recipe(view) -> tuple[float, ...]:
    return (view.flip_p,)


@jit_inline
def sample(u, k, height, width, cfg, ints, floats):
    """RandomHorizontalFlip(p): one coin on u[k] when p > 0. Returns the next k."""
    return coin(u, k, cfg[CFG.p], ints, INTS.on)


def sample_horizontal_flip(rng: np.random.Generator, p: float = P) -> bool:
    """RandomHorizontalFlip(p) on `rng`, through the production sampler: mirrored or not."""
    return bool(draw(SPEC, rng, 1, 1, (p,))[0][INTS.on])


@jit
def hflip_kernel(src, dst):
    """dst = src[:, ::-1] for (H, W, C) arrays; swaps column pairs, so src may be dst."""
    height, width, channels = src.shape
    for y in range(height):
        for x in range((width + 1) // 2):
            m = width - 1 - x
            for c in range(channels):
                a = src[y, x, c]
                b = src[y, m, c]
                dst[y, x, c] = b
                dst[y, m, c] = a


def horizontal_flip(src: np.ndarray, flip: bool, dst: np.ndarray) -> np.ndarray:
    """torchvision F.horizontal_flip on (H, W, 3) uint8 if `flip`, else a copy; into dst."""
    check_view(src, "src")
    check_view(dst)
    if src.shape != dst.shape:
        raise ValueError(f"src {src.shape} and dst {dst.shape} must have the same shape")
    if flip:
        hflip_kernel(src, dst)
    elif dst is not src:
        np.copyto(dst, src)
    return dst


SPEC = OpSpec(
    name="RandomHorizontalFlip",
    fields=(Field("flip_p", P, "RandomHorizontalFlip probability", PROBABILITY),),
    sampling="flip ~ Bernoulli(p)",
    recipe=recipe, sample=sample, cfg=CFG, ints=INTS, uniforms=1,
    render=None)  # fused into the crop's resampling (render.py): no pass of its own
