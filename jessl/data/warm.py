"""The cold start: a second process compiles the loader's passes, then its sampler, while this
one compiles the crop and draws with the sampler's plain-Python twin.

On a fresh install the first batch waits for numba to compile every kernel its views call,
about 8 s of CPU for `simclr_cifar`, in one thread (numba compiles under a global lock). A
Loader built while the kernels of its passes (the registered ops' render passes the views can
draw, and the write into the batch) or its sampler are not in numba's on-disk cache starts
`python -m jessl.data.warm`, which compiles exactly those, on one dummy view per view recipe,
into the same cache: the passes first (it says so on its stdout), then the sampler. The
loader's first chunk meanwhile draws its parameters with `sampler.PLAIN_CHUNK` (the sampler
as plain Python: the same numbers, ~30 us a view) and compiles the crop, then `wait()`s for
the passes before its first pass and loads them from disk; it draws with the compiled sampler
once the second process has exited. Two cores then overlap the compiling, and the sampler's
~2.5 s leave the first batch's path. Nothing computed changes: the same kernels from the same
source, compiled by another process. If the second process fails or hangs, the loader
compiles what is missing itself, as without it.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from jessl.data.ops import crop
from jessl.data.ops._jit import jit_enabled
from jessl.data.ops.normalize import normalize_lut
from jessl.data.ops.registry import LAYOUT, PIPELINE, Params
from jessl.data.views import View

# jessl.data.render calls wait() before its passes, so it is imported where used, not here

TIMEOUT = 300  # s: the longest the loader waits for the second process before going on alone

_LOCK = threading.Lock()
_PENDING: list[Compiler] = []  # the second processes still running


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


def sampler_kernel():
    """The generated sampler kernel (data/sampler.py), imported when asked for."""
    from jessl.data.sampler import KERNELS
    return KERNELS.sample_chunk_kernel


def compile_sampler(views: list[View]) -> None:
    """Compile the sampler for the loader's argument types on one record: the call the loader
    makes, so the cached signature is the one it loads."""
    from jessl.data.sampler import sample_chunk, view_configs
    one = np.zeros(1, np.int64)
    sample_chunk(0, 0, one, one + 8, one + 8, view_configs(views))


@dataclass
class Compiler:
    """A second process compiling kernels for this one: the passes first (it prints PASSES_DONE
    on its stdout then), then the sampler when `sampler` (it exits then)."""
    proc: subprocess.Popen
    sampler: bool
    passes_done: bool = False
    started: float = field(default_factory=time.monotonic)


PASSES_DONE = "passes compiled"


def start(views: list[View], output: str) -> bool:
    """Start the second process if some pass kernel or the sampler is not cached; True if
    started. Not while one is still running: its index files appear only as it finishes, and a
    second one would compile the same kernels again (what it leaves out, the loader compiles)."""
    if not jit_enabled() or _PENDING:
        return False
    sampler = not cached(sampler_kernel())
    if not sampler and all(cached(k) for k in pass_kernels(views, output)):
        return False
    import numba
    env = dict(os.environ)
    if numba.config.CACHE_DIR:  # the folder jessl chose for a read-only install: the same one
        env["NUMBA_CACHE_DIR"] = str(numba.config.CACHE_DIR)
    spec = json.dumps({"output": output, "sampler": sampler,
                       "views": [asdict(v) for v in views]})
    try:
        proc = subprocess.Popen([sys.executable, "-m", "jessl.data.warm", spec], env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
    except OSError:  # no second process: the loader compiles everything itself
        return False
    with _LOCK:
        _PENDING.append(Compiler(proc, sampler))
    return True


def wait() -> None:
    """Block until the second processes started by `start` have compiled the passes (at most
    TIMEOUT s; one still at it then is stopped). Cheap when none is pending: every chunk calls
    it."""
    if all(c.passes_done for c in _PENDING):
        return
    with _LOCK:
        for c in _PENDING:
            if c.passes_done:
                continue
            if not passes_line(c.proc):
                stop(c)
            c.passes_done = True
        reap()


def passes_line(proc: subprocess.Popen) -> bool:
    """Whether the second process says, within TIMEOUT s, that it compiled the passes; False
    if it ended first (its failure: the loader compiles them) or took too long. Where a pipe
    cannot be waited on (Windows' select takes sockets only), waits for the process to end."""
    try:
        ready, _, _ = select.select([proc.stdout], [], [], TIMEOUT)
    except (OSError, ValueError):
        try:
            return proc.wait(timeout=TIMEOUT) == 0
        except subprocess.TimeoutExpired:
            return False
    return bool(ready) and proc.stdout.readline().strip() == PASSES_DONE


def compiling_sampler() -> bool:
    """Whether a second process is still compiling the sampler: the loader then draws with its
    plain-Python twin (data/sampler.py), the same numbers, until the compiled one is on disk."""
    if not any(c.sampler for c in _PENDING):
        return False
    with _LOCK:
        for c in _PENDING:
            if c.sampler and time.monotonic() - c.started > TIMEOUT:
                stop(c)  # hung: the loader compiles the sampler itself
        reap()
        return any(c.sampler for c in _PENDING)


def reap() -> None:
    """Forget the processes that have finished (under _LOCK)."""
    for c in [c for c in _PENDING if c.proc.poll() is not None]:
        c.proc.stdout.close()
        _PENDING.remove(c)


def stop(c: Compiler) -> None:
    """End a second process that failed or hangs: what it left out, the loader compiles."""
    c.proc.kill()
    c.proc.wait()
    c.sampler = False


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(argv[0])
    views = [View(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
             for d in spec["views"]]
    warm(views, spec["output"])
    try:
        print(PASSES_DONE, flush=True)
    except OSError:  # the loader has exited: the sampler is still worth caching
        pass
    if spec.get("sampler"):
        # lowest priority: nothing waits for it (the loader draws with the plain sampler), and
        # at normal priority it would take a core from the first training steps
        if hasattr(os, "nice"):  # POSIX
            os.nice(19)
        compile_sampler(views)
    return 0


if __name__ == "__main__":
    sys.exit(main())
