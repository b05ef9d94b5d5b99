"""The efficient-training ablation (Kocyigit, Hospedales & Bilen 2023, Table 3) on CIFAR-10.

Five settings per method, each trained from scratch with `jessl.train.train` and measured by
the trainer's own compute accounting (FLOPs counted with FlopCounterMode, training seconds
without evaluation):

    baseline        warm-up + cosine, `--epochs`, full size, no mining
    F1-CLR          fixed 1-cycle lr and momentum (section 3.1), `--efficient-epochs`
    F1-CLR+SPL      + Super Progressive Learning (3.2): full size in warm-up, then 16-32 px
    F1-CLR+HA       + Hard Augment (3.3): hardest pair of 4 candidates, mined at 16 px
    all three       F1-CLR + SPL + HA

and, by name only (`--settings`), two rows that train below the 32 px test size (FixRes):

    baseline@24px   the baseline with 24 px views
    all three@24px  all three, SPL's ramp ending at 24 px

Each row gives the kNN top-1 (k=200, CIFAR-10 test; mean and spread over seeds), the
training cost in petaFLOPs, the training minutes and the speed-ups against the baseline in
FLOPs and in minutes, with the seed count. Everything else is docs/recipes/cifar10_simclr_v1.yaml
(small_cnn, batch 256, LARS, simclr_cifar views), with each method's own loss, views and lr.

    python bench/efficient_ablation.py --data-root ../shared/data --out runs/ablation \\
        --methods simclr,byol --seeds 0,1          # the full table: hours, run it alone
    python bench/efficient_ablation.py --predict --methods simclr,byol   # FLOP column only
    python bench/efficient_ablation.py --quick --out /tmp/ablation   # smoke test, ~2 min

The row nearest issue 12's goal: all three at 24 px, 12 epochs, with the paper's doubled
F1-CLR peak lr and SPL's colour-jitter ramp, against the baseline (2026-12-06: 2.02x fewer
FLOPs, 1.98x less time, 0.53 points of kNN under it over 5 seeds; 2.1 under a baseline at the
same lr, and 1.2, 1.1 and 0.9 at 30 against 25, 60 against 51 and 120 against 103 epochs,
where the baseline needs only 1.4-1.7x the efficient row's FLOPs for its accuracy,
bench/equal_accuracy.py; docs/benchmarks.md):

    python bench/efficient_ablation.py --methods simclr --images 10000 --seeds 0,1,2,3,4 \
        --settings "baseline,all three@24px" --efficient-epochs 12 --ha-skip-small \
        --f1clr-lr-mult 2 --spl-min-magnitude 0.5 --out runs/efficient_ablation_goal

Finished runs are skipped when the command is run again (their results.json is read back),
so an interrupted ablation continues; a run stopped mid-way resumes from its last checkpoint
in the same checkout, and trains again from epoch 0, saying so, in a fresh one (checkpoints
stay out of git). Writes OUT/ablation.json and OUT/table3.md. A row's
"vs baseline" and speed-ups are means over the seeds it shares with its baseline, and the time
speed-up only over the seeds whose two runs ran on one CPU model (each run's env.json): a
study that spans sessions meets other machines, and minutes from two do not compare.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from methods_no_collapse import subset_file  # noqa: E402

from jessl.train.curve import run_cpu, same_cpu  # noqa: E402  (no torch: quick to load)

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "docs" / "recipes" / "cifar10_simclr_v1.yaml"
PETA = 1e15

# the paper's Table 3 (SimSiam, ResNet-50, Imagenette, kNN): LR schedule, SPL, HA, kNN, speed-up
PAPER_TABLE3 = [("CA", "-", "-", "90.9", "1.0x"), ("F1-CLR", "-", "-", "90.2 (-.7)", "1.7x"),
                ("CA", "-", "yes", "89.8 (-1.1)", "1.8x"),
                ("F1-CLR", "yes", "-", "90.1 (-.8)", "2.7x"),
                ("F1-CLR", "-", "yes", "90.3 (-.6)", "1.5x"),
                ("F1-CLR", "yes", "yes", "91.4 (+.5)", "2.4x")]

# (name, F1-CLR, SPL, HA, view px): the rows of our table, in order. The last two train below
# the 32 px test size (FixRes, Touvron et al. 2019: random crops enlarge objects, so views
# smaller than the test image match its object scale; docs/recipes/cifar10.md, third
# recipe): the efficient rows with SPL's ramp ending at 24 px, and the baseline at 24 px that
# tells how much of their accuracy is the resolution rather than the strategies. Not in the
# default --settings: run them by name
FULL = 32  # px, CIFAR-10's size, the test views' size
SETTINGS = [("baseline", False, False, False, FULL), ("F1-CLR", True, False, False, FULL),
            ("F1-CLR+SPL", True, True, False, FULL), ("F1-CLR+HA", True, False, True, FULL),
            ("all three", True, True, True, FULL),
            ("baseline@24px", False, False, False, 24), ("all three@24px", True, True, True, 24)]
DEFAULT_SETTINGS = [s[0] for s in SETTINGS if s[4] == FULL]

# per-method overrides of the recipe: the method's own views come with its name; BYOL's lr is
# the methods benchmark's (bench/methods_no_collapse.py, solo-learn's CIFAR BYOL: LARS 1.0)
METHOD_SETTINGS = {
    "simclr": {},
    "byol": {"optim.lr": 1.0, "optim.scaling": "linear", "method.predictor_hidden": "4096"},
    "simsiam": {"optim.lr": 1.0, "optim.scaling": "linear"},
}


def overrides(method: str, f1clr: bool, spl: bool, ha: bool, size: int, args) -> dict:
    """The config of one cell of the table (on top of the recipe file)."""
    o = {"method.name": method, **METHOD_SETTINGS.get(method, {}),
         "train.epochs": args.efficient_epochs if f1clr else args.epochs,
         "optim.schedule": "f1clr" if f1clr else "warmup_cosine",
         # the recipe's SPL is part of it: the baseline runs at full size all along
         "progressive.min_size": args.spl_min_size if spl else 0,
         "progressive.min_magnitude": args.spl_min_magnitude if spl else 1.0,
         "hard_augment.enabled": ha, "hard_augment.candidates": args.candidates,
         "hard_augment.size": args.ha_size, "hard_augment.skip_small": args.ha_skip_small,
         "hard_augment.start_epoch": args.ha_start_epoch,
         "hard_augment.scorer": args.ha_scorer,
         "eval.knn_every": args.knn_every, "eval.baseline": False,
         "train.progress": False, "train.keep_checkpoints": 1}
    if size != FULL:  # the views' size, which is also SPL's last stage
        o["data.view_set"] = f"all.size={size}"
    if f1clr:
        o["optim.warmup_epochs"] = args.f1clr_warmup
    lr_mult = args.f1clr_lr_mult if f1clr else args.baseline_lr_mult
    if lr_mult != 1.0:
        o["optim.lr"] = lr_mult * _base_lr(method)
    if args.quick:
        o.update({"data.batch_size": 64, "model.projector": "256-64", "eval.k": 20,
                  "probe.enabled": False, "eval.rankme": False})
        if method in ("byol", "simsiam"):
            o["method.predictor_hidden"] = "64"
    return o


def _base_lr(method: str) -> float:
    from jessl.config import load_config
    return float(METHOD_SETTINGS.get(method, {}).get("optim.lr",
                                                      load_config(RECIPE).optim.lr))


def run_name(method: str, setting: str, seed) -> str:
    """A run's folder name in --out: simclr_F1-CLR_SPL_s0."""
    return f"{method}_{setting.replace(' ', '_').replace('+', '_')}_s{seed}"


def finished_cells(out: Path, methods: list[str]) -> dict:
    """{(method, setting): [results, by seed]} of every finished run in `out`, whatever call
    ran it: a call with other --settings or --seeds into the same --out adds its rows to
    table3.md and ablation.json instead of replacing the earlier ones."""
    cells: dict = {}
    for method in methods:
        for name, *_ in SETTINGS:
            prefix = run_name(method, name, "")
            runs = sorted((int(d.name[len(prefix):]), d) for d in out.glob(prefix + "*")
                          if d.name[len(prefix):].isdigit() and (d / "results.json").is_file())
            for seed, run in runs:  # by seed
                results = json.loads((run / "results.json").read_text())
                cells.setdefault((method, name), []).append({**results, "seed": seed,
                                                             "cpu": run_cpu(run)})
    return cells


def run_cell(out: Path, train_file: Path, val_file: Path, fields: dict, seed: int) -> None:
    """One training run into `out`, unless it finished before (its results.json, which the
    table reads back: `finished_cells`)."""
    from jessl.config import load_config
    from jessl.train.trainer import train
    if (out / "results.json").is_file():
        return
    fields = {**fields, "data.train": train_file, "data.val": val_file, "train.seed": seed,
              "train.out": out, "train.resume": "auto"}  # the trainer says which it did
    train(load_config(RECIPE, [f"{k}={v}" for k, v in fields.items()]))


def predict_flops(method: str, args) -> dict:
    """{row: training FLOPs} of every row, from the schedules alone: FLOPs are a function of
    the view sizes per epoch (and of nothing learned), so the FLOP column of the table is
    known before any training. Each view size's step (and selection pass) is measured once at
    the recipe's batch size on a fresh model, as the trainer measures it."""
    import functools

    import torch

    from jessl.config import load_config
    from jessl.methods import build_method
    from jessl.models import build_backbone
    from jessl.train.flops import FlopMeter, step_flops_on
    from jessl.train.hard_augment import HardAugment
    from jessl.train.trainer import view_schedule
    wanted = args.settings.split(",")
    cfgs = {name: load_config(RECIPE, [f"{k}={v}" for k, v in
                                       overrides(method, *row, args).items()])
            for name, *row in SETTINGS if name in wanted or name == "baseline"}
    cfg = cfgs["baseline"]  # model, method and batch are the same in every row
    batch, steps = cfg.data.batch_size, args.images // cfg.data.batch_size
    model = build_method(method, build_backbone(cfg.model.backbone, True), cfg.model.projector,
                         cfg.method.resolved_options())

    @functools.cache
    def step(size: int, ha: bool) -> float:
        f = step_flops_on(model, [torch.randn(batch, 3, size, size) for _ in range(2)])
        if not ha:
            return f["forward"] + f["backward"]
        meter = FlopMeter()
        HardAugment(args.candidates, args.ha_size).select(
            model, [torch.randn(batch, 3, size, size) for _ in range(args.candidates)], meter)
        return f["forward"] + f["backward"] + meter.total

    out = {}
    for name, *_, full in SETTINGS:
        if name not in cfgs:
            continue
        c, h = cfgs[name], cfgs[name].hard_augment
        # the trainer's own rules: its view schedule, and HardAugment.mines for each epoch
        miner = HardAugment(h.candidates, h.size, skip_small=h.skip_small,
                            start_epoch=h.start_epoch) if h.active else None
        out[name] = sum(steps * step(size, miner is not None and miner.mines(size, epoch))
                        for epoch, size in enumerate(view_schedule(c, full)[0]))
    return out


def warm_up(train_file: Path, methods: list[str]) -> None:
    """One batch of every view recipe the runs use, candidates included, before any run is
    timed: the first run would otherwise pay for loading the augmentation kernels (numba) in
    its training minutes, and the baseline runs first."""
    from jessl.data.loader import Loader
    from jessl.data.views import resolve_views
    from jessl.methods import METHODS
    from jessl.train.hard_augment import candidate_views
    for method in methods:
        views = resolve_views(f"{METHODS[method].views}_cifar")
        for recipe in (views, candidate_views(views, 4)):
            next(iter(Loader(train_file, 8, recipe, num_threads=1)))


def _mean_spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def table_methods(cells: dict, methods: list[str]) -> list[str]:
    """The called methods, then every other method with a finished run in `cells` (in their
    order there): a call for one method into a folder that holds another's runs keeps their
    rows in table3.md and ablation.json."""
    return list(dict.fromkeys([*methods, *(method for method, _ in cells)]))


def table(cells: dict, methods: list[str]) -> str:
    """Markdown: one row per (method, setting), speed-ups against that method's baseline."""
    lines = ["| method | setting | epochs | kNN top-1 (%) | vs baseline | petaFLOPs | training "
             "min | speed-up, FLOPs | speed-up, time | seeds |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    unmatched = other_cpu = False
    for method in methods:
        base = {r.get("seed"): r for r in cells.get((method, "baseline"), [])}
        for name, *_ in SETTINGS:
            runs = cells.get((method, name))
            if not runs:
                continue
            knn = [r["knn_top1"] for r in runs]
            flops = statistics.mean(r["flops"] for r in runs)
            minutes = statistics.mean(r["wall_s"] for r in runs) / 60
            delta = speed_f = speed_t = ""
            pairs = [(r, base[r.get("seed")]) for r in runs if r.get("seed") in base]
            if pairs:
                delta, speed_f, speed_t, timed = _versus(pairs)
                unmatched |= len(pairs) != len(runs) or len(pairs) != len(base)
                other_cpu |= timed < len(pairs)
            lines.append(f"| {method} | {name} | {runs[0]['epoch']} | {_mean_spread(knn)} | "
                         f"{delta} | {flops / PETA:.4g} | {minutes:.1f} | {speed_f} | "
                         f"{speed_t} | {len(runs)} |")
    if unmatched:
        lines.append("\n\"vs baseline\" and the speed-ups compare the seeds a row shares with "
                     "its baseline (where a row has more or fewer seeds than the baseline, "
                     "its kNN and the baseline's, each over its own seeds, differ by another "
                     "figure).")
    if other_cpu:
        lines.append("\nA time speed-up \"of N seeds\" (or \"-\") leaves out the seeds whose "
                     "run and baseline ran on different CPU models (env.json): FLOPs compare "
                     "across machines, minutes do not.")
    return "\n".join(lines)


def _versus(pairs: list[tuple[dict, dict]]) -> tuple[str, str, str, int]:
    """The kNN difference and the FLOP and time speed-ups of a row against its baseline,
    over the seeds both ran (matched seeds: a seed still training on one side would otherwise
    mix a seed's luck into the difference); the time speed-up only over the seeds whose two
    runs ran on the same CPU model (a study that spans sessions meets other machines), marked
    "of N seeds" when that leaves some out, "-" when it leaves all; and how many it kept."""
    mean = statistics.mean
    timed = [(r, b) for r, b in pairs if same_cpu(r.get("cpu"), b.get("cpu"))]
    speed_t = "-"
    if timed:
        speed_t = f"{mean(b['wall_s'] for _, b in timed) / mean(r['wall_s'] for r, _ in timed):.2f}x"
        if len(timed) < len(pairs):
            speed_t += f" ({len(timed)} of {len(pairs)} seeds)"
    return (f"{mean(r['knn_top1'] - b['knn_top1'] for r, b in pairs):+.2f}",
            f"{mean(b['flops'] for _, b in pairs) / mean(r['flops'] for r, _ in pairs):.2f}x",
            speed_t, len(timed))


def paper_table() -> str:
    lines = ["| LR schedule | Sup. Prog. | Hard Aug. | kNN (%) | speed-up |",
             "|---|---|---|---:|---:|"]
    lines += [f"| {' | '.join(row)} |" for row in PAPER_TABLE3]
    return "\n".join(lines)


def write_tables(out: Path, args, methods: list[str]) -> str:
    """Write OUT/ablation.json and OUT/table3.md from every finished run in `out` (every
    method's, earlier calls' too), each atomically; returns table3.md's text. "args" in
    ablation.json are this call's; each run's own config.yaml records how it ran."""
    from jessl.files import write_atomic
    from jessl.methods import METHODS
    cells = finished_cells(out, list(METHODS))
    runs = {f"{m}/{n}": r for (m, n), r in cells.items()}
    report = json.dumps({"args": vars(args), "runs": runs}, indent=1) + "\n"
    text = (f"## Ours (CIFAR-10, {args.images:,} training images, small_cnn)\n\n"
            + table(cells, table_methods(cells, methods)) +
            "\n\n## The paper's Table 3 (SimSiam, ResNet-50, Imagenette)\n\n" + paper_table() + "\n")
    write_atomic(out / "ablation.json", lambda tmp: Path(tmp).write_text(report))
    write_atomic(out / "table3.md", lambda tmp: Path(tmp).write_text(text))
    return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--data-root", default="../shared/data", help="folder with cifar10_jpeg_*.npz")
    p.add_argument("--out", default="runs/efficient_ablation")
    p.add_argument("--methods", default="simclr,byol", help="comma-separated jessl methods")
    p.add_argument("--seeds", default="0,1", help="comma-separated train.seed values")
    p.add_argument("--settings", default=",".join(DEFAULT_SETTINGS),
                   help="comma-separated rows: " + ", ".join(s[0] for s in SETTINGS) +
                   " (default: all but the @24px ones)")
    p.add_argument("--epochs", type=int, default=15, help="baseline epochs")
    p.add_argument("--efficient-epochs", type=int, default=9,
                   help="F1-CLR rows' epochs (the paper: 480 against the baseline's 800)")
    p.add_argument("--f1clr-warmup", type=float, default=1.5,
                   help="F1-CLR warm-up epochs (the paper: 80 of 480, a sixth)")
    p.add_argument("--f1clr-lr-mult", type=float, default=1.0,
                   help="F1-CLR peak lr over the baseline's (the paper: 0.2 / 0.1 = 2)")
    p.add_argument("--baseline-lr-mult", type=float, default=1.0,
                   help="the baseline rows' peak lr over the recipe's (a control: does the "
                   "baseline gain what F1-CLR gains from --f1clr-lr-mult?)")
    p.add_argument("--spl-min-size", type=int, default=16, help="SPL's smallest view, px")
    p.add_argument("--spl-min-magnitude", type=float, default=1.0,
                   help="SPL's colour-jitter strength at its smallest view, rising linearly to 1 "
                   "at full size (the paper's Fig. 3 ramps it; 1 = constant, as the 2026-12-02 "
                   "table ran)")
    p.add_argument("--candidates", type=int, default=4, help="Hard Augment's m")
    p.add_argument("--ha-size", type=int, default=16, help="Hard Augment's selection px")
    p.add_argument("--ha-skip-small", action="store_true",
                   help="no mining in SPL's epochs of views <= --ha-size px")
    p.add_argument("--ha-start-epoch", type=int, default=0,
                   help="first epoch (0-based) that mines; 2 = after F1-CLR's 1.5 warm-up "
                   "epochs (the paper mines from the start)")
    p.add_argument("--ha-scorer", choices=("student", "teacher"), default="student",
                   help="network that scores the pairs for EMA-teacher methods (BYOL): the "
                   "paper's student, or the teacher (docs/benchmarks.md, Hard Augment choices)")
    p.add_argument("--knn-every", type=int, default=0,
                   help="kNN every N epochs too (for `jessl curve --reach`); 0 = at the end")
    p.add_argument("--images", type=int, default=50000, help="CIFAR-10 train images used")
    p.add_argument("--predict", action="store_true",
                   help="print each row's training FLOPs and FLOP speed-up from the schedules "
                   "alone (no training, a few minutes), to choose epochs and --ha-size")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 256 train / 256 test images, 3 + 3 epochs, one seed")
    args = p.parse_args(argv)
    unknown = set(args.settings.split(",")) - {s[0] for s in SETTINGS}
    if unknown:
        p.error(f"--settings: unknown {', '.join(sorted(unknown))}; known: "
                f"{', '.join(s[0] for s in SETTINGS)}")
    if args.quick:
        args.images, args.epochs, args.efficient_epochs, args.seeds = 256, 3, 3, "0"
        args.f1clr_warmup, args.spl_min_size = 0.5, 16
    if args.predict:
        for method in args.methods.split(","):
            flops = predict_flops(method, args)
            for name, value in flops.items():
                print(f"{method} {name}: {value / PETA:.4g} PFLOPs, "
                      f"{flops['baseline'] / value:.2f}x fewer than the baseline")
        return 0
    root, out = Path(args.data_root), Path(args.out)
    if not (root / "cifar10_jpeg_train.npz").is_file():
        raise SystemExit(f"{root}/cifar10_jpeg_train.npz not found: give --data-root "
                         f"(the shared CIFAR-10 .npz files)")
    out.mkdir(parents=True, exist_ok=True)
    val_images = 256 if args.quick else 10000
    train_file = subset_file(root / "cifar10_jpeg_train.npz",
                             out / f"cifar10_train_{args.images}.jessl", args.images)
    val_file = subset_file(root / "cifar10_jpeg_test.npz",
                           out / f"cifar10_test_{val_images}.jessl", val_images)
    methods = args.methods.split(",")
    wanted = args.settings.split(",")
    warm_up(train_file, methods)
    for method in methods:
        for name, f1clr, spl, ha, size in SETTINGS:
            if name not in wanted:
                continue
            fields = overrides(method, f1clr, spl, ha, size, args)
            for seed in (int(s) for s in args.seeds.split(",")):
                run_cell(out / run_name(method, name, seed), train_file, val_file, fields, seed)
                write_tables(out, args, methods)  # a call stopped later keeps both current
    print(write_tables(out, args, methods))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
