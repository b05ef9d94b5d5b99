"""Every view's random parameters for a chunk of records, in one GIL-free call.

The numbers are NumPy's: view v of record r in `epoch` draws the stream that
`np.random.Generator(np.random.Philox(key=[seed, epoch], counter=[0, 0, r, v])).random()`
gives, reproduced bit for bit by a numba Philox4x64-10 (`jessl.data.ops.philox`; tests compare
it with NumPy's). So a record's views depend on (seed, epoch, record, view) only: not on the
thread, the batch or the batch size, and any batch can be replayed.

Each registered op (`jessl.data.ops.registry.PIPELINE`) turns its share of those uniforms into
its parameters with torchvision's algorithm, in its own file; the kernel that calls them all in
order is generated from the registry (`jessl/data/ops/_pipeline.py`). The same samplers, called
one image at a time on a Generator's uniforms, are the `sample_*` functions of `jessl.data.ops`
that the distribution tests compare with torchvision: the tested path is the production path.
"""

from __future__ import annotations

import numpy as np

from jessl.data.ops._jit import plain
from jessl.data.ops.generate import load
from jessl.data.ops.philox import numpy_uniforms, uniforms_kernel
from jessl.data.ops.registry import LAYOUT, Params, recipe_row
from jessl.data.views import View

U64 = np.uint64
KERNELS = load()  # the generated module (or its fresh in-memory build: generate.load)


def view_config(view: View) -> np.ndarray:
    """The (n_cfg,) float64 recipe row of one view (magnitude already applied)."""
    return recipe_row(view)


def view_configs(views: list[View]) -> np.ndarray:
    """(V, n_cfg) recipe rows of a list of views, as `sample_chunk` takes them."""
    return np.stack([view_config(v) for v in views])


# The same kernel as plain Python with NumPy's Philox for the uniforms (same bits, ~30 us a view
# against ~1 us compiled): what a cold start draws with while another process compiles the
# kernel (data/warm.py), so the first batch does not wait the ~2.5 s its compiling takes
PLAIN_CHUNK = plain(KERNELS.sample_chunk_kernel, [(uniforms_kernel, numpy_uniforms)])
JIT = hasattr(KERNELS.sample_chunk_kernel, "py_func")  # a numba dispatcher: the JIT was on


def sample_chunk(seed: int, epoch: int, records: np.ndarray, heights: np.ndarray,
                 widths: np.ndarray, cfgs: np.ndarray,
                 compiled: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(ints (J, V, n_int), floats (J, V, n_float)) for records of the given source sizes;
    `cfgs` from `view_configs`, computed once per epoch by the loader. `view_params` names them.
    compiled=False: the plain-Python kernel (`PLAIN_CHUNK`), the same numbers with nothing to
    compile; also taken when the JIT is off, where it is the faster of the two."""
    j, v = len(records), len(cfgs)
    ints = np.empty((j, v, LAYOUT.n_int), np.int64)
    floats = np.empty((j, v, LAYOUT.n_float), np.float64)
    kernel = KERNELS.sample_chunk_kernel if compiled and JIT else PLAIN_CHUNK
    kernel(U64(seed & (2**64 - 1)), U64(epoch), np.asarray(records, np.int64),
           np.asarray(heights, np.int64), np.asarray(widths, np.int64), cfgs, ints, floats)
    return ints, floats


def view_params(ints: np.ndarray, floats: np.ndarray, view: int) -> Params:
    """View `view`'s parameters of a chunk from `sample_chunk`, by op (`Params.ints(SPEC)`)."""
    return Params(ints[:, view], floats[:, view])
