"""Philox4x64-10, bit for bit NumPy's, inside numba: the uniforms every view's parameters come from.

View v of record r in `epoch` draws the stream that
`np.random.Generator(np.random.Philox(key=[seed, epoch], counter=[0, 0, r, v])).random()`
gives (tests compare it with NumPy's), so a record's views depend on (seed, epoch, record, view)
only: not on the thread, the batch or the batch size, and any batch can be replayed.
"""

from __future__ import annotations

import numpy as np

from jessl.data.ops._jit import jit_inline

U64 = np.uint64
M32 = U64(0xFFFFFFFF)
S32 = U64(32)
ONE64 = U64(1)
PHILOX_M0, PHILOX_M1 = U64(0xD2E7470EE14C6C93), U64(0xCA5A826395121157)  # Random123 / NumPy
PHILOX_W0, PHILOX_W1 = U64(0x9E3779B97F4A7C15), U64(0xBB67AE8584CAA73B)
TO_UNIT = 1.0 / 9007199254740992.0  # 2**-53: NumPy's random() takes the top 53 bits


@jit_inline
def mulhilo(a, b):
    """(high, low) 64-bit halves of the 128-bit product a * b, from 32-bit pieces."""
    a_lo, a_hi = a & M32, a >> S32
    b_lo, b_hi = b & M32, b >> S32
    p0, p1, p2, p3 = a_lo * b_lo, a_lo * b_hi, a_hi * b_lo, a_hi * b_hi
    mid = (p0 >> S32) + (p1 & M32) + (p2 & M32)
    return p3 + (p1 >> S32) + (p2 >> S32) + (mid >> S32), a * b


@jit_inline
def philox_block(c0, c1, c2, c3, k0, k1, out, at):
    """Philox4x64-10 of counter (c0..c3) under key (k0, k1) into out[at:at+4]."""
    for r in range(10):
        if r > 0:
            k0 = k0 + PHILOX_W0
            k1 = k1 + PHILOX_W1
        hi0, lo0 = mulhilo(PHILOX_M0, c0)
        hi1, lo1 = mulhilo(PHILOX_M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    out[at], out[at + 1], out[at + 2], out[at + 3] = c0, c1, c2, c3


@jit_inline
def uniforms_kernel(k0, k1, record, view, raw, out):
    """out[i] = the i-th `random()` of Generator(Philox(key=[k0, k1], counter=[0, 0, r, v]));
    `raw` holds whole blocks of 4 (at least 4 * ceil(len(out) / 4) words)."""
    n = out.shape[0]
    blocks = (n + 3) // 4
    if raw.shape[0] < 4 * blocks:  # numba checks no bounds: a short raw would be overwritten
        raise ValueError("uniforms_kernel: raw must hold 4 * ceil(len(out) / 4) words")
    for b in range(blocks):
        # NumPy bumps the counter before each block, so the first block is counter 1
        philox_block(U64(b + 1), U64(0), U64(record), U64(view), k0, k1, raw, 4 * b)
    for i in range(n):
        out[i] = np.float64(raw[i] >> U64(11)) * TO_UNIT


def numpy_uniforms(k0, k1, record, view, raw, out):
    """`uniforms_kernel`'s stream from NumPy's own Philox, for plain Python: 13x faster there
    than the kernel run uncompiled (the sampler's cold-start path, `jessl.data.sampler`).
    `raw` is unused: the arguments are the kernel's, so it can stand in for it."""
    generator = np.random.Generator(np.random.Philox(
        key=np.array([k0, k1], np.uint64), counter=np.array([0, 0, record, view], np.uint64)))
    out[:] = generator.random(out.shape[0])


@jit_inline
def randint(u, n):
    """A uniform integer in [0, n) from one uniform (bias below n / 2**53)."""
    return min(int(u * n), n - 1)


@jit_inline
def coin(u, k, p, out, at):
    """Bernoulli(p) on u[k] into out[at], as torchvision's `torch.rand(1) < p`; p == 0 draws
    nothing (0, and u[k] stays for the next op). Returns the next k."""
    out[at] = 0
    if p > 0:
        out[at] = u[k] < p
        k += 1
    return k
