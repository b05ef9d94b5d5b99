"""bench/methods.py's pieces that decide the table: the epoch count from the budget, each
method's settings, the training time it reports, the table itself. (The runs are the bench's.)"""

import json
import math

import pytest

from jessl.config import load_config
from jessl.methods import METHODS

from .bench_module import load


@pytest.fixture(scope="module")
def bench():
    return load("methods")


def test_budget_becomes_whole_epochs(bench):
    full = lambda epochs: [32] * epochs  # noqa: E731
    assert bench.epochs_for(15 * 60, {32: 0.5}, 195, full) == 9  # 900 s / 97.5 s per epoch
    assert bench.epochs_for(60, {32: 0.5}, 195, full) == 1  # never 0
    assert bench.epochs_for(15 * 60, {32: 900 / 195 / 3}, 195, full) == 3


def test_progressive_epochs_are_priced_at_their_own_size(bench):
    cfg = load_config(None, [f"{k}={v}" for k, v in bench.method_overrides("simclr", "bench")
                             .items()] + ["data.views=simclr_cifar"])
    # the recipe's schedule: 32 px in the warm-up epoch, then 16 -> 24 -> 32, the last at 32
    sizes = bench.size_schedule(cfg, 12)
    assert sizes == [32, 16, 16, 16, 16, 24, 24, 24, 32, 32, 32, 32]
    step_s = {16: 0.4, 24: 0.65, 32: 1.0}  # this CPU's relative speeds (docs/recipes)
    schedule = lambda e: bench.size_schedule(cfg, e)  # noqa: E731
    # 12 such epochs cost what 1 + 4 x 0.4 + 3 x 0.65 + 4 = 8.55 full-size ones do
    assert bench.epochs_for(855.01, step_s, 100, schedule) == 12
    assert bench.epochs_for(854.99, step_s, 100, schedule, tolerance=0) == 11
    # within 1% of the budget is within the calibration's noise: DINO's 906 s of 900
    assert bench.epochs_for(855 / 1.009, step_s, 100, schedule) == 12
    assert bench.epochs_for(855 / 1.011, step_s, 100, schedule) == 11
    # calibration at a side: the first view there, the others in proportion, the preset's own
    # fields kept
    multi = load_config(None, ["method.name=swav", "data.views=swav_cifar",
                               "data.view_set=all.scale=0.2:1"])
    spec = bench.sized_view_set(multi, 16)
    sides = [min(v.hw) for v in multi.view_list()]
    assert spec.startswith("all.scale=0.2:1;0.size=16;1.size=16")
    assert spec.count(".size=") == len(sides) and sides[0] == 32
    assert spec.endswith(f"{len(sides) - 1}.size={round(sides[-1] * 16 / 32)}")


@pytest.mark.parametrize("recipes", ["bench", "paper"])
def test_every_method_gets_a_config_that_loads(bench, recipes):
    for name in METHODS:
        fields = {"method.name": name, **bench.method_overrides(name, recipes)}
        cfg = load_config(None, [f"{k}={v}" for k, v in fields.items()])
        assert cfg.model.backbone == "small_cnn" and cfg.optim.warmup_epochs == 1
        if recipes == "paper":  # the optimizer is the method's recipe's
            recipe = METHODS[name].recipe_for(cfg.method.resolved_options())
            assert all(cfg.get(k) == v for k, (v, _) in recipe.items()
                       if k != "optim.warmup_epochs")
        else:  # the shared optimizer, unless the method's own short-run setting names one
            own = bench.SETTINGS.get(name, {}).get("optim.optimizer", "lars")
            assert cfg.optim.optimizer == own
    assert bench.SETTINGS["swav"]["optim.optimizer"] == "sgd"  # LARS collapsed it in 3 epochs


def test_training_time_and_table(bench, tmp_path):
    lines = [{"kind": "step", "step": 1}, {"kind": "epoch", "step": 2, "seconds": 30.0},
             {"kind": "epoch", "step": 4, "seconds": 31.5}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert bench.training_seconds(tmp_path) == 61.5
    lines.append({"kind": "epoch", "step": 6, "seconds": 1.0, "wall_s": 70.0})  # issue 12's
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert bench.training_seconds(tmp_path) == 70.0
    plan = {"step_s": {"16": 0.3, "32": 0.9}, "sizes": [32, 16, 32]}
    assert bench.planned_minutes(plan, 100) == pytest.approx(100 * 2.1 / 60)
    text = bench.table({"simclr": {"settings": "lars", "train_minutes": 14.6, "knn_top1": 60.0,
                                   "linear_top1": 65.0, "rankme": 90.0,
                                   "planned_minutes": 14.25}},
                       {"knn_top1": 38.5, "linear_top1": 40.0, "rankme_features": 50.0}, 15)
    rows = text.splitlines()
    assert rows[0].startswith("| method | settings | training min, planned (budget 15) | "
                              "training min, run |")
    assert rows[2] == "| simclr | lars | 14.2 | 14.6 | 60.0% | 65.0% | 90.0 | nan |"
    assert rows[3] == "| (random init) | | | | 38.5% | 40.0% | | 50.0 |"
    assert not math.isnan(float(rows[2].split("|")[5].strip(" %")))


def test_a_table_spread_over_sessions_reads_finished_methods_back(bench, tmp_path, monkeypatch,
                                                                   capsys):
    # simclr finished in an earlier session; byol was calibrated there (its plan is fixed)
    row = {"settings": "lars", "train_minutes": 15.0, "knn_top1": 55.0, "linear_top1": 60.0,
           "rankme": 40.0, "rankme_features": 50.0}
    bench.save(tmp_path / "simclr" / "row.json", row)
    bench.save(tmp_path / "random_init" / "row.json",
               {"knn_top1": 30.0, "linear_top1": 35.0, "rankme_features": 20.0})
    bench.save(tmp_path / "plans" / "byol.json", {"step_s": {"32": 2.0}, "epochs": 3})
    monkeypatch.setattr(bench, "cifar10_files", lambda *a: ("train.jessl", "val.jessl"))
    monkeypatch.setattr(bench, "subset_file", lambda *a: "calib.jessl")
    calls = []

    def no_calibration(*a, **k):
        raise AssertionError("calibrated again")

    def stop_at_training(fields, overrides=(), resume=False):
        calls.append((fields["method.name"], fields["train.epochs"], resume))
        raise KeyboardInterrupt  # the session ends here
    monkeypatch.setattr(bench, "calibrate", no_calibration)
    monkeypatch.setattr(bench, "run", stop_at_training)
    with pytest.raises(KeyboardInterrupt):
        bench.main(["--methods", "simclr,byol", "--out", str(tmp_path)])
    assert "simclr: done before" in capsys.readouterr().out
    assert calls == [("byol", 3, True)]  # the saved plan's epochs, resuming its folder


def test_a_method_planned_on_a_slower_box_gets_the_same_work(bench, tmp_path, monkeypatch):
    # simclr was planned at 0.9 s/step at 32 px; the box now runs it at 1.35 (1.5x slower)
    bench.save(tmp_path / "simclr" / "row.json", {"step_s": {"16": 0.3, "32": 0.9}})
    monkeypatch.setattr(bench, "subset_file", lambda *a: "calib.jessl")
    monkeypatch.setattr(bench, "calibrate", lambda name, *a, only=None, **k: (
        {only: {"simclr": 1.35}[name]}, None))
    factor = bench.box_slowdown(["byol", "simclr"], "calib.jessl", tmp_path, 256, "bench", [])
    assert factor == pytest.approx(1.5)
    assert bench.box_slowdown(["byol"], "calib.jessl", tmp_path, 256, "bench", []) == 1.0
    # its plan's minutes are counted in minutes of the first box, and the table says so
    plan = {"step_s": {"32": 1.35}, "sizes": [32, 32], "slowdown": 1.5}
    assert bench.planned_minutes(plan, 100) == pytest.approx(100 * 1.8 / 60)
    text = bench.table({"byol": {"settings": "lars", "train_minutes": 4.5, "knn_top1": 50.0,
                                 "linear_top1": 55.0, "planned_minutes": 3.0,
                                 "slowdown": 1.5}},
                       {"knn_top1": 38.5, "linear_top1": 40.0, "rankme_features": 50.0}, 15)
    assert "| byol | lars | 3.0* | 3.0* | 50.0% |" in text
    assert "byol 1.50x slower" in text
