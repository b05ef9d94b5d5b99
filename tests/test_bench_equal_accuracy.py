"""bench/equal_accuracy.py: the baseline's compute at an efficient run's accuracy."""

import json
import math
from pathlib import Path

import pytest
import yaml

from .bench_module import load


def _bench():
    return load("equal_accuracy")


def _run(folder: Path, seed: int, epochs: int, knn: float, pflops: float, minutes: float,
         cpu: str | None = None):
    folder.mkdir(parents=True)
    if cpu is not None:
        (folder / "env.json").write_text(json.dumps({"cpu": cpu}))
    (folder / "results.json").write_text(json.dumps(
        {"knn_top1": knn, "flops": pflops * 1e15, "wall_s": minutes * 60}))
    (folder / "config.yaml").write_text(yaml.safe_dump(
        {"train": {"seed": seed, "epochs": epochs}, "optim": {"lr": 2.4}}))
    return folder


def test_interpolates_in_log_cost_and_never_extrapolates():
    bench = _bench()
    # 50% at cost 1, 52% at cost 4: 51% lies halfway in log cost, at cost 2
    assert bench.at_accuracy([(4.0, 52.0), (1.0, 50.0)], 51.0) == pytest.approx(2.0)
    assert bench.at_accuracy([(1.0, 50.0), (4.0, 52.0)], 52.0) == pytest.approx(4.0)
    # the paper's Table 7: linear in cost, halfway between 1 and 4
    assert bench.at_accuracy([(4.0, 52.0), (1.0, 50.0)], 51.0, log=False) == pytest.approx(2.5)
    assert bench.at_accuracy([(1.0, 50.0), (4.0, 52.0)], 49.0) is None  # below every run
    assert bench.at_accuracy([(1.0, 50.0), (4.0, 52.0)], 53.0) is None  # above every run
    # the first bracket from the cheap end, when seed noise makes accuracy dip with cost
    assert bench.at_accuracy([(1.0, 50.0), (2.0, 52.0), (4.0, 51.0), (8.0, 54.0)], 51.0) \
        == pytest.approx(math.sqrt(2.0))


def test_speedups_pair_runs_by_seed(tmp_path, capsys):
    bench = _bench()
    b = [_run(tmp_path / "b0_15", 0, 15, 50.0, 0.1, 8.0),
         _run(tmp_path / "b0_60", 0, 60, 54.0, 0.4, 32.0),
         _run(tmp_path / "b1_15", 1, 15, 49.0, 0.1, 8.0),
         _run(tmp_path / "b1_60", 1, 60, 53.0, 0.4, 32.0)]
    e = [_run(tmp_path / "e0", 0, 25, 52.0, 0.1, 5.0),  # seed 0's 52%: baseline cost 0.2, 16 min
         _run(tmp_path / "e1", 1, 25, 52.0, 0.1, 5.0),  # seed 1's 52% lies 3/4 of the way
         _run(tmp_path / "e2", 2, 25, 52.0, 0.1, 5.0)]  # no baseline of seed 2
    rows = bench.speedups([bench.read_run(f) for f in b], [bench.read_run(f) for f in e])
    assert [r["seed"] for r in rows] == [0, 1, 2]
    assert rows[0]["speedup_flops"] == pytest.approx(2.0)
    assert rows[0]["speedup_flops_linear"] == pytest.approx(2.5)  # (0.1 + 0.3 / 2) / 0.1
    assert rows[0]["speedup_time"] == pytest.approx(16.0 / 5.0)
    assert rows[1]["speedup_flops"] == pytest.approx(0.1 * 4 ** 0.75 / 0.1)
    assert rows[2]["speedup_flops"] is None and rows[2]["base_flops"] is None
    png = tmp_path / "plot.png"
    assert bench.main(["--baseline", *map(str, b), "--efficient", *map(str, e),
                       "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "outside every bracket" in out and "2.00x" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # drawn, and no temporary left
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".png", ".tmp")) == \
        ["plot.png"]


def test_an_unfinished_run_is_named(tmp_path):
    bench = _bench()
    (tmp_path / "half").mkdir()
    with pytest.raises(SystemExit, match="half: not a finished run"):
        bench.read_run(tmp_path / "half")


def test_a_run_still_training_is_skipped_by_name(tmp_path, capsys):
    bench = _bench()
    b = [_run(tmp_path / "b0_15", 0, 15, 50.0, 0.1, 8.0),
         _run(tmp_path / "b0_60", 0, 60, 54.0, 0.4, 32.0)]
    e = _run(tmp_path / "e0", 0, 25, 52.0, 0.1, 5.0)
    busy = _run(tmp_path / "b0_120", 0, 120, 0.0, 0.0, 0.0)
    (busy / "results.json").unlink()  # started, resumes next session
    assert bench.main(["--baseline", *map(str, b), str(busy), "--efficient", str(e)]) == 0
    out = capsys.readouterr().out
    assert f"skipped {busy}: still training" in out
    assert "120 @" not in out and "| 0 | " in out and "2.00x" in out


def test_minutes_compare_only_on_the_same_cpu(tmp_path, capsys):
    """FLOPs are read from every baseline of the seed, minutes only from those that ran on the
    run's CPU model: a run resumed on another machine gets no time speed-up, and says why."""
    bench = _bench()
    b = [_run(tmp_path / "b0_15", 0, 15, 50.0, 0.1, 8.0, "AMD EPYC"),
         _run(tmp_path / "b0_60", 0, 60, 54.0, 0.4, 32.0, "AMD EPYC"),
         _run(tmp_path / "b1_15", 1, 15, 50.0, 0.1, 8.0, "AMD EPYC"),
         _run(tmp_path / "b1_60", 1, 60, 54.0, 0.4, 32.0)]  # no env.json: compares with any
    e = [_run(tmp_path / "e0", 0, 25, 52.0, 0.1, 4.0, "Intel Xeon"),
         _run(tmp_path / "e1", 1, 25, 52.0, 0.1, 5.0, "AMD EPYC")]
    rows = bench.speedups([bench.read_run(f) for f in b], [bench.read_run(f) for f in e])
    assert rows[0]["speedup_flops"] == pytest.approx(2.0)  # FLOPs: any machine
    assert rows[0]["speedup_time"] is None and rows[0]["other_cpu"]
    assert rows[1]["speedup_time"] == pytest.approx(16.0 / 5.0) and not rows[1]["other_cpu"]
    assert bench.main(["--baseline", *map(str, b), "--efficient", *map(str, e),
                       "--plot", str(tmp_path / "plot.png")]) == 0
    out = capsys.readouterr().out
    assert "- (other CPU: Intel Xeon)" in out
    assert "time 3.20x (mean of 1; 1 ran on another CPU than its baselines)" in out
