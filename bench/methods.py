"""The method table at equal cost: every registered method trained on full CIFAR-10 for the same
training wall time, then kNN, a linear probe and RankMe beside the same network at random init.

    python bench/methods.py --data-root ../shared/data --minutes 15 --out runs/method_table
    python bench/methods.py --quick          # smoke test: 1,024 images, seconds per method

Prints a markdown table (docs/benchmarks.md, "Methods at equal training time") and writes
OUT/method_table.json with every run's settings and metrics. The table takes about 3 hours, so
it resumes: run the same command again and methods finished before are read back from their
OUT/NAME/row.json, a half-trained one continues from its last checkpoint with the epoch count
its calibration fixed (OUT/plans/NAME.json), and only the rest is trained. A resumed run's
training minutes add up its sessions (`wall_s` carries across a resume).

The budget is training wall time: the loader, forward, backward and optimizer steps, not the
per-epoch probe evaluation nor the final kNN / linear probe (as issue 12's `wall_s`). jessl's
schedules (lr warm-up and cosine, EMA momentum, DINO's teacher temperature and weight decay,
the view size) are arrays sized from train.epochs before the first step, so the budget becomes
an epoch count up front. Every method trains under the CIFAR-10 recipe's Super Progressive
Learning (32 px through the lr warm-up, then 16, 24, 32 px; docs/recipes/cifar10.md), whose
16 px steps cost ~0.4 of a 32 px one on this CPU: a calibration run of each method at each
stage size (2 epochs of `--calibration-steps` steps on a subset, the second epoch timed, past
the JIT compile and first allocations) gives seconds per step at that size, and the epoch
count is the largest whose size schedule fits the budget at those speeds (at least 1). A run
stopped at a deadline instead would never anneal its lr or its teacher's momentum. The
training minutes each run actually took are in the table beside the budget.

Settings: `--recipes bench` (default) gives every method the short-run CPU settings under which
bench/methods_no_collapse.py showed it learning (solo-learn's CIFAR lrs, LARS, narrower
projectors); `--recipes paper` keeps only the CPU-scale sizes (projector widths, prototypes,
queues) and takes the optimizer from each method's recipe (its paper's 1000-epoch settings).
Shared by all: small_cnn, batch 256, one loader thread, channels_last, 1 warm-up epoch, SPL
16-32 px, seed 0.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from methods_no_collapse import SETTINGS, SHARED, cifar10_files, subset_file  # noqa: E402

# every run, whatever its method (the CIFAR-10 recipe's habits, docs/recipes/cifar10.md): its
# Super Progressive Learning too, so that a method gets the epochs the recipe's trick buys
COMMON = {"model.backbone": "small_cnn", "data.threads": 1, "train.channels_last": True,
          "optim.warmup_epochs": 1, "train.progress": False, "train.keep_checkpoints": 1,
          "progressive.min_size": 16, "progressive.step": 8}
QUICK = {"images": 1024, "val_images": 512, "batch_size": 64, "minutes": 0.05,
         "calibration_steps": 2}


def method_overrides(name: str, recipes: str) -> dict:
    """The config overrides of `name`'s run: COMMON, then SHARED + SETTINGS (bench) or only the
    non-optimizer SETTINGS (paper: the optimizer from the method's recipe)."""
    own = SETTINGS.get(name, {})
    if recipes == "paper":
        return {**COMMON, **{k: v for k, v in own.items() if not k.startswith("optim.")}}
    return {**COMMON, **SHARED, **own}


def size_schedule(cfg, epochs: int) -> list[int]:
    """The first view's side in each of `epochs` epochs of `cfg`'s run: the trainer's own
    `view_schedule`, without building a loader."""
    from jessl.train.trainer import view_schedule
    return view_schedule(cfg, min(cfg.view_list()[0].hw), epochs)[0]


# how far over the budget a plan may go: a calibration is a few timed steps, and this box's
# speed drifts by more than 1% from hour to hour (docs/recipes/cifar10.md), so refusing an
# epoch that misses by less is refusing it on noise. Added after DINO's first plan: 2 epochs
# at 906 s of a 900 s budget, so it trained 1 epoch, 450 s, half the budget
TOLERANCE = 0.01


def epochs_for(budget_s: float, step_s: dict, steps_per_epoch: int, schedule,
               tolerance: float = TOLERANCE) -> int:
    """The most epochs whose size schedule (`schedule(epochs)`: a side per epoch) fits the
    budget, give or take `tolerance` of it, at the measured seconds per step of each side
    (`step_s[side]`); at least 1."""
    def cost(epochs: int) -> float:
        return steps_per_epoch * sum(step_s[side] for side in schedule(epochs))
    cheapest = steps_per_epoch * min(step_s.values())
    limit = budget_s * (1 + tolerance)
    epochs, most = 1, max(1, math.ceil(limit / cheapest))  # no schedule is cheaper
    while epochs < most and cost(epochs + 1) <= limit:
        epochs += 1
    return epochs


def sized_view_set(cfg, side: int) -> str:
    """`cfg`'s data.view_set plus the sizes that put its first view at `side` px and the others
    in proportion (multi-crop), as `Loader.set_size` does in a progressive epoch."""
    sides = [min(v.hw) for v in cfg.view_list()]
    sizes = ";".join(f"{i}.size={max(1, round(s * side / sides[0]))}"
                     for i, s in enumerate(sides))
    return ";".join(filter(None, [cfg.data.view_set, sizes]))


def records(run_dir: Path, kind: str) -> list[dict]:
    """The run's metrics.jsonl records of one kind ("step", "epoch", "final")."""
    from jessl.train.curve import read_metrics
    return [r for r in read_metrics(run_dir) if r.get("kind") == kind]


def training_seconds(run_dir: Path) -> float:
    """Training wall time of a run from its metrics.jsonl: the last `wall_s` where the trainer
    logs it, else the sum of the epochs' `seconds` (both exclude evaluation)."""
    epochs = records(run_dir, "epoch")
    if epochs and "wall_s" in epochs[-1]:
        return float(epochs[-1]["wall_s"])
    return float(sum(r["seconds"] for r in epochs))


def run(fields: dict, overrides: list[str] = (), resume: bool = False):
    """train() on the config of `fields` then `overrides`; (final metrics, the RunConfig).
    `resume`: continue the run folder's last checkpoint (a table spread over sessions), else
    start over."""
    from jessl.config import load_config
    from jessl.train.trainer import train
    cfg = load_config(None, [f"{k}={v}" for k, v in fields.items()] + list(overrides))
    if resume and Path(cfg.train.out, "config.yaml").is_file():
        cfg.set("train.resume", "auto")
    else:
        shutil.rmtree(cfg.train.out, ignore_errors=True)
    return train(cfg), cfg


def saved(path: Path) -> dict | None:
    """A JSON file this script wrote (atomically), or None when it is not there yet."""
    return json.loads(path.read_text()) if path.is_file() else None


def save(path: Path, data: dict) -> None:
    from jessl.files import write_atomic
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=1,
                                                                   default=str) + "\n"))


def calibrate(name: str, calib_file: Path, out: Path, batch_size: int, fields: dict,
              overrides: list[str], only: int | None = None) -> tuple[dict, object]:
    """({side: seconds per training step}, the run's config) of `name` under its settings, one
    calibration run per side its size schedule can use (`only`: that side alone): the second
    of 2 epochs at that side."""
    from jessl.config import load_config
    from jessl.train.progressive import stage_sizes
    base = {"method.name": name, **fields, "data.train": calib_file, "data.val": "",
            "data.batch_size": batch_size, "train.epochs": 2, "eval.knn": False,
            "eval.rankme": False, "probe.enabled": False}
    cfg = load_config(None, [f"{k}={v}" for k, v in base.items()] + list(overrides))
    full, g = min(cfg.view_list()[0].hw), cfg.progressive
    sides = stage_sizes(g.min_size, full, g.step) if g.min_size else [full]
    sides = [only] if only is not None else sides
    step_s = {}
    for side in sides:
        run_dir = out / "calibration" / f"{name}_{side}px"
        run({**base, "train.out": run_dir, "progressive.min_size": 0,
             "data.view_set": sized_view_set(cfg, side)}, overrides)
        first, second = records(run_dir, "epoch")
        step_s[side] = second["seconds"] / (second["step"] - first["step"])
    return step_s, cfg


def linear_probe_top1(model, train_file: Path, val_file: Path, cache: Path) -> float:
    """Linear-probe top-1 (%) on frozen backbone features, train file -> val file
    (`jessl.eval.probes.linear_probe`: lr and weight decay chosen on a train split)."""
    from jessl.eval.features import extract_features
    from jessl.eval.probes import linear_probe
    train_x, train_y = extract_features(model.backbone, train_file, cache_dir=cache)
    val_x, val_y = extract_features(model.backbone, val_file, cache_dir=cache)
    return linear_probe(train_x, train_y, val_x, val_y).top1


def settings_text(cfg) -> str:
    o = cfg.optim
    text = (f"{o.optimizer} {o.lr:g}/256 ({o.scaling}), wd {o.weight_decay:g}"
            + (f"->{o.weight_decay_end:g}" if o.weight_decay_end is not None else "")
            + f", {cfg.train.epochs} ep")
    if cfg.model.projector:
        text += f", proj {cfg.model.projector}"
    if cfg.data.local_views is not None:  # set: a multi-crop method's local views, even 0
        text += f", {cfg.data.local_views} local"
    if cfg.progressive.min_size:
        text += f", SPL {cfg.progressive.min_size}-{min(cfg.view_list()[0].hw)} px"
    return text


def planned_minutes(plan: dict, steps_per_epoch: int) -> float:
    """The training minutes a plan's epochs cost at its calibrated speeds, in minutes of the
    box the table began on (a plan made on a slower box divides by its `slowdown`): what each
    method is given (the run's own minutes add whatever else the box did meanwhile)."""
    cost = steps_per_epoch * sum(plan["step_s"][str(side)] for side in plan["sizes"]) / 60
    return cost / plan.get("slowdown", 1.0)


def plan_file(out: Path, name: str) -> Path:
    """Where a method's plan is kept: beside, not in, its run folder, which a fresh start
    empties (the plan once lived there and was deleted as its run began)."""
    return out / "plans" / f"{name}.json"


def box_slowdown(names: list[str], calib_file: Path, out: Path, batch_size: int, recipes: str,
                 overrides: list[str]) -> float:
    """How much slower this box runs now than when the table's first finished method was
    planned: that method calibrated again at its full size, now over then. The same host can
    change speed between sessions (this one measured 1.54x slower on 2026-12-03 than on
    12-02 for the same SimCLR steps), so a method planned in a later session gets the budget
    times this factor: the same work the others got, not fewer epochs. 1.0 with no finished
    method to compare."""
    for name in names:
        row = saved(out / name / "row.json")
        if not row or not row.get("step_s"):
            continue
        then = row["step_s"]
        side = max(then, key=int)
        now, _ = calibrate(name, calib_file, out, batch_size, method_overrides(name, recipes),
                           overrides, only=int(side))
        factor = now[int(side)] / then[side] * row.get("slowdown", 1.0)
        print(f"box speed: {name} at {side} px {now[int(side)]:.3f} s/step now, "
              f"{then[side]:.3f} when planned -> budgets x {factor:.2f}")
        return factor
    return 1.0


def table(rows: dict, baseline: dict, budget_min: float) -> str:
    lines = [f"| method | settings | training min, planned (budget {budget_min:g}) | "
             f"training min, run | kNN top-1 | linear top-1 | RankMe (embeddings) | "
             f"RankMe (features) |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    slower = []
    for name, m in rows.items():
        planned, factor = m.get("planned_minutes"), m.get("slowdown", 1.0)
        mark = "" if factor == 1.0 else "*"
        slower += [f"{name} {factor:.2f}x"] if mark else []
        lines.append(f"| {name} | {m['settings']} | "
                     f"{'-' if planned is None else f'{planned:.1f}{mark}'} | "
                     f"{m['train_minutes'] / factor:.1f}{mark} | "
                     f"{m.get('knn_top1', float('nan')):.1f}% | {m['linear_top1']:.1f}% | "
                     f"{m.get('rankme', float('nan')):.1f} | "
                     f"{m.get('rankme_features', float('nan')):.1f} |")
    lines.append(f"| (random init) | | | | {baseline['knn_top1']:.1f}% | "
                 f"{baseline['linear_top1']:.1f}% | | {baseline['rankme_features']:.1f} |")
    if slower:
        lines.append(f"\n\\* planned in a later session on a slower box ({', '.join(slower)} "
                     f"slower, `box_slowdown`): given the budget times that factor; minutes "
                     f"divided by it, i.e. in minutes of the box the table began on")
    return "\n".join(lines)


def main(argv=None) -> int:
    from jessl.methods import METHODS
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default="../shared/data", help="folder with cifar10_jpeg_*.npz")
    p.add_argument("--out", default="runs/method_table", help="run folders and the JSON")
    p.add_argument("--minutes", type=float, default=15.0, help="training budget per method")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated names")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--images", type=int, default=50000, help="training images (50,000: all)")
    p.add_argument("--val-images", type=int, default=10000, help="test images (10,000: all)")
    p.add_argument("--calibration-steps", type=int, default=10, help="steps per timed epoch")
    p.add_argument("--recipes", choices=("bench", "paper"), default="bench",
                   help="bench: the short-run CPU settings; paper: each method's recipe")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test: {QUICK['images']} images, {QUICK['minutes'] * 60:g} s each")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config override for every run (repeatable)")
    args = p.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    root, out = Path(args.data_root), Path(args.out)
    b = args.batch_size
    train_file, val_file = cifar10_files(root, out, args.images, args.val_images)
    calib_file = subset_file(root / "cifar10_jpeg_train.npz",
                             out / f"cifar10_calib_{args.calibration_steps * b}.jessl",
                             args.calibration_steps * b)
    steps_per_epoch = args.images // b
    rows, baseline, slowdown = {}, {}, None
    names = args.methods.split(",")
    for i, name in enumerate(names):
        fields = method_overrides(name, args.recipes)
        if args.quick:  # small heads: a smoke run of seconds
            fields["model.projector"] = "128-64"
            if "method.num_prototypes" in fields:
                fields["method.num_prototypes"] = 256
        run_dir = out / name
        done = saved(run_dir / "row.json")  # finished in an earlier session: read back
        if done is not None:
            rows[name] = done
            baseline = baseline or saved(out / "random_init" / "row.json") or {}
            print(f"{name}: done before ({run_dir / 'row.json'})")
            continue
        # the plan is fixed once: a run resumed in a later session keeps its epoch count
        plan = saved(plan_file(out, name))
        if plan is None:
            if slowdown is None:  # once a session, before its first new plan
                slowdown = box_slowdown(names, calib_file, out, b, args.recipes, args.set)
            step_s, cfg = calibrate(name, calib_file, out, b, fields, args.set)
            epochs = epochs_for(args.minutes * 60 * slowdown, step_s, steps_per_epoch,
                                lambda e: size_schedule(cfg, e))
            plan = {"step_s": {str(k): v for k, v in step_s.items()}, "epochs": epochs,
                    "sizes": size_schedule(cfg, epochs), "slowdown": slowdown}
            save(plan_file(out, name), plan)
        step_s, epochs = plan["step_s"], plan["epochs"]
        speeds = ", ".join(f"{s:.3f} s/step at {side} px" for side, s in step_s.items())
        print(f"{name}: {speeds} -> {epochs} epochs of {steps_per_epoch} steps, sides "
              f"{plan.get('sizes')}")
        start = time.perf_counter()
        metrics, cfg = run({"method.name": name, **fields, "data.train": train_file,
                            "data.val": val_file, "data.batch_size": b,
                            "train.epochs": epochs, "train.out": run_dir,
                            "eval.baseline": i == 0}, args.set, resume=True)
        from jessl.eval.models import from_checkpoint
        model = from_checkpoint(run_dir, say=lambda *a: None)
        metrics.update(linear_top1=linear_probe_top1(model, train_file, val_file,
                                                     run_dir / "features"),
                       train_minutes=training_seconds(run_dir) / 60, step_s=step_s,
                       slowdown=plan.get("slowdown", 1.0),
                       planned_minutes=planned_minutes(plan, steps_per_epoch),
                       settings=settings_text(cfg), sources=cfg.sources,
                       minutes_total=(time.perf_counter() - start) / 60)
        rows[name] = metrics
        save(run_dir / "row.json", metrics)
        if not baseline:
            baseline = saved(out / "random_init" / "row.json") or random_init_row(
                model, train_file, val_file, out / "random_init" / "features",
                metrics.get("knn_top1_random_init"))
            save(out / "random_init" / "row.json", baseline)
        (out / "method_table.json").write_text(json.dumps(
            {"minutes": args.minutes, "images": args.images, "batch_size": b,
             "recipes": args.recipes, "overrides": args.set, "random_init": baseline,
             "methods": rows}, indent=1, default=str) + "\n")
    print(table(rows, baseline, args.minutes))
    return 0


def random_init_row(model, train_file: Path, val_file: Path, cache: Path, knn: float | None) -> dict:
    """Linear probe and feature RankMe of the trained network's architecture at init (seed 0)."""
    from jessl.eval.features import extract_features
    from jessl.eval.models import baseline_of
    from jessl.eval.rankme import rankme
    init = baseline_of(model)
    val_x, _ = extract_features(init.backbone, val_file, cache_dir=cache)
    return {"knn_top1": knn if knn is not None else float("nan"),
            "linear_top1": linear_probe_top1(init, train_file, val_file, cache),
            "rankme_features": rankme(val_x)}


if __name__ == "__main__":
    raise SystemExit(main())
