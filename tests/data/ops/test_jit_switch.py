"""The JIT switch is an explicit setting (jessl.runtime.set_jit), read when the kernels are
built, not an environment variable read by whichever import comes first; JESSL_JIT stays the
default for a process that never calls it. Each case runs in a fresh interpreter, since the
kernels are built once per process."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

CHECK = """
import sys
from jessl.runtime import set_jit
import jessl.config, jessl.train.trainer  # neither builds the kernels: the switch still counts
assert "jessl.data.ops" not in sys.modules
assert set_jit({choice}) is {choice}
from jessl.data.ops import _jit, crop
assert _jit._ENABLED is {choice}
assert hasattr(crop.crop_resize_kernel, "py_func") is {choice}  # a numba dispatcher, or not
assert set_jit(not {choice}) is {choice}, "built kernels keep their switch"
"""


@pytest.mark.parametrize("choice, env", [(False, "1"), (True, "0")])
def test_set_jit_decides_over_the_environment(choice, env):
    run = subprocess.run([sys.executable, "-c", CHECK.format(choice=choice)], cwd=ROOT,
                         env={**os.environ, "JESSL_JIT": env}, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]


def test_jessl_jit_0_is_the_default_without_a_call():
    code = "from jessl.data.ops import _jit; from jessl.runtime import jit_in_force; " \
           "assert not _jit._ENABLED and not jit_in_force()"
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT,
                         env={**os.environ, "JESSL_JIT": "0"}, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
