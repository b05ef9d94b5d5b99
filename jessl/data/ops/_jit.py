"""The one JIT switch for the augmentation kernels.

Every kernel in `jessl.data.ops` is written once, as plain Python over NumPy arrays, and decorated
with `jit`. With the JIT on (the default) numba compiles it `nogil` so the loader's threads run
kernels in parallel; with `jessl.runtime.set_jit(False)` called before `jessl.data.ops` is first
imported, every kernel stays plain Python, so a debugger and print() work inside it (the same
idea as FFCV's `Compiler.set_enabled(False)`). The trainer calls it with `train.jit`, in one
logged place; without a call, `JESSL_JIT=0` in the environment is the default's way off.
"""

from __future__ import annotations

import numba

from jessl.runtime import jit_choice


def jit_enabled() -> bool:
    """Whether kernels are compiled: `jessl.runtime.jit_choice()` (set_jit's, else JESSL_JIT)
    and numba's own switch is off."""
    return jit_choice() and not numba.config.DISABLE_JIT


_ENABLED = jit_enabled()  # read once, when the kernels are built: their modules decorate them


def jit(fn):
    """Compile `fn` with numba (nogil, on-disk cache, IEEE maths) or return it unchanged."""
    if not _ENABLED:
        return fn
    # fastmath stays off: the kernels are compared bit for bit with their plain-Python selves and
    # level for level with torchvision, and reassociated float sums would break both.
    return numba.njit(nogil=True, cache=True, fastmath=False)(fn)
