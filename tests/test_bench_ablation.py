"""bench/efficient_ablation.py's table keeps the rows of every call into one --out."""

import argparse
import json

from .bench_module import load


def _bench():
    return load("efficient_ablation")


def test_finished_runs_of_earlier_calls_stay_in_the_table(tmp_path):
    bench = _bench()
    for name, seed, knn in (("baseline", 1, 46.6), ("baseline", 0, 46.0), ("F1-CLR", 0, 46.4),
                            ("F1-CLR+SPL", 0, 45.8)):
        run = tmp_path / bench.run_name("simclr", name, seed)
        run.mkdir()
        (run / "results.json").write_text(json.dumps({"knn_top1": knn}))
    (tmp_path / bench.run_name("simclr", "all three", 0)).mkdir()  # unfinished: no results
    cells = bench.finished_cells(tmp_path, ["simclr", "byol"])
    assert bench.run_name("simclr", "F1-CLR+SPL", 0) == "simclr_F1-CLR_SPL_s0"
    assert {k: [r["knn_top1"] for r in v] for k, v in cells.items()} == {
        ("simclr", "baseline"): [46.0, 46.6],  # by seed
        ("simclr", "F1-CLR"): [46.4],  # not F1-CLR+SPL's folder, whose name starts alike
        ("simclr", "F1-CLR+SPL"): [45.8]}
    # a later call for BYOL alone keeps SimCLR's rows: called methods first, then the others
    assert bench.table_methods(cells, ["byol"]) == ["byol", "simclr"]
    assert bench.table_methods(cells, ["simclr"]) == ["simclr"]


def test_rows_at_24px_train_below_the_test_size_and_ramp_to_it(tmp_path):
    """The @24px rows change the views' size (and so SPL's last stage), nothing else."""
    bench = _bench()
    from jessl.config import load_config
    from jessl.data.views import resolve_views, set_fields
    from jessl.train.progressive import progressive_schedule
    rows = {name: row for name, *row in bench.SETTINGS}
    assert "all three@24px" not in bench.DEFAULT_SETTINGS
    ns = argparse.Namespace(efficient_epochs=12, epochs=15, spl_min_size=16, candidates=4,
                            ha_size=16, ha_skip_small=True, ha_scorer="student", knn_every=0,
                            ha_start_epoch=0, f1clr_warmup=1.5, f1clr_lr_mult=1.0,
                            baseline_lr_mult=1.0, quick=False, spl_min_magnitude=1.0)
    small = bench.overrides("simclr", *rows["all three@24px"], ns)
    full = bench.overrides("simclr", *rows["all three"], ns)
    assert {k: v for k, v in small.items() if full.get(k) != v} == {
        "data.view_set": "all.size=24"}
    cfg = load_config(bench.RECIPE, [f"{k}={v}" for k, v in small.items()])
    views = set_fields(resolve_views("simclr_cifar"), cfg.data.view_set)
    assert {v.hw for v in views} == {(24, 24)}
    sizes, _ = progressive_schedule(12, 24, cfg.progressive.min_size, cfg.optim.warmup_epochs,
                                    cfg.progressive.step)
    assert sizes[:2] == [24, 24] and min(sizes) == 16 and sizes[-1] == 24
    assert "data.view_set" not in bench.overrides("simclr", *rows["baseline"], ns)


def test_tables_are_written_from_every_finished_run_after_each_cell(tmp_path):
    """A call stopped mid-way (a long run that resumes next session) leaves ablation.json and
    table3.md agreeing, both with every finished run and none of the unfinished ones."""
    bench = _bench()
    for name, seed, knn, flops in (("baseline", 0, 60.0, 4e14), ("all three@24px", 0, 59.0, 2e14),
                                   ("baseline", 1, 61.0, 4e14)):
        run = tmp_path / bench.run_name("simclr", name, seed)
        run.mkdir()
        (run / "results.json").write_text(json.dumps(
            {"epoch": 10, "knn_top1": knn, "flops": flops, "wall_s": flops / 1e12}))
    (tmp_path / bench.run_name("simclr", "all three@24px", 1)).mkdir()  # still training
    args = argparse.Namespace(images=10000, seeds="1")
    text = bench.write_tables(tmp_path, args, ["simclr"])
    assert (tmp_path / "table3.md").read_text() == text
    assert "| simclr | baseline | 10 | 60.50 ± 0.71 | +0.00 |" in text
    # compared with seed 0's baseline alone (60.0), not the mean of seeds 0 and 1 (60.5)
    assert "| simclr | all three@24px | 10 | 59.00 | -1.00 | 0.2 | 3.3 | 2.00x | 2.00x | 1 |" in text
    assert "compare the seeds a row shares with its baseline" in text
    report = json.loads((tmp_path / "ablation.json").read_text())
    assert report["args"] == {"images": 10000, "seeds": "1"}
    assert [r["knn_top1"] for r in report["runs"]["simclr/baseline"]] == [60.0, 61.0]
    assert [r["knn_top1"] for r in report["runs"]["simclr/all three@24px"]] == [59.0]
    assert [r["seed"] for r in report["runs"]["simclr/baseline"]] == [0, 1]
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, nothing left beside


def test_rows_are_compared_with_the_baseline_on_the_seeds_both_ran():
    """A row is judged against its own seeds' baselines: the difference and the speed-ups are
    means over matched seeds, so a lucky baseline seed the row lacks does not move them."""
    bench = _bench()
    def run(seed, knn, flops, wall_s):
        return {"seed": seed, "epoch": 10, "knn_top1": knn, "flops": flops, "wall_s": wall_s}
    cells = {("simclr", "baseline"): [run(0, 60.0, 4e14, 600), run(1, 62.0, 4e14, 900),
                                      run(2, 70.0, 8e14, 9000)],
             ("simclr", "F1-CLR"): [run(0, 59.0, 2e14, 300), run(1, 61.5, 2e14, 300)]}
    row = next(line for line in bench.table(cells, ["simclr"]).splitlines()
               if "| F1-CLR |" in line)
    # seeds 0 and 1: (-1.0 - 0.5) / 2 = -0.75; FLOPs 4e14 / 2e14; time 750 s / 300 s
    assert "| 60.25 ± 1.77 | -0.75 | 0.2 | 5.0 | 2.00x | 2.50x | 2 |" in row
    same = {k: [r for r in v if r["seed"] < 2] for k, v in cells.items()}
    assert "compare the seeds" not in bench.table(same, ["simclr"])  # no footnote when matched


def test_time_speedups_compare_runs_on_one_cpu_model_only(tmp_path):
    """A seed whose efficient run ran on another machine than its baseline keeps its kNN and
    FLOPs in the comparison, and leaves the time speed-up, which says so."""
    bench = _bench()
    for name, seed, knn, wall_s, cpu in (("baseline", 0, 60.0, 600, "AMD EPYC"),
                                         ("baseline", 1, 62.0, 900, "AMD EPYC"),
                                         ("F1-CLR", 0, 59.0, 300, "AMD EPYC"),
                                         ("F1-CLR", 1, 61.0, 100, "Intel Xeon")):
        run = tmp_path / bench.run_name("simclr", name, seed)
        run.mkdir()
        (run / "results.json").write_text(json.dumps(
            {"epoch": 10, "knn_top1": knn, "flops": 4e14 if name == "baseline" else 2e14,
             "wall_s": wall_s}))
        (run / "env.json").write_text(json.dumps({"cpu": cpu}))
    text = bench.table(bench.finished_cells(tmp_path, ["simclr"]), ["simclr"])
    # kNN and FLOPs on both seeds; time on seed 0 alone: 600 s / 300 s
    assert "| -1.00 | 0.2 | 3.3 | 2.00x | 2.00x (1 of 2 seeds) | 2 |" in text
    assert "different CPU models" in text


def test_every_cell_asks_the_trainer_to_resume(tmp_path, monkeypatch):
    """The trainer decides between a resume and a fresh start (and says which:
    tests/train/test_plumbing.py), with or without a checkpoint in the run folder."""
    import jessl.train.trainer
    bench = _bench()
    run = tmp_path / "simclr_all_three@24px_s2"
    seen = []
    monkeypatch.setattr(jessl.train.trainer, "train", lambda cfg: seen.append(cfg.train.resume))
    bench.run_cell(run, tmp_path / "t.jessl", tmp_path / "v.jessl", {}, 2)
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "epoch-0036.pt").write_bytes(b"")
    bench.run_cell(run, tmp_path / "t.jessl", tmp_path / "v.jessl", {}, 2)
    assert seen == ["auto", "auto"]
