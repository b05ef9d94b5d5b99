"""What an op declares so that the loader can draw and render it: `OpSpec` and its `Field`s.

An op is one file (`jessl/data/ops/solarize.py` is the shortest worked example) that holds:

- the `View` fields it adds, with defaults, units and sources (`Field`);
- `recipe(view)`: the float64 recipe columns its sampler reads, after SPL's magnitude;
- `sample(u, k, height, width, cfg, ints, floats) -> k`: the production sampler, a numba kernel
  that turns the view's uniforms u[k:] into this op's parameters and returns the next k. It is
  written against named columns (the namedtuples `CFG`, `INTS`, `FLOATS`, whose fields numba reads
  as compile-time constants) of its own slices of the view's rows, so an op never knows where the
  other ops' columns are, and with the JIT off (`jessl.runtime.set_jit(False)`) the same code is
  the readable Python reference;
- `render(stage, params, view)`: its pass over a chunk's uint8 (J, H, W, 3) views, in place, on
  the records that drew it (`params.ints(SPEC)` is this op's int columns for the chunk); None when
  another op's pass applies it (flip is fused into the crop's resampling, grey into ColorJitter's
  colour pass: one read and write of each image instead of two);
- `kernels(view)`: the numba kernels its render pass calls for a view that can draw it, which
  a cold start compiles in a second process (`jessl.data.warm`);

and registers itself with one line in `jessl.data.ops.registry.PIPELINE`. The View dataclass,
the recipe row, the parameter layout, the sampler that calls every op in order
(`jessl/data/ops/_pipeline.py`, generated) and the renderer's loop all come from that list.
"""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

PROBABILITY = "probability"  # Field.kind: checked in [0, 1]
JITTER = "jitter"  # Field.scaled: multiplied by SPL's magnitude (the paper's colour-jitter strength)
PHOTOMETRIC = "photometric"  # Field.scaled: multiplied only in View.scaled(scales="photometric")


def columns(*names: str):
    """A namedtuple of column indices 0..n-1 by name: `CFG = columns("p")` -> CFG.p == 0.
    numba reads a global namedtuple's fields as constants, so kernels index by name for free."""
    return namedtuple("Columns", names)(*range(len(names)))


@dataclass(frozen=True)
class Field:
    """One View field an op adds."""
    name: str
    default: Any
    doc: str  # unit and source of the default
    kind: str = ""  # PROBABILITY: must lie in [0, 1]
    scaled: str = ""  # JITTER or PHOTOMETRIC: what SPL's magnitude multiplies (View.scaled)


@dataclass(frozen=True)
class OpSpec:
    """One registered op of the view pipeline (module docstring)."""
    name: str  # the torchvision class it reproduces
    fields: tuple[Field, ...]
    sampling: str  # one line: how the parameters are drawn
    recipe: Callable[[Any], tuple[float, ...]] | None = None  # view -> CFG values
    sample: Callable | None = None  # numba kernel (u, k, height, width, cfg, ints, floats) -> k
    cfg: tuple = columns()  # the CFG namedtuple (`columns(...)`)
    ints: tuple = columns()  # the INTS namedtuple: int64 parameters drawn per view
    floats: tuple = columns()  # the FLOATS namedtuple: float64 parameters drawn per view
    uniforms: int = 0  # most uniforms one view's draw takes
    render: Callable | None = None  # (stage, params, view) -> None, in place
    kernels: Callable[[Any], tuple] = lambda view: ()  # the numba kernels render calls for view
    check: Callable[[Any], None] | None = None  # view -> None or ValueError, beyond PROBABILITY

    def __post_init__(self):
        if (self.sample is None) != (self.recipe is None):
            raise ValueError(f"op {self.name}: sample and recipe come together")


def draw(spec: OpSpec, rng: np.random.Generator, height: int, width: int, cfg) -> tuple:
    """(ints, floats) of one draw of `spec` by its production sampler, from `spec.uniforms`
    uniforms of `rng`, for recipe columns `cfg`: the `sample_*` helpers (one image at a time,
    the tests' distributions) run the loader's own code this way."""
    ints = np.zeros(len(spec.ints), np.int64)
    floats = np.zeros(len(spec.floats), np.float64)
    spec.sample(rng.random(spec.uniforms), 0, height, width, np.asarray(cfg, np.float64), ints,
                floats)
    return ints, floats
