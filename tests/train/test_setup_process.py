"""The one place a run sets its threads keeps torch's count, even in a process that already ran
torch ops (tests, notebooks): numba's threading layer, launched by its first set_num_threads,
resets OpenMP's count, and when that came after torch's, the first run in such a process trained
with another thread count and so other float sums (found by SwAV's exact-resume test)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_setup_process_leaves_torch_the_configured_threads():
    code = ("import torch; x = torch.randn(256, 256); (x @ x).sum()\n"  # OpenMP pool up first
            "from jessl.config import RunConfig; from jessl.train.trainer import setup_process\n"
            "cfg = RunConfig(); cfg.train.threads = 1; setup_process(cfg, say=lambda *a: None)\n"
            "print(torch.get_num_threads())")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True, timeout=120)
    assert out.stdout.strip() == "1", out.stderr
