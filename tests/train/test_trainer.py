"""The trainer end to end on a tiny file: run folder, schedules, exact resume, rank 0 only."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from jessl import distributed
from jessl.checkpoint import list_checkpoints, load_checkpoint
from jessl.config import RunConfig, load_config
from jessl.train.inputs import check_inputs
from jessl.train.trainer import build_schedules, train

from .conftest import tiny_overrides


def records(run, kind):
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


@pytest.fixture(scope="module")
def full_run(tiny_files, tmp_path_factory):
    """simclr, small_cnn, 2 epochs x 4 steps, uninterrupted; the reference for the resume."""
    train_file, val_file = tiny_files
    out = tmp_path_factory.mktemp("runs") / "full"
    cfg = load_config(None, tiny_overrides(train_file, val_file, out,
                                           {"eval.baseline": True, "eval.knn_every": 1}))
    return cfg, out, train(cfg)


def test_run_folder_describes_the_run(full_run):
    cfg, out, metrics = full_run
    for name in ("config.yaml", "version.json", "env.json", "metrics.jsonl", "results.json"):
        assert (out / name).is_file(), name
    assert list(out.glob("events.out.tfevents.*")), "no TensorBoard events"
    assert RunConfig.from_dict(yaml.safe_load((out / "config.yaml").read_text())).to_dict() \
        == cfg.to_dict()
    env = json.loads((out / "env.json").read_text())
    assert env["torch"] == torch.__version__ and env["torch_threads"] == 1
    assert env["device"] == ("cuda:0" if torch.cuda.is_available() else "cpu")  # train.device auto
    assert json.loads((out / "version.json").read_text())["jessl"]
    steps = records(out, "step")
    assert [r["step"] for r in steps] == list(range(1, 9))  # 2 epochs x 64 // 16 steps
    assert all(math.isfinite(r["loss"]) for r in steps)
    epochs = records(out, "epoch")
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert all(0 <= r["probe/backbone_val_top1"] <= 100 for r in epochs)
    ckpts = list_checkpoints(out)
    assert [p.name for p in ckpts] == ["epoch-0001.pt", "epoch-0002.pt"]
    state = load_checkpoint(ckpts[-1])
    assert state["epoch"] == 2 and state["step"] == 8
    for key in ("method", "optimizer", "probe", "probe_optimizer", "loader", "rng"):
        assert state[key] is not None, key
    assert {"torch", "numpy", "python"} <= set(state["rng"])
    final = records(out, "final")[0]
    for key in ("knn_top1", "knn_top1_random_init", "rankme"):
        assert key in metrics and final[key] == metrics[key]
    # compute accounting: cumulative, every step the same shape so the same FLOPs, and the
    # totals in the final record and results.json
    flops = [r["flops"] for r in steps]
    assert flops[0] > 0 and np.allclose(np.diff(flops), flops[0])
    assert all(a < b for a, b in zip([r["wall_s"] for r in steps], [r["wall_s"] for r in steps][1:]))
    assert epochs[-1]["flops"] == flops[-1] == final["flops"]
    results = json.loads((out / "results.json").read_text())
    assert results["flops"] == flops[-1] and results["wall_s"] == epochs[-1]["wall_s"] > 0
    assert state["flops"] == flops[-1]
    assert final["flops_forward"] + final["flops_backward"] == pytest.approx(final["flops"])
    assert 1.5 < final["flops_backward"] / final["flops_forward"] < 2  # no input grad, layer 1
    assert 0 <= epochs[0]["knn_top1"] <= 100 and "knn_top1" not in epochs[1]  # final's own
    assert 0 <= metrics["knn_top1"] <= 100 and metrics["rankme"] >= 1


def test_schedule_arrays_drive_the_optimizer(full_run):
    cfg, out, _ = full_run
    sched = build_schedules(cfg, steps_per_epoch=4)
    peak = 0.1 * 16 / 256  # optim.lr per 256 images, linear rule, batch 16
    assert sched["peak_lr"] == pytest.approx(peak) and sched["warmup_steps"] == 4
    assert sched["lr"][0] == 0.0 and sched["lr"][3] == pytest.approx(peak)  # warm-up end
    assert len(sched["lr"]) == 8 and sched["lr"][-1] < peak
    logged = [r["lr"] for r in records(out, "step")]  # what the optimizer actually used
    np.testing.assert_allclose(logged, sched["lr"], rtol=0, atol=1e-12)
    sqrt = build_schedules(load_config(None, ["optim.scaling=sqrt", "data.batch_size=64",
                                              "optim.lr=0.1"]), steps_per_epoch=4)
    assert sqrt["peak_lr"] == pytest.approx(0.1 * 0.5)  # 0.1 x sqrt(64 / 256)
    f1 = build_schedules(load_config(None, ["optim.schedule=f1clr", "optim.warmup_epochs=1",
                                            "train.epochs=4"]), steps_per_epoch=4)
    assert f1["lr"].argmax() == 4 and f1["momentum"][0] == pytest.approx(0.95)
    assert f1["momentum"][4] == pytest.approx(0.85)  # momentum falls while lr rises
    f1 = build_schedules(load_config(None, ["optim.schedule=f1clr", "optim.warmup_epochs=1",
                                            "train.epochs=4", "optim.f1clr_momentum_high=0.9",
                                            "optim.f1clr_momentum_low=0.8"]), steps_per_epoch=4)
    assert f1["momentum"][0] == pytest.approx(0.9) and f1["momentum"][4] == pytest.approx(0.8)


def resume_cases(train_file, val_file, out) -> dict:
    """The resume comparisons, run in a fresh process by the `resumed` fixture: {case: (losses
    of the uninterrupted run, losses of the stopped-and-resumed run, steps of the resumed
    run's log, what the stopped run reported)}.

    Why a fresh process: in one that has already run parallel torch work (any test before),
    the first `train()` differs from every later one (epoch-2 losses by 7e-4 and more; this
    tiny run amplifies FP-level differences), so a reference and a resumed run computed in
    the same process could disagree for reasons that have nothing to do with resuming."""
    from jessl.methods import METHODS, SimCLR

    class NoisySimCLR(SimCLR):  # draws from torch's global RNG: the checkpoint must restore it
        name = "noisy_simclr"

        def forward(self, views):
            views = [v + 0.1 * torch.randn_like(v) for v in views]
            return super().forward(views)

    METHODS["noisy_simclr"] = NoisySimCLR
    out, cases = Path(out), {}
    for method in ("simclr", "byol", "noisy_simclr"):
        extra = {"method.name": method, "eval.knn": False}
        if method == "byol":
            extra["method.predictor_hidden"] = "32"
        if method == "noisy_simclr":
            extra["probe.enabled"] = False
        train(load_config(None, tiny_overrides(train_file, val_file, out / method / "full",
                                               extra)))
        split = out / method / "split"
        first = train(load_config(None, tiny_overrides(train_file, val_file, split,
                                                       {**extra, "train.stop_after": 1})))
        stopped = {"epoch": first["epoch"], "final": bool(records(split, "final")),
                   "checkpoints": [p.name for p in list_checkpoints(split)]}
        torch.randn(100)  # whatever the process draws in between must not matter
        train(load_config(None, tiny_overrides(train_file, val_file, split,
                                               {**extra, "train.resume": "auto"})))
        # (epoch, loss, cumulative FLOPs): the FLOP count is restored from the checkpoint too
        cases[method] = ([(r["epoch"], r["loss"], r["flops"])
                          for r in records(out / method / "full", "step")],
                         [(r["epoch"], r["loss"], r["flops"]) for r in records(split, "step")],
                         [r["step"] for r in records(split, "step")], stopped)
    return cases


@pytest.fixture(scope="module")
def resumed(tiny_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("resume")
    repo = Path(__file__).resolve().parents[2]
    code = ("import json, sys; from tests.train.test_trainer import resume_cases; "
            "print(json.dumps(resume_cases(*sys.argv[1:])))")
    run = subprocess.run([sys.executable, "-c", code, *map(str, tiny_files), str(out)],
                         capture_output=True, text=True, timeout=600, cwd=repo,
                         env={**os.environ, "PYTHONPATH": str(repo)})
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("method", ["simclr", "byol"])
def test_resume_continues_exactly(resumed, method):
    """2 epochs straight vs 1 epoch, stop, resume for the 2nd: identical losses, bit for bit."""
    reference, got, steps, stopped = resumed[method]
    assert stopped == {"epoch": 1, "final": False, "checkpoints": ["epoch-0001.pt"]}
    assert steps == list(range(1, 9))  # one run's records, no repeats
    assert len(reference) == 8 and got == reference


def test_resume_restores_the_rngs(resumed):
    """A method that draws from torch's global RNG (dropout-like noise) still resumes exactly:
    the checkpoint's RNG states are put back."""
    reference, got, _, _ = resumed["noisy_simclr"]
    assert got == reference


def test_only_rank_0_writes(tiny_files, tmp_path, monkeypatch, capsys):
    """As rank 1 of 2 (no process group needed: the loader shards by rank), nothing is written
    and nothing is printed; training itself still runs."""
    train_file, val_file = tiny_files
    monkeypatch.setattr(distributed, "rank", lambda: 1)
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    out = tmp_path / "rank1"
    metrics = train(load_config(None, tiny_overrides(train_file, val_file, out,
                                                     {"train.epochs": 1})))
    assert math.isfinite(metrics["loss"])
    assert not out.exists()
    assert capsys.readouterr().out == ""


def test_bf16_and_projector_probes_recalibrated(tiny_files, tmp_path):
    train_file, val_file = tiny_files
    out = tmp_path / "bf16"
    metrics = train(load_config(None, tiny_overrides(train_file, val_file, out, {
        "train.epochs": 1, "train.precision": "bf16", "probe.projector_layers": True,
        "probe.recalibrate": 24, "eval.knn": False})))
    assert math.isfinite(metrics["loss"])
    for head in ("backbone", "proj1", "proj2"):  # projector "64-32": two layers
        # recalibrated, and the reading with the views' running statistics beside it
        for key in (f"probe/{head}_val_top1", f"probe/{head}_val_top1_view_stats"):
            assert 0 <= metrics[key] <= 100, key


def test_unknown_preset_of_a_method_is_refused_up_front(tiny_files, tmp_path, monkeypatch):
    """A method whose preset + "_cifar" is missing fails before the run, not mid-run."""
    from jessl.config import ConfigError
    from jessl.methods import SimCLR
    train_file, val_file = tiny_files
    monkeypatch.setattr(SimCLR, "views", "nonexistent")
    cfg = load_config(None, tiny_overrides(train_file, val_file, tmp_path / "x"))
    with pytest.raises(ConfigError, match="asks for view preset 'nonexistent_cifar'"):
        check_inputs(cfg.validate())
    cfg.set("data.views", "crop_grey_cifar")  # naming one explicitly is the way out
    check_inputs(cfg.validate())


def test_simsiam_predictor_keeps_the_peak_lr(tiny_files, tmp_path):
    """SimSiam's fix_predictor_lr: the predictor's groups hold the peak lr from the first step
    (warm-up included) to the last, while the rest follow warm-up + cosine."""
    train_file, val_file = tiny_files
    out = tmp_path / "simsiam"
    extra = {"method.name": "simsiam", "method.predictor_hidden": "16", "eval.knn": False}
    cfg = load_config(None, tiny_overrides(train_file, val_file, out, extra))
    train(cfg)
    sched = build_schedules(cfg, steps_per_epoch=4)
    groups = load_checkpoint(list_checkpoints(out)[-1])["optimizer"]["param_groups"]
    fixed = [g for g in groups if g.get("fixed_lr")]
    assert len(fixed) == 2 and all(g["lr"] == pytest.approx(sched["peak_lr"]) for g in fixed)
    assert groups[0]["lr"] == pytest.approx(sched["lr"][-1]) and sched["lr"][-1] < sched["peak_lr"]
    # the predictor and nothing else: Linear-BN-ReLU-Linear has 2 weights, the BN pair and the
    # last bias (the first Linear has none: BN follows it)
    assert sum(len(g["params"]) for g in fixed) == 5
    off = tmp_path / "decayed"
    train(load_config(None, tiny_overrides(train_file, val_file, off,
                                           {**extra, "method.fix_predictor_lr": False})))
    groups = load_checkpoint(list_checkpoints(off)[-1])["optimizer"]["param_groups"]
    assert len(groups) == 2 and not any(g.get("fixed_lr") for g in groups)
