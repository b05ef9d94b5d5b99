"""Every kernel gives bit-identical results compiled and as plain Python (JESSL_JIT=0)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.data.ops.parity import run_all

ROOT = Path(__file__).resolve().parents[3]


def test_kernels_equal_with_and_without_jit(tmp_path):
    path = tmp_path / "nojit.npz"
    env = dict(os.environ, JESSL_JIT="0")
    subprocess.run([sys.executable, "-m", "tests.data.ops.parity", str(path)], cwd=ROOT, env=env,
                   check=True, timeout=120)
    plain = np.load(path)
    compiled = run_all()
    assert not plain["jit"] and compiled["jit"]  # the switch really switched
    assert set(plain.files) == set(compiled)
    for key in set(compiled) - {"jit"}:
        assert np.array_equal(plain[key], compiled[key]), key
