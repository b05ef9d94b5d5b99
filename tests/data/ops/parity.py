"""Every numba kernel on small inputs, so a JIT run and a plain-Python run can be compared.

`python -m tests.data.ops.parity OUT.npz` writes the results; test_jit_parity.py runs it with
JESSL_JIT=0 in a subprocess (the switch is read at import) and compares with its own JIT run.
"""

import sys

import numpy as np


def run_all() -> dict[str, np.ndarray]:
    from jessl.data.ops import _jit
    from jessl.data.ops.color import CONTRAST, HUE, SKIP, JitterParams, color
    from jessl.data.ops.crop import axis_weights, resized_crop
    from jessl.data.ops.flip import horizontal_flip
    from jessl.data.ops.noise import gaussian_noise
    from jessl.data.ops.normalize import to_float_chw, to_uint8_chw
    from jessl.data.ops.solarize import solarize

    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (12, 16, 1), dtype=np.uint8)
    out: dict[str, np.ndarray] = {"jit": np.array(_jit._ENABLED)}
    for name, img in (("rgb", rgb), ("grey", grey)):
        for size, box, flip in (((5, 7), (1, 2, 10, 13), True), ((20, 18), (0, 0, 12, 16), False),
                                ((9, 21), (2, 1, 9, 7), True)):
            dst = np.empty(size + (3,), np.uint8)
            resized_crop(img, box, dst, flip=flip, backend="numba")
            out[f"crop_{name}_{size}_{flip}"] = dst
    for n_in, n_out in ((16, 5), (7, 21), (9, 9)):
        for i, a in enumerate(axis_weights(n_in, n_out)):
            out[f"weights_{n_in}_{n_out}_{i}"] = a
    f = np.array([1.3, 0.6, 1.7, 0.21], np.float32)
    for order in ((0, 1, 2, 3), (3, 2, 1, 0), (2, CONTRAST, SKIP, HUE), (SKIP, SKIP, SKIP, SKIP)):
        for grey_out in (False, True):
            dst = np.empty_like(rgb)
            color(rgb, JitterParams(np.array(order, np.int64), f), grey_out, dst)
            out[f"color_{order}_{grey_out}"] = dst
    out["flip"] = horizontal_flip(rgb, True, np.empty_like(rgb))
    out["solarize"] = solarize(rgb, 100, np.empty_like(rgb))
    x = rng.random((3, 5, 7), dtype=np.float32)
    out["noise"] = gaussian_noise(x, 12345678901, np.empty_like(x), 0.05, 0.2)
    out["float_chw"] = to_float_chw(rgb, np.empty((3, 12, 16), np.float32))
    out["float_chw_grey"] = to_float_chw(grey, np.empty((3, 12, 16), np.float32))
    out["float_chw_noise"] = to_float_chw(rgb, np.empty((3, 12, 16), np.float32), noise_seed=99)
    out["uint8_chw"] = to_uint8_chw(rgb, np.empty((3, 12, 16), np.uint8))
    return out


if __name__ == "__main__":
    np.savez(sys.argv[1], **run_all())
