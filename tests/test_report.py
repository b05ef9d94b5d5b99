"""`jessl report` on fabricated run folders: the table's values, costs and seed statistics,
the offline linear probe's rows, partial runs, and the line plot and heatmap files."""

import json
import statistics

import pytest
import yaml

from jessl.studies import report
from jessl.studies.grid import expand_grid
from jessl.studies.sweep import FORMAT, MANIFEST

PNG = b"\x89PNG\r\n\x1a\n"
VAL = "probe/backbone_val_top1"


def fabricate_run(run_dir, config: dict, knn=None, online=(40.0, 50.0), baseline=20.0,
                  epochs=2, total=2, flops=None, seconds=30.0, rankme=12.5):
    """A run folder as the trainer leaves it: config.yaml, metrics.jsonl (epoch records, and a
    final record + results.json once `epochs == total`), no checkpoints needed."""
    run_dir.mkdir(parents=True)
    sections = {}
    for key, value in config.items():
        section, field = key.split(".")
        sections.setdefault(section, {})[field] = value
    sections.setdefault("train", {}).update(out=str(run_dir), epochs=total, threads=1)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(sections))
    t0, records = 1000.0, []
    for e in range(1, epochs + 1):
        rec = {"time": t0 + e * (seconds + 6), "kind": "epoch", "epoch": e, "step": 4 * e,
               "loss": 5.0 - e, "seconds": seconds, VAL: online[e - 1]}
        if flops is not None:
            rec.update(flops=flops * e / total, wall_s=seconds * e)
        records.append(rec)
    if epochs == total:
        final = {k: v for k, v in records[-1].items() if k not in ("time", "kind")}
        final.update(knn_top1=knn, knn_top1_random_init=baseline, rankme=rankme,
                     rankme_features=knn and knn / 2)
        records.append({"time": records[-1]["time"] + 3, "kind": "final", **final})
        (run_dir / "results.json").write_text(json.dumps(final))
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.fixture
def sweep(tmp_path):
    """A 2 lr x 2 batch x 2 seed sweep; kNN = 10 lr + batch/10 + seed, random init 20."""
    out = tmp_path / "sweep"
    points = expand_grid([("optim.lr", [0.5, 1.0]), ("data.batch_size", [64, 256])], seeds=[0, 1])
    for p in points:
        o = p.overrides
        fabricate_run(out / p.name, o, knn=10 * o["optim.lr"] + o["data.batch_size"] / 10
                      + o["train.seed"], flops=2e12 if o["data.batch_size"] == 64 else None)
    manifest = {"format": FORMAT, "grid": [], "metric": "knn", "x": "optim.lr",
                "y": "data.batch_size",
                "points": [{"name": p.name, "status": "done", "attempts": [],
                            "overrides": {k: str(v) for k, v in p.overrides.items()}}
                           for p in points]}
    manifest["points"][0]["status"] = "running"  # a stale manifest: the folder says done
    (out / MANIFEST).write_text(json.dumps(manifest))
    return out


def test_table_has_each_runs_metric_baseline_and_cost(sweep):
    result = report.build([sweep])
    assert (result["metric"], result["x"], result["y"]) == ("knn", "optim.lr", "data.batch_size")
    assert result["keys"] == ["optim.lr", "data.batch_size", "train.seed"]
    rows = {r["run"]: r for r in result["runs"]}
    assert len(rows) == 8
    r = rows["lr=1.0_batch_size=256_seed=1"]
    assert r["value"] == pytest.approx(10 + 25.6 + 1) and r["random_init"] == 20.0
    assert (r["epochs"], r["train_min"], r["status"]) == (2, 1.0, "done")  # 2 x 30 s
    assert rows["lr=0.5_batch_size=64_seed=0"]["status"] == "done"
    assert r["wall_min"] == pytest.approx((75 - 6) / 60)  # first epoch's start to the final
    assert r["flops"] is None and rows["lr=1.0_batch_size=64_seed=1"]["flops"] == 2e12
    g = next(g for g in result["groups"] if g["config"] == {"optim.lr": 0.5,
                                                          "data.batch_size": 64})
    assert g["n"] == 2 and g["mean"] == pytest.approx(5 + 6.4 + 0.5)
    assert g["std"] == pytest.approx(statistics.stdev([0, 1]))
    text = report.markdown(result)
    assert "| run | optim.lr | data.batch_size | train.seed | status | knn | random init |" in text
    assert "| lr=1.0_batch_size=256_seed=1 | 1.0 | 256 | 1 | done | 36.60 | 20.00 | 2 | 1.0 |" \
        in text
    assert "flops" in text and "2e+12" in text  # shown when any run logs it, "–" elsewhere
    assert "| 0.5 | 64 | 11.90 | 0.71 | 2 |" in text  # mean +- std over the two seeds
    assert "Highest knn: optim.lr=1.0, data.batch_size=256 (36.10)." in text
    assert "Random init (knn): 20.00." in text


def test_online_rankme_and_a_partial_run(sweep):
    fabricate_run(sweep.parent / "runs" / "partial", {"optim.lr": 2.0}, epochs=1, total=3,
                  online=(33.0,))
    (sweep.parent / "runs" / "partial" / "checkpoints").mkdir()
    (sweep.parent / "runs" / "partial" / "checkpoints" / "epoch-0001.pt").write_bytes(b"")
    fabricate_run(sweep.parent / "runs" / "whole", {"optim.lr": 1.0}, knn=50.0)
    result = report.build([sweep.parent / "runs"], metric="online")
    assert result["keys"] == ["optim.lr", "train.epochs"]  # what the plain folders differ in
    partial, whole = result["runs"]
    assert (partial["status"], partial["value"], partial["epochs"]) == ("partial", 33.0, 1)
    assert (whole["status"], whole["value"]) == ("done", 50.0)
    assert "No random-init kNN" not in report.markdown(result)  # online: no baseline expected
    assert "| partial | 2.0 | 3 | partial | 33.00 | – | 1 |" in report.markdown(result)
    assert report.build([sweep.parent / "runs" / "whole"], metric="rankme")["runs"][0]["value"] \
        == 25.0  # the backbone features' RankMe, not the embeddings' (12.5)
    assert report.build([sweep.parent / "runs" / "whole"], metric="rankme_embeddings")["runs"][0][
        "value"] == 12.5


def test_linear_metric_reads_the_eval_suite_report(sweep):
    run = sweep / "lr=0.5_batch_size=64_seed=0"
    rows = [{"model": m, "dataset": d, "probe": p, "metric": "top1", "value": v}
            for m, d, p, v in [("random-init", "cifar10", "linear", 31.0),
                               ("ckpt", "cifar10", "linear", 61.5),
                               ("ckpt", "cifar10", "knn k=20", 55.0),
                               ("ckpt", "tinyimagenet", "linear", 9.0)]]
    (run / "eval").mkdir()
    (run / "eval" / "report.json").write_text(json.dumps({"rows": rows}))
    result = report.build([sweep], metric="linear")
    got = {r["run"]: (r["value"], r["random_init"]) for r in result["runs"]}
    assert got[run.name] == (61.5, 31.0)
    assert got["lr=1.0_batch_size=64_seed=0"] == (None, None)  # not evaluated: a gap, no error
    tiny = report.build([sweep], metric="linear", dataset="tinyimagenet")["runs"]
    assert [r["value"] for r in tiny if r["run"] == run.name] == [9.0]


def test_line_plot_marks_the_random_init_baseline(sweep, tmp_path):
    result = report.build([sweep], y=None)
    result["y"] = None  # one key: a line per batch size over lr
    fig = report.figure(result)
    ax = fig.axes[0]
    assert sorted(ax.get_legend_handles_labels()[1]) == [
        "batch_size=256", "batch_size=64", "random init (20.0)"]
    dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert [list(ln.get_ydata()) for ln in dashed] == [[20.0, 20.0]]
    path = report.plot(result, tmp_path / "line.png")
    assert path.read_bytes()[:8] == PNG


def test_heatmap_of_two_keys(sweep, tmp_path):
    result = report.build([sweep])  # x and y from the manifest
    fig = report.figure(result)
    image = fig.axes[0].get_images()[0].get_array()
    assert image.shape == (2, 2)  # rows: batch 64, 256; columns: lr 0.5, 1.0
    assert image[1, 0] == pytest.approx(5 + 25.6 + 0.5)
    assert fig.axes[0].get_title() == "random init: 20.0"
    assert report.plot(result, tmp_path / "heat.png").read_bytes()[:8] == PNG
    result["keys"].append("model.projector")
    with pytest.raises(ValueError, match="also differ in model.projector"):
        report.figure(result)


def test_runs_saved_before_an_option_existed_differ_only_in_what_they_set(tmp_path):
    """Run folders (not a sweep) where the older runs' config.yaml lacks a field added since:
    it counts at its default, so the heatmap's keys are the ones the runs really vary."""
    runs = []
    for lr in (0.5, 1.0):
        for batch in (64, 256):
            run = tmp_path / f"lr{lr}_b{batch}"
            config = {"optim.lr": lr, "data.batch_size": batch}
            if lr == 1.0:  # written by a newer jessl: the new field at its default
                config["data.view_set"] = ""
            fabricate_run(run, config, knn=lr + batch / 100)
            runs.append(run)
    result = report.build(runs, x="optim.lr", y="data.batch_size")
    assert result["keys"] == ["data.batch_size", "optim.lr"]
    assert report.figure(result).axes[0].get_images()[0].get_array().shape == (2, 2)
    fabricate_run(tmp_path / "other", {"optim.lr": 0.5, "data.batch_size": 64,
                                      "data.view_set": "all.grey_p=0.5"}, knn=1.0)
    assert "data.view_set" in report.build(runs + [tmp_path / "other"])["keys"]


def test_cli_writes_table_json_and_plot(sweep, tmp_path, capsys):
    from jessl.cli import main
    out_json, out_png = tmp_path / "r.json", tmp_path / "r.png"
    assert main(["report", str(sweep), "--metric", "knn", "--x", "data.batch_size",
                 "--json", str(out_json), "--plot", str(out_png)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("| run | optim.lr |") and f"plot: {out_png}" in text
    data = json.loads(out_json.read_text())
    assert data["x"] == "data.batch_size" and data["y"] is None and len(data["runs"]) == 8
    assert out_png.read_bytes()[:8] == PNG
    assert main(["report", str(tmp_path / "nothing")]) == 1
    assert "does not exist" in capsys.readouterr().err


def _suite_report(folder, linear, mlp_best, mlp_last, knn):
    """RUN/eval-epoch-NN/report.json as `jessl eval suite` writes it (two datasets, baseline)."""
    folder.mkdir(parents=True)
    rows = [{"model": "random-init", "dataset": "cifar10", "probe": "linear", "metric": "top1",
             "value": 30.0}]
    for dataset, shift in (("cifar10", 0.0), ("tinyimagenet", -40.0)):
        rows += [{"model": "ckpt", "dataset": dataset, "probe": p, "metric": m, "value": v + shift}
                 for p, m, v in (("knn k=200", "top1", knn), ("knn k=200", "top5", 90.0),
                                 ("linear", "top1", linear), ("linear", "top5", 91.0),
                                 ("mlp best", "top1", mlp_best), ("mlp last", "top1", mlp_last))]
    (folder / "report.json").write_text(json.dumps({"baseline": "random-init",
                                                     "models": ["random-init", "ckpt"],
                                                     "rows": rows}))


def test_over_epochs_joins_online_and_offline_probes(tmp_path, capsys):
    from jessl.studies import epochs
    from jessl.studies.command import report_main
    run = tmp_path / "run"
    fabricate_run(run, {"optim.lr": 1.0}, knn=50.0, online=(30.0, 40.0, 45.0), epochs=3,
                  total=3)
    for e, (lin, best, last) in enumerate([(31.0, 35.0, 35.0), (41.0, 47.0, 46.0),
                                           (44.0, 50.0, 48.0)], 1):
        _suite_report(run / f"eval-epoch-{e:02d}", lin, best, last, knn=lin - 1)
    rows = epochs.collect(run)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[1] == {"epoch": 2, "online": 40.0, "knn": 40.0, "linear": 41.0,
                       "mlp_best": 47.0, "mlp_last": 46.0}  # cifar10's, the trained net's
    s = epochs.summary(rows)
    assert s["pearson_online_linear"] == pytest.approx(statistics.correlation(
        [30.0, 40.0, 45.0], [31.0, 41.0, 44.0]))
    assert (s["mlp_best_above_last"], s["mlp_epochs"]) == (2, 3)
    assert s["mlp_minus_linear"] == pytest.approx((4 + 6 + 6) / 3)
    plot = tmp_path / "epochs.png"
    assert report_main([str(run), "--over-epochs", "--plot", str(plot),
                        "--json", str(tmp_path / "e.json")]) == 0
    out = capsys.readouterr().out
    assert "| 2 | 40.00 | 40.00 | 41.00 | 47.00 | 46.00 |" in out and "2 of 3" in out
    assert plot.read_bytes().startswith(PNG)
    assert json.loads((tmp_path / "e.json").read_text())["rows"] == rows
    assert report_main([str(tmp_path / "missing"), "--over-epochs"]) == 1  # one clear line
    assert "no metrics.jsonl" in capsys.readouterr().err


def test_one_list_of_metrics():
    """A study file, `jessl report --metric` and the report read the same metrics: a metric
    added to the report is one a study may name."""
    from jessl.studies import command, study
    assert study.METRICS is report.METRICS is command.METRICS
    assert report.METRICS == tuple(report.METRIC_KEYS)


def test_select_by_chooses_per_seed_and_on_the_means(tmp_path, capsys):
    """RankMe's use (label-free selection): per seed, the setting with the highest RankMe
    against the one with the highest kNN and the kNN lost; the mean loss; the choice on the
    means over seeds; a run with no RankMe takes no part."""
    from jessl.studies.command import report_main
    knn = {(0.1, 0): 48.0, (0.2, 0): 46.0, (0.5, 0): 44.0,
           (0.1, 1): 44.0, (0.2, 1): 47.0, (0.5, 1): 43.0}
    rank = {(0.1, 0): 80.0, (0.2, 0): 70.0, (0.5, 0): 30.0,
            (0.1, 1): 60.0, (0.2, 1): 50.0, (0.5, 1): 90.0}
    out = tmp_path / "sweep"
    for p in expand_grid([("method.temperature", [0.1, 0.2, 0.5])], seeds=[0, 1]):
        k = (p.overrides["method.temperature"], p.overrides["train.seed"])
        fabricate_run(out / p.name, p.overrides, knn=knn[k], rankme=rank[k])
    fabricate_run(out / "unfinished", {"method.temperature": 1.0, "train.seed": 1}, epochs=1)
    result = report.build([out], metric="knn", select_by="rankme_embeddings")
    sel = {e["seed"]: e for e in result["selection"]}
    assert list(sel) == ["0", "1", "mean over seeds", "means over seeds"]
    assert (sel["0"]["chosen"], sel["0"]["best"], sel["0"]["lost"]) == (
        "method.temperature=0.1", "method.temperature=0.1", 0.0)
    assert (sel["1"]["chosen"], sel["1"]["chosen_value"], sel["1"]["best"],
            sel["1"]["lost"]) == ("method.temperature=0.5", 43.0, "method.temperature=0.2", 4.0)
    assert sel["1"]["settings"] == 3  # the unfinished run has no RankMe: not a candidate
    assert sel["mean over seeds"]["lost"] == pytest.approx(2.0)
    means = sel["means over seeds"]  # RankMe means 70 / 60 / 60, kNN means 46 / 46.5 / 43.5
    assert (means["chosen"], means["best"]) == ("method.temperature=0.1",
                                                "method.temperature=0.2")
    assert means["lost"] == pytest.approx(0.5)
    assert report_main([str(out), "--metric", "knn", "--select-by", "rankme_embeddings"]) == 0
    text = capsys.readouterr().out
    assert "| 1 | method.temperature=0.5 | 43.00 | method.temperature=0.2 | 47.00 | 4.00 | 3 |" \
        in text
    with pytest.raises(report.StudyError, match="the metric itself"):
        report.build([out], metric="knn", select_by="knn")
    one = report.build([out / "temperature=0.1_seed=0", out / "temperature=0.2_seed=0"],
                       metric="knn", select_by="rankme_embeddings")["selection"]
    assert [e["seed"] for e in one] == ["all runs"] and one[0]["lost"] == 0.0  # one seed
