"""The cold start's second process: what it compiles, and that a cold first batch is the same."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np

from jessl.data import convert, warm
from jessl.data.loader import Loader
from jessl.data.ops import color, solarize
from jessl.data.ops.registry import LAYOUT
from jessl.data.render import float_chunk_kernel, float_noise_chunk_kernel
from jessl.data.views import View
from tests.data.helpers import natural_like

VIEWS = [View(size=16, jitter_p=0.8, grey_p=0.2), View(size=16, solarize_p=0.2)]


def test_drawn_params_draw_what_the_view_can_draw():
    p = warm.drawn_params(View(size=16, jitter_p=0.8, solarize_p=0.2))
    assert (p.ints(color.JITTER_SPEC) >= 0).all()  # every jitter op in the order
    assert p.ints(solarize.SPEC)[0, solarize.INTS.on] == 1
    assert p.ints(color.GREY_SPEC)[0, color.GREY_INTS.on] == 0  # grey_p 0: not drawn
    assert p.ints(color.GREY_SPEC).shape == (1, 1) and LAYOUT.n_int == 14


def test_the_kernels_to_warm_follow_the_views():
    plain = [View(size=16)]
    assert warm.pass_kernels(plain, "float") == [float_chunk_kernel]
    kernels = warm.pass_kernels(VIEWS, "float")
    assert color.color_chunk_kernel in kernels and solarize.solarize_chunk_kernel in kernels
    noisy = warm.pass_kernels([View(size=16, noise_p=1.0)], "float")
    assert noisy == [float_noise_chunk_kernel]  # every view noised: the plain write never runs


CHILD = r"""
import hashlib, json, sys, time
from jessl.data import warm
from jessl.data.loader import Loader
from jessl.data.views import View
views = [View(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
         for d in json.loads(sys.argv[2])]
loader = Loader(sys.argv[1], 8, views, seed=3, num_threads=2)
started = bool(warm._PENDING)
digests = [hashlib.sha256(b"".join(v.numpy().tobytes() for v in next(iter(loader)).views))
           .hexdigest()]  # epoch 0's first batch
sampler = warm.sampler_kernel()
compiled_here = len(sampler.signatures)  # 0: the first batch drew with the plain twin
while warm.compiling_sampler():  # the second process goes on to compile the sampler
    time.sleep(0.05)
digests.append(hashlib.sha256(b"".join(v.numpy().tobytes() for v in next(iter(loader)).views))
               .hexdigest())  # epoch 1's, all drawn after the sampler is on disk
print(json.dumps({"started": started, "digests": digests, "compiled_here": compiled_here,
                  "sampler_from_disk": sum(sampler.stats.cache_hits.values()),
                  "sampler_compiled": sum(sampler.stats.cache_misses.values()),
                  "cached": all(warm.cached(k) for k in warm.pass_kernels(views, "float"))}))
"""


def test_a_cold_first_batch_is_the_same_batch(tmp_path):
    from dataclasses import asdict
    path = tmp_path / "raw.jessl"
    convert([(natural_like(20, 24, seed=k), 0) for k in range(16)], path, format="raw",
            workers=1, progress=False)
    loader = Loader(path, 8, VIEWS, seed=3, num_threads=2)  # this process: warm cache
    want = [hashlib.sha256(b"".join(v.numpy().tobytes() for v in next(iter(loader)).views))
            .hexdigest() for _ in range(2)]  # epochs 0 and 1: their first batches
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"))  # a fresh install's cache
    out = subprocess.run([sys.executable, "-c", CHILD, str(path),
                          json.dumps([asdict(v) for v in VIEWS])], env=env, check=True,
                         capture_output=True, text=True, timeout=600)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    # the same two batches: the first drawn by the plain sampler, the second by the compiled
    # one, which the second process compiled and this one loaded from disk
    assert got == {"started": True, "digests": want, "compiled_here": 0, "sampler_from_disk": 1,
                   "sampler_compiled": 0, "cached": True}


def _fake(code: str):
    """A stand-in second process running `code`."""
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)


def test_a_failed_or_slow_second_process_leaves_the_work_to_the_loader(monkeypatch):
    # the passes line read while the process goes on to the sampler; a crash before it is no
    # line; a process that says nothing within TIMEOUT is stopped
    going_on = _fake(f"import time; print({warm.PASSES_DONE!r}, flush=True); time.sleep(1)")
    assert warm.passes_line(going_on) and going_on.poll() is None
    going_on.wait()
    assert not warm.passes_line(_fake("raise SystemExit(3)"))
    monkeypatch.setattr(warm, "TIMEOUT", 0.2)
    silent = _fake("import time; time.sleep(30)")
    assert not warm.passes_line(silent)
    # wait() stops it, and the loader then compiles the sampler itself: nothing is pending
    monkeypatch.setattr(warm, "_PENDING", [warm.Compiler(silent, sampler=True)])
    warm.wait()
    assert silent.poll() is not None and warm._PENDING == [] and not warm.compiling_sampler()
