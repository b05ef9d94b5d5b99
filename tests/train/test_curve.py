"""`jessl curve`: the per-epoch table and plot read back from a run's metrics.jsonl."""

import json

import pytest

from jessl.cli import main
from jessl.train.curve import epoch_rows, final_record, markdown, reach, read_metrics


def _write(run, records, tail=""):
    run.mkdir(parents=True, exist_ok=True)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + tail)


RECORDS = [
    {"time": 100.0, "kind": "step", "epoch": 1, "step": 10, "loss": 5.0},
    {"time": 160.0, "kind": "epoch", "epoch": 1, "step": 20, "loss": 4.5, "seconds": 60.0,
     "view_size": 32, "probe/backbone_val_top1": 20.0, "knn_top1": 35.0},
    # 30 s of training, then 30 s of probe evaluation before this record
    {"time": 220.0, "kind": "epoch", "epoch": 2, "step": 40, "loss": 4.0, "seconds": 30.0,
     "view_size": 16, "probe/backbone_val_top1": 30.0},
    {"time": 230.0, "kind": "final", "epoch": 2, "step": 40, "loss": 4.0, "knn_top1": 41.5,
     "knn_top1_random_init": 30.25},
]


def test_rows_add_up_training_and_wall_minutes(tmp_path):
    _write(tmp_path / "run", RECORDS)
    records = read_metrics(tmp_path / "run")
    rows = epoch_rows(records)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert [r["view_size"] for r in rows] == [32, 16]
    assert rows[1]["train_min"] == pytest.approx(90 / 60)  # 60 + 30 s of training
    assert rows[1]["wall_min"] == pytest.approx(120 / 60)  # from the first epoch's start (100 s)
    assert rows[1]["val_top1"] == 30.0
    text = markdown(rows, final_record(records))
    assert "| 2 | 16 | 4.000 | 30.0% | 41.50% | n/a | 1.5 | 2.0 |" in text  # older run: no FLOPs
    assert "41.50%" in text and "random init 30.25%" in text


def test_half_written_last_line_is_dropped_but_a_bad_middle_line_is_an_error(tmp_path):
    _write(tmp_path / "cut", RECORDS[:3], tail='{"time": 240.0, "kind": "ep')
    assert len(read_metrics(tmp_path / "cut")) == 3
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metrics.jsonl").write_text(
        json.dumps(RECORDS[0]) + "\nnot json\n" + json.dumps(RECORDS[1]) + "\n")
    with pytest.raises(ValueError, match=r"metrics.jsonl, line 2: not a JSON record"):
        read_metrics(tmp_path / "bad")


def test_command_prints_the_table_and_writes_the_plot(tmp_path, capsys):
    _write(tmp_path / "run", RECORDS)
    png = tmp_path / "curve.png"
    assert main(["curve", str(tmp_path / "run"), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "| 1 | 32 | 4.500 | 20.0% | 35.00% | n/a | 1.0 | 1.0 |" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".curve.png.*"))  # no temporary file left behind


def test_command_names_a_folder_without_metrics(tmp_path, capsys):
    assert main(["curve", str(tmp_path / "nothing")]) == 1
    assert "nothing/metrics.jsonl: no metrics.jsonl" in capsys.readouterr().err


def test_reach_reports_flops_and_minutes_of_the_first_epoch_past_the_target(tmp_path, capsys):
    records = [dict(r) for r in RECORDS]
    records[1].update(flops=2e15, wall_s=50.0)  # wall_s (no eval) wins over summed seconds
    records[2].update(flops=3e15, wall_s=75.0)
    _write(tmp_path / "run", records)
    rows = epoch_rows(read_metrics(tmp_path / "run"))
    assert reach(rows, 30.0) == {"epoch": 1, "flops": 2e15, "train_min": 50 / 60,
                                 "accuracy": 35.0}
    assert reach(rows, 40.0)["epoch"] == 2  # the final kNN counts for the last epoch
    assert reach(rows, 42.0) is None
    assert reach(rows, 25.0, key="val_top1")["epoch"] == 2
    assert main(["curve", str(tmp_path / "run"), "--reach", "40", "--reach", "50",
                 "--plot", str(tmp_path / "c.png")]) == 0
    out = capsys.readouterr().out
    assert "FLOPs and minutes to reach 40% kNN: 3 PFLOPs, 1.2 min (epoch 2, kNN 41.50%)" in out
    assert "to reach 50% kNN: not reached (best kNN 41.50%)" in out
