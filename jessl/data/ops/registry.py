"""The view pipeline: every op in the order it runs, and where each op's columns sit.

    crop -> flip -> ColorJitter -> grey -> blur -> solarize -> noise + Normalize

(SimCLR / BYOL's order). An op is registered by its line in `PIPELINE`; the `View` dataclass
(`jessl.data.views`), a view's recipe row, the parameter layout, the generated sampler
(`_pipeline.py`, `python -m jessl.data.ops.generate`) and the renderer's loop all read this list.
Each op's uniforms are drawn in this order, so inserting an op before another changes the
latter's draws: append new ops before Normalize, where their draws come last.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jessl.data.ops import blur, color, crop, flip, noise, normalize, solarize
from jessl.data.ops.spec import OpSpec

PIPELINE: tuple[OpSpec, ...] = (
    crop.SPEC,
    flip.SPEC,
    color.JITTER_SPEC,
    color.GREY_SPEC,
    blur.SPEC,
    solarize.SPEC,
    noise.SPEC,
    normalize.SPEC,
)


def _offsets(sizes: list[int]) -> list[slice]:
    ends = np.cumsum([0] + sizes).tolist()
    return [slice(a, b) for a, b in zip(ends[:-1], ends[1:])]


@dataclass(frozen=True)
class Layout:
    """Where each op's columns sit in a view's recipe row (cfg), int64 and float64 parameters."""
    cfg: dict[str, slice]
    ints: dict[str, slice]
    floats: dict[str, slice]
    n_cfg: int
    n_int: int
    n_float: int
    uniforms: int  # the most one view's draw takes: every op's at once

    def col(self, kind: str, spec: OpSpec, name: str) -> int:
        """The column of `spec`'s field `name` in the whole row: kind "cfg", "ints" or "floats"."""
        return getattr(self, kind)[spec.name].start + getattr(spec, kind)._fields.index(name)


def layout(pipeline: tuple[OpSpec, ...] = PIPELINE) -> Layout:
    sampled = [s for s in pipeline if s.sample is not None]
    by = {kind: dict(zip((s.name for s in sampled),
                         _offsets([len(getattr(s, kind)) for s in sampled])))
          for kind in ("cfg", "ints", "floats")}
    return Layout(by["cfg"], by["ints"], by["floats"],
                  n_cfg=sum(len(s.cfg) for s in sampled), n_int=sum(len(s.ints) for s in sampled),
                  n_float=sum(len(s.floats) for s in sampled),
                  uniforms=sum(s.uniforms for s in sampled))


LAYOUT = layout()


def recipe_row(view, pipeline: tuple[OpSpec, ...] = PIPELINE) -> np.ndarray:
    """The (n_cfg,) float64 recipe row of one view (magnitude already applied)."""
    return np.array([v for s in pipeline if s.recipe is not None for v in s.recipe(view)],
                    np.float64)


class Params:
    """One view's drawn parameters for a chunk of J records, by op: what `render` passes read."""

    def __init__(self, ints: np.ndarray, floats: np.ndarray, where: Layout = LAYOUT):
        self._ints, self._floats, self._where = ints, floats, where  # (J, n_int), (J, n_float)

    def ints(self, spec: OpSpec) -> np.ndarray:
        """(J, len(spec.ints)) int64: `spec`'s columns, indexed by its INTS names."""
        return self._ints[:, self._where.ints[spec.name]]

    def floats(self, spec: OpSpec) -> np.ndarray:
        """(J, len(spec.floats)) float64: `spec`'s columns, indexed by its FLOATS names."""
        return self._floats[:, self._where.floats[spec.name]]
