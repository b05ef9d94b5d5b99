"""Compute at equal accuracy: how much more a baseline needs to reach an efficient run's kNN.

The efficient-training paper (Kocyigit, Hospedales & Bilen 2023) reads a speed-up two ways: in
its Tables 1-3 as the ratio of two runs' costs, their accuracies printed beside it (SimCLR,
Table 2: 2.3x at -0.9 points), and in its Table 7 as the baseline length that reaches the
efficient run's accuracy, interpolated between baseline lengths (F1-CLR alone: 1.37-1.61x).
A 2x-cheaper run that ends a point lower does not say how far from 2x it is; this script gives
the second reading for any efficient run: for each efficient run, the two
baseline runs of the same seed whose kNN brackets its kNN give, interpolated linearly in log
FLOPs (and in log minutes), the baseline compute at that accuracy, and the speed-up is that
over the efficient run's own. Accuracy grows about linearly in log compute over the lengths
run here; the paper's Table 7 interpolates linearly in epochs (for a baseline, FLOPs are
proportional to epochs), which always gives a little more inside a bracket: the script prints
that speed-up too. A run outside every bracket is reported, never extrapolated.

    python bench/equal_accuracy.py \\
        --baseline runs/efficient_ablation_lr2base/simclr_baseline_s* \\
                   runs/efficient_ablation_20ep_base/simclr_baseline_s* \\
                   runs/efficient_ablation_30ep/simclr_baseline_s* \\
                   runs/efficient_ablation_60ep/simclr_baseline_s* \\
        --efficient runs/efficient_ablation_30ep/simclr_all_three@24px_s* \\
                    runs/efficient_ablation_60ep/simclr_all_three@24px_s*

`--plot FILE.png` draws kNN against training petaFLOPs and against minutes (log scales): per
seed, its baselines as a line and its efficient runs as stars, each star joined by a dotted
line to the baseline's cost at its accuracy (the speed-up, drawn).

Reads each run folder's results.json (knn_top1, flops, wall_s), config.yaml (train.seed,
train.epochs, optim.lr) and env.json (the CPU it ran on); trains nothing. FLOPs are the same on
any machine, minutes are not: the time speed-up of a run uses only baselines that ran on the
same CPU model as it (a long study spans sessions, and sessions get different machines), and
a run with none is marked "other CPU" in the time column and drawn hollow in the time panel. A folder still training (config.yaml, no
results.json yet: a long run that resumes next session) is skipped with a line saying so.
Baselines of one seed should share everything but their length (the script prints each
one's epochs and lr so that a mismatch shows).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

import yaml

from jessl.train.curve import run_cpu, same_cpu  # no torch: quick to load


def read_run(folder: Path) -> dict:
    """{folder, seed, epochs, lr, knn, flops, minutes, cpu} of a finished `jessl train` run
    folder; cpu is env.json's CPU model (None for a folder without one)."""
    results, config = folder / "results.json", folder / "config.yaml"
    if not results.is_file() or not config.is_file():
        raise SystemExit(f"{folder}: not a finished run (needs results.json and config.yaml)")
    res = json.loads(results.read_text())
    cfg = yaml.safe_load(config.read_text())
    if "knn_top1" not in res:
        raise SystemExit(f"{folder}/results.json has no knn_top1 (eval.knn was off?)")
    return {"folder": str(folder), "seed": int(cfg["train"]["seed"]),
            "epochs": int(cfg["train"]["epochs"]), "lr": float(cfg["optim"]["lr"]),
            "knn": float(res["knn_top1"]), "flops": float(res["flops"]),
            "minutes": float(res["wall_s"]) / 60,
            "cpu": run_cpu(folder)}


def in_progress(folder: Path) -> bool:
    """A run folder that training has started and not finished (a long run resumes across
    sessions): a glob over a study's folders picks it up, and it is skipped, not an error."""
    return (folder / "config.yaml").is_file() and not (folder / "results.json").is_file()


def at_accuracy(points: list[tuple[float, float]], target: float,
                log: bool = True) -> float | None:
    """The cost at accuracy `target` on the line through the two (cost, accuracy) points whose
    accuracies bracket it, linear in log cost (`log=False`: in cost, as the paper's Table 7);
    None outside every bracket. Points are taken in
    order of cost; where accuracy falls with cost (seed noise), a pair that brackets the target
    still counts, so the first bracket from the cheap end is the answer."""
    points = sorted(points)
    for (c0, a0), (c1, a1) in zip(points, points[1:]):
        if min(a0, a1) <= target <= max(a0, a1) and a0 != a1:
            t = (target - a0) / (a1 - a0)
            if not log:
                return c0 + t * (c1 - c0)
            return math.exp(math.log(c0) + t * (math.log(c1) - math.log(c0)))
    for cost, acc in points:  # exactly equal to a run's accuracy
        if acc == target:
            return cost
    return None


def speedups(baselines: list[dict], efficient: list[dict]) -> list[dict]:
    """Per efficient run: the bracketing baseline cost at its kNN, in FLOPs and in minutes, and
    the ratios to its own; `speedup_flops_linear` interpolates linearly in FLOPs instead.
    Minutes are read only from the baselines that ran on the run's CPU model (`same_cpu`);
    `other_cpu` says a baseline of its seed was left out for that."""
    rows = []
    for run in sorted(efficient, key=lambda r: (r["seed"], r["flops"])):
        same = [b for b in baselines if b["seed"] == run["seed"]]
        timed = [b for b in same if same_cpu(b["cpu"], run["cpu"])]
        flops = at_accuracy([(b["flops"], b["knn"]) for b in same], run["knn"])
        minutes = at_accuracy([(b["minutes"], b["knn"]) for b in timed], run["knn"])
        linear = at_accuracy([(b["flops"], b["knn"]) for b in same], run["knn"], log=False)
        rows.append({**run, "base_flops": flops, "base_minutes": minutes,
                     "speedup_flops": flops / run["flops"] if flops else None,
                     "speedup_flops_linear": linear / run["flops"] if linear else None,
                     "speedup_time": minutes / run["minutes"] if minutes else None,
                     "other_cpu": len(timed) < len(same)})
    return rows


def _time_mean(speedups: list[float], runs: int) -> str:
    """", time 1.59x" for the summary line; the count when some runs had no time reading
    (their minutes came from another CPU model than their baselines')."""
    if not speedups:
        return ""
    left_out = runs - len(speedups)
    note = (f" (mean of {len(speedups)}; {left_out} ran on another CPU than its baselines)"
            if left_out else "")
    return f", time {statistics.mean(speedups):.2f}x{note}"


def plot(baselines: list[dict], rows: list[dict], path: Path) -> None:
    """kNN against PFLOPs (left) and minutes (right), log x: a line per seed through its
    baselines, its efficient runs as stars, a dotted line from each star to the baseline's
    cost at the same kNN where one brackets it. PNG, written to a temporary file and renamed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    from jessl.files import write_atomic

    fig = Figure(figsize=(11.0, 4.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    panels = ((axes[0], "flops", "base_flops", 1e15, "training compute (petaFLOPs)"),
              (axes[1], "minutes", "base_minutes", 1.0, "training time (minutes)"))
    goal_drawn = False  # one legend entry for the 2x marks
    for seed in sorted({b["seed"] for b in baselines} | {r["seed"] for r in rows}):
        base = sorted((b for b in baselines if b["seed"] == seed), key=lambda b: b["flops"])
        eff = [r for r in rows if r["seed"] == seed]
        colour = f"C{seed % 10}"
        for ax, key, base_key, unit, _ in panels:
            if base:
                ax.plot([b[key] / unit for b in base], [b["knn"] for b in base], "o-",
                        color=colour, label=f"baseline, seed {seed}")
            for r in eff:
                hollow = key == "minutes" and r["other_cpu"]  # its minutes do not compare
                ax.plot(r[key] / unit, r["knn"], "*", color=colour, markersize=13,
                        markeredgecolor=colour if hollow else "black", markeredgewidth=0.5,
                        markerfacecolor="none" if hollow else colour,
                        label=f"efficient, seed {seed}" if r is eff[0] else None)
                if r[base_key] is not None:
                    ax.plot([r[key] / unit, r[base_key] / unit], [r["knn"]] * 2, ":",
                            color=colour)
            if key == "flops":  # where the dotted line would end at a 2x speed-up
                for r in eff:
                    ax.plot(2 * r[key] / unit, r["knn"], "|", color="grey", markersize=12,
                            label=None if goal_drawn else "2x the efficient run's FLOPs")
                    goal_drawn = True
    for ax, _, _, _, label in panels:
        ax.set_xscale("log")
        for set_formatter in (ax.xaxis.set_major_formatter, ax.xaxis.set_minor_formatter):
            set_formatter(FuncFormatter(lambda x, _: f"{x:g}"))  # 0.2, not 2 x 10^-1
        ax.set_xlabel(label)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("kNN top-1 (%)")
    axes[0].set_title("dotted: baseline cost at the same kNN", fontsize="small")
    if any(r["other_cpu"] for r in rows):
        axes[1].set_title("hollow: a run on another CPU model than its seed's baselines",
                          fontsize="small")
    axes[0].legend(fontsize="small")
    fig.tight_layout()
    write_atomic(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=100))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline", nargs="+", required=True, type=Path,
                   help="finished baseline run folders, several lengths per seed")
    p.add_argument("--efficient", nargs="+", required=True, type=Path,
                   help="finished efficient run folders")
    p.add_argument("--json", type=Path, help="also write the rows here")
    p.add_argument("--plot", type=Path, metavar="PNG",
                   help="also draw kNN against PFLOPs and minutes, the speed-ups marked")
    args = p.parse_args(argv)
    busy = [f for f in args.baseline + args.efficient if in_progress(f)]
    for folder in busy:
        print(f"skipped {folder}: still training (no results.json yet)")
    baselines = [read_run(f) for f in args.baseline if f not in busy]
    efficient = [read_run(f) for f in args.efficient if f not in busy]

    print("baselines (seed: epochs @ lr -> kNN %, PFLOPs, min):")
    for seed in sorted({b["seed"] for b in baselines}):
        runs = sorted((b for b in baselines if b["seed"] == seed), key=lambda b: b["flops"])
        print(f"  seed {seed}: " + "; ".join(
            f"{b['epochs']} @ {b['lr']:g} -> {b['knn']:.2f}, {b['flops'] / 1e15:.4f}, "
            f"{b['minutes']:.1f}" for b in runs))
    rows = speedups(baselines, efficient)
    print("\n| seed | efficient run | epochs | kNN (%) | PFLOPs | min "
          "| baseline PFLOPs at that kNN | speed-up, FLOPs | speed-up, time "
          "| speed-up, FLOPs, linear (Table 7) |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        base = "outside every bracket" if r["base_flops"] is None \
            else f"{r['base_flops'] / 1e15:.4f}"
        sf, st, sl = (("-" if r[k] is None else f"{r[k]:.2f}x") for k in
                      ("speedup_flops", "speedup_time", "speedup_flops_linear"))
        if r["speedup_time"] is None and r["other_cpu"]:
            st = f"- (other CPU: {r['cpu']})"
        name = f"{Path(r['folder']).parent.name}/{Path(r['folder']).name}"
        print(f"| {r['seed']} | {name} | "
              f"{r['epochs']} | {r['knn']:.2f} | {r['flops'] / 1e15:.4f} | {r['minutes']:.1f} | "
              f"{base} | {sf} | {st} | {sl} |")
    by_epochs: dict[int, list[dict]] = {}
    for r in rows:
        if r["speedup_flops"] is not None:
            by_epochs.setdefault(r["epochs"], []).append(r)
    for epochs, group in sorted(by_epochs.items()):
        f = [r["speedup_flops"] for r in group]
        t = [r["speedup_time"] for r in group if r["speedup_time"] is not None]
        lin = [r["speedup_flops_linear"] for r in group]
        print(f"\nefficient runs of {epochs} epochs: speed-up at equal kNN, FLOPs "
              f"{statistics.mean(f):.2f}x (mean of {len(f)}: "
              f"{', '.join(f'{x:.2f}' for x in f)})"
              + _time_mean(t, len(f))
              + f"; linear in FLOPs (the paper's Table 7) {statistics.mean(lin):.2f}x")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    if args.plot:
        plot(baselines, rows, args.plot)
        print(f"\nplot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
