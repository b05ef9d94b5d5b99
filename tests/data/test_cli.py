"""`jessl convert` / `jessl inspect` as a user runs them, and kills part-way through."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from tests.data.helpers import encode, natural_like

ROOT = Path(__file__).resolve().parents[2]


def jessl(*args, **kw):
    return subprocess.run([sys.executable, "-m", "jessl", *map(str, args)], capture_output=True,
                          text=True, timeout=120, cwd=kw.pop("cwd", ROOT), **kw)


def test_convert_and_inspect_cifar(tmp_path, cifar_test_npz):
    out = tmp_path / "c.jessl"
    run = jessl("convert", cifar_test_npz, out, "--quiet")
    assert run.returncode == 0, run.stderr
    assert "10,000 records" in run.stdout
    run = jessl("inspect", out)
    assert run.returncode == 0, run.stderr
    assert "10,000 records" in run.stdout and "labels: 10 classes" in run.stdout
    assert "per class: min 1,000, max 1,000" in run.stdout
    summary = json.loads(jessl("inspect", out, "--json", "--verify").stdout)
    assert summary["records"] == 10_000 and summary["verify"]["failed"] == []
    assert [row["count"] for row in summary["labels"]["histogram"]] == [1000] * 10
    assert summary["images"]["image"]["height"] == {"min": 32, "median": 32.0, "max": 32}


def test_cli_errors_are_one_clear_line(tmp_path):
    src = tmp_path / "src" / "a"
    src.mkdir(parents=True)
    (src / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    run = jessl("convert", tmp_path / "src", tmp_path / "o.jessl", "--workers", "1", "--quiet")
    assert run.returncode == 1
    assert run.stderr.startswith("jessl: error: ") and "a/bad.jpg" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "o.jessl").exists()
    (tmp_path / "x.jessl").write_bytes(b"hello")
    run = jessl("inspect", tmp_path / "x.jessl")
    assert run.returncode == 1 and "x.jessl" in run.stderr and "Traceback" not in run.stderr


def test_skip_via_cli_names_the_report(tmp_path):
    src = tmp_path / "src" / "a"
    src.mkdir(parents=True)
    (src / "ok.png").write_bytes(encode(natural_like(4, 4), "PNG"))
    (src / "bad.png").write_bytes(b"\x89PNG broken")
    run = jessl("convert", tmp_path / "src", tmp_path / "o.jessl", "--on-error", "skip",
                "--quiet")
    assert run.returncode == 0, run.stderr
    assert "skipped 1 image" in run.stdout and "o.jessl.report.json" in run.stdout


# A conversion slowed down inside the real CLI, so it can be killed part-way.
SLOW_CONVERT = textwrap.dedent("""
    import sys, time
    import jessl.data.writer as writer
    real = writer.encode_image
    def slow(*a, **k):
        time.sleep(0.02)
        return real(*a, **k)
    writer.encode_image = slow
    from jessl.cli import main
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.parametrize("sig, workers", [(signal.SIGTERM, 1), (signal.SIGKILL, 1),
                                          (signal.SIGTERM, 2), (signal.SIGINT, 2)])
def test_a_conversion_killed_part_way_leaves_no_output(tmp_path, sig, workers):
    x = np.stack([natural_like(16, 16, seed=k) for k in range(400)])
    np.savez(tmp_path / "x.npz", x=x, y=np.arange(400) % 3)
    out = tmp_path / "out.jessl"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_CONVERT, "convert", tmp_path / "x.npz",
                             out, "--workers", str(workers), "--quiet"], cwd=ROOT,
                            start_new_session=True, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".out.jessl.*.tmp")):  # wait until it is writing
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    time.sleep(0.5)
    os.kill(proc.pid, sig)
    proc.wait(timeout=30)
    try:  # pool workers orphaned by SIGKILL must not outlive the test
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    assert proc.returncode != 0
    assert not out.exists()
    if sig != signal.SIGKILL:  # a catchable signal also removes the temporary file
        assert list(tmp_path.glob(".out.jessl*")) == []
