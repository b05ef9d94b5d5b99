"""RandomSolarize: invert every level at or above a threshold (BYOL, Grill et al. 2020, table 6).

The shortest op, and the worked example of what an op file holds (`jessl.data.ops.spec`):
its View fields, its recipe columns, its production sampler, its kernel and its render pass,
then `SPEC`; one line in `jessl.data.ops.registry.PIPELINE` registers it.
"""

from __future__ import annotations

import numpy as np

from jessl.data.ops._jit import jit, jit_inline
from jessl.data.ops.crop import check_view
from jessl.data.ops.philox import coin
from jessl.data.ops.spec import PHOTOMETRIC, PROBABILITY, Field, OpSpec, columns, draw

THRESHOLD = 128  # uint8 levels; BYOL's 0.5 on [0, 1] images, torchvision RandomSolarize usage
P = 0.2  # BYOL's second view (the first view uses 0.0)

CFG = columns("p")  # recipe columns the sampler reads
INTS = columns("on")  # drawn per view: 1 = solarize


def recipe(view) -> tuple[float, ...]:
    return (view.solarize_p,)


@jit_inline
def sample(u, k, height, width, cfg, ints, floats):
    """RandomSolarize(p): one coin on u[k] when p > 0. Returns the next k."""
    return coin(u, k, cfg[CFG.p], ints, INTS.on)


def sample_solarize(rng: np.random.Generator, p: float = P) -> bool:
    """RandomSolarize(threshold, p) on `rng`, through the production sampler: solarized or not."""
    return bool(draw(SPEC, rng, 1, 1, (p,))[0][INTS.on])


@jit
def solarize_kernel(src, threshold, dst):
    """dst = where(src >= threshold, 255 - src, src) on uint8 arrays of any shape; src may be dst."""
    flat_src = src.reshape(src.size)
    flat_dst = dst.reshape(dst.size)
    for i in range(flat_src.size):
        v = flat_src[i]
        flat_dst[i] = np.uint8(255 - int(v)) if v >= threshold else v


def solarize(src: np.ndarray, threshold: float, dst: np.ndarray) -> np.ndarray:
    """torchvision v2 F.solarize(img, threshold) on (H, W, 3) uint8, into dst."""
    check_view(src, "src")
    check_view(dst)
    if src.shape != dst.shape:
        raise ValueError(f"src {src.shape} and dst {dst.shape} must have the same shape")
    if not 0 <= threshold <= 255:
        raise ValueError(f"threshold must be in [0, 255] for uint8 images, got {threshold}")
    solarize_kernel(src, float(threshold), dst)
    return dst


@jit
def solarize_chunk_kernel(stage, on, threshold):
    """Solarize in place the views stage[j] whose coin on[j] came up."""
    for j in range(stage.shape[0]):
        if on[j] != 0:
            solarize_kernel(stage[j], threshold, stage[j])


def render(stage: np.ndarray, params, view) -> None:
    """The chunk's pass: solarize the records that drew it."""
    on = params.ints(SPEC)[:, INTS.on]
    if on.any():
        solarize_chunk_kernel(stage, np.ascontiguousarray(on), np.float64(view.solarize_threshold))


SPEC = OpSpec(
    name="RandomSolarize",
    fields=(Field("solarize_p", 0.0, "RandomSolarize probability", PROBABILITY, PHOTOMETRIC),
            Field("solarize_threshold", THRESHOLD, "uint8 levels (BYOL's 0.5)")),
    sampling="solarize ~ Bernoulli(p)",
    recipe=recipe, sample=sample, cfg=CFG, ints=INTS, uniforms=1, render=render,
    kernels=lambda view: (solarize_chunk_kernel,) if view.solarize_p > 0 else ())
