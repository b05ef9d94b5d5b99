"""The cold start: a second process compiles the loader's later passes while this one compiles
the sampler and the crop.

On a fresh install the first batch waits for numba to compile every kernel its views call,
about 10 s of CPU for `simclr_cifar`, in one thread (numba compiles under a global lock). A
Loader built while the kernels of its passes (the registered ops' render passes the views can
draw, and the write into the batch) are not in numba's on-disk cache starts
`python -m jessl.data.warm`, which compiles exactly those, on one dummy view per view recipe,
into the same cache. The loader's first chunk meanwhile compiles the sampler and the crop, then
`wait()`s for the second process before its first pass, and loads what it compiled from disk.
Two cores then halve the wait. Nothing computed changes: the same kernels from the same source,
compiled by another process. If the second process fails or is slow, the loader compiles what
is missing itself, as without it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import asdict

import numpy as np

from jessl.data.ops import crop
from jessl.data.ops._jit import jit_enabled
from jessl.data.ops.normalize import normalize_lut
from jessl.data.ops.registry import LAYOUT, PIPELINE, Params
from jessl.data.views import View

# jessl.data.render calls wait() before its passes, so it is imported where used, not here

TIMEOUT = 300  # s: the longest the loader waits for the second process before going on alone

_LOCK = threading.Lock()
_PENDING: list[subprocess.Popen] = []


def cached(kernel) -> bool:
    """Whether numba's on-disk cache holds a current entry for `kernel`: an index whose source
    stamp matches the sources now (numba's own file and check, so it stays in step with the
    folder numba chose: __pycache__, NUMBA_CACHE_DIR ...; a stale index after an edit or an
    upgrade counts as missing)."""
    cache_file = getattr(getattr(kernel, "_cache", None), "_cache_file", None)
    if cache_file is None:
        return True  # not a cached dispatcher: nothing to warm
    try:
        return bool(cache_file._load_index())
    except Exception:  # an unreadable index: numba will recompile, so warm it
        return False


def pass_kernels(views: list[View], output: str) -> list:
    """The kernels the views' passes and write call: those of ops the views can draw."""
    from jessl.data.render import PASSES, write_kernels
    return [k for view in views for spec in PASSES for k in spec.kernels(view)] + \
        [k for view in views for k in write_kernels(view, output)]


def drawn_params(view: View) -> Params:
    """One record's parameters with every op the view can draw drawn: each op's own sampler,
    run as plain Python on uniforms of 0 (so each coin with p > 0 comes up). The crop's columns
    stay 0: the warm-up's views are not cut from a source."""
    ints = np.zeros((1, LAYOUT.n_int), np.int64)
    floats = np.zeros((1, LAYOUT.n_float), np.float64)
    u = np.zeros(LAYOUT.uniforms)
    h, w = view.hw
    for spec in PIPELINE:
        if spec.sample is None or spec is crop.SPEC:
            continue
        sample = getattr(spec.sample, "py_func", spec.sample)  # the plain function: no compile
        sample(u, 0, h, w, np.asarray(spec.recipe(view), np.float64),
               ints[0, LAYOUT.ints[spec.name]], floats[0, LAYOUT.floats[spec.name]])
    return Params(ints, floats)


def warm(views: list[View], output: str) -> None:
    """Run every pass and the write once on a dummy (1, H, W, 3) view of each view recipe."""
    from jessl.data.render import PASSES, write_pass
    for view in views:
        h, w = view.hw
        stage = np.zeros((1, h, w, 3), np.uint8)
        params = drawn_params(view)
        for spec in PASSES:
            spec.render(stage, params, view)
        if output == "float":
            write_pass(stage, params, view, normalize_lut(view.mean, view.std),
                       np.empty((1, 3, h, w), np.float32))
        else:
            write_pass(stage, params, view, None, np.empty((1, 3, h, w), np.uint8))


def start(views: list[View], output: str) -> bool:
    """Start the second process if some pass kernel is not cached; True if started. Not while
    one is still running: its index files appear only as it finishes, and a second one would
    compile the same kernels again (what it leaves out, the loader compiles)."""
    if not jit_enabled() or _PENDING or all(cached(k) for k in pass_kernels(views, output)):
        return False
    import numba
    env = dict(os.environ)
    if numba.config.CACHE_DIR:  # the folder jessl chose for a read-only install: the same one
        env["NUMBA_CACHE_DIR"] = str(numba.config.CACHE_DIR)
    spec = json.dumps({"output": output, "views": [asdict(v) for v in views]})
    try:
        proc = subprocess.Popen([sys.executable, "-m", "jessl.data.warm", spec], env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    except OSError:  # no second process: the loader compiles everything itself
        return False
    with _LOCK:
        _PENDING.append(proc)
    return True


def wait() -> None:
    """Block until the second processes started by `start` have finished (at most TIMEOUT s;
    one still running then is stopped). Cheap when none is pending: every chunk calls it."""
    if not _PENDING:
        return
    with _LOCK:
        while _PENDING:
            proc = _PENDING.pop()
            try:
                proc.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(argv[0])
    views = [View(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
             for d in spec["views"]]
    warm(views, spec["output"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
