import json
import os

import pytest

import jessl.files as files
from jessl.eval import write_report

ROWS = [
    {"model": "simclr-ep100", "dataset": "cifar10", "probe": "knn", "metric": "top1", "value": 81.25},
    {"model": "random-init", "dataset": "cifar10", "probe": "knn", "metric": "top1", "value": 30.5},
    {"model": "simclr-ep100", "dataset": "cifar10", "probe": "linear", "metric": "top1", "value": 85.0},
    {"model": "random-init", "dataset": "cifar10", "probe": "linear", "metric": "top1", "value": 35.0},
    {"model": "simclr-ep100", "dataset": "tiny-imagenet", "probe": "linear", "metric": "top1",
     "value": 40.0},
    {"model": "simclr-ep100", "dataset": "cifar10", "probe": "-", "metric": "rankme", "value": 300.0},
    {"model": "random-init", "dataset": "cifar10", "probe": "-", "metric": "rankme", "value": 20.0},
]


def test_writes_markdown_json_and_png_with_the_baseline_beside_each_model(tmp_path):
    paths = write_report(ROWS, tmp_path / "out")
    md = paths["md"].read_text()
    header = next(line for line in md.splitlines() if line.startswith("| dataset"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    assert cols == ["dataset", "probe", "metric", "random-init", "simclr-ep100", "Δ simclr-ep100"]
    assert "| cifar10 | knn | top1 | 30.50 | 81.25 | +50.75 |" in md
    assert "| tiny-imagenet | linear | top1 | – | 40.00 | – |" in md  # no baseline run there
    data = json.loads(paths["json"].read_text())
    assert data["baseline"] == "random-init" and data["rows"] == ROWS
    png = paths["png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == \
        ["report.json", "report.md", "report.png"]  # no temporary files left behind


def test_without_baseline_rows_the_report_says_so(tmp_path):
    rows = [r for r in ROWS if r["model"] != "random-init"]
    md = write_report(rows, tmp_path)["md"].read_text()
    assert "No `random-init` rows" in md and "Δ" not in md


def test_bad_rows_are_refused(tmp_path):
    with pytest.raises(ValueError, match="lacks"):
        write_report([{"model": "a", "dataset": "b", "probe": "c", "value": 1.0}], tmp_path)
    with pytest.raises(ValueError, match="two report rows"):
        write_report(ROWS + ROWS[:1], tmp_path)
    assert not any(tmp_path.iterdir())


def test_a_failed_write_leaves_the_old_report_and_no_temporary_file(tmp_path, monkeypatch):
    write_report(ROWS, tmp_path)
    old = (tmp_path / "report.md").read_text()

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", failing_replace)
    changed = [dict(r, value=1.0) for r in ROWS]
    with pytest.raises(OSError):
        write_report(changed, tmp_path)
    assert (tmp_path / "report.md").read_text() == old
    assert sorted(os.listdir(tmp_path)) == ["report.json", "report.md", "report.png"]
