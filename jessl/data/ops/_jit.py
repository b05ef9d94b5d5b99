"""The one JIT switch for the augmentation kernels.

Every kernel in `jessl.data.ops` is written once, as plain Python over NumPy arrays, and decorated
with `jit`. With the JIT on (the default) numba compiles it `nogil` so the loader's threads run
kernels in parallel; with `JESSL_JIT=0` in the environment *before* `jessl.data.ops` is first
imported, every kernel stays plain Python, so a debugger and print() work inside it (the same
idea as FFCV's `Compiler.set_enabled(False)`). The config layer sets the variable in one logged
place; nothing else reads it.
"""

from __future__ import annotations

import os

import numba

ENV_VAR = "JESSL_JIT"


def jit_enabled() -> bool:
    """Whether kernels are compiled: `JESSL_JIT` unset or not "0", and numba's own switch is off."""
    return os.environ.get(ENV_VAR, "1") != "0" and not numba.config.DISABLE_JIT


_ENABLED = jit_enabled()  # read once at import: kernels are decorated when their module loads


def jit(fn):
    """Compile `fn` with numba (nogil, on-disk cache, IEEE maths) or return it unchanged."""
    if not _ENABLED:
        return fn
    # fastmath stays off: the kernels are compared bit for bit with their plain-Python selves and
    # level for level with torchvision, and reassociated float sums would break both.
    return numba.njit(nogil=True, cache=True, fastmath=False)(fn)
