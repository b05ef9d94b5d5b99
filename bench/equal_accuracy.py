"""Compute at equal accuracy: how much more a baseline needs to reach an efficient run's kNN.

The efficient-training paper (Kocyigit, Hospedales & Bilen 2023) states its speed-ups as the
compute a baseline needs for the same accuracy. A 2x-cheaper run that ends a point lower does
not say how far from 2x it is; baselines of several lengths do: for each efficient run, the two
baseline runs of the same seed whose kNN brackets its kNN give, interpolated linearly in log
FLOPs (and in log minutes), the baseline compute at that accuracy, and the speed-up is that
over the efficient run's own. A run outside every bracket is reported, never extrapolated.

    python bench/equal_accuracy.py \\
        --baseline runs/efficient_ablation_lr2base/simclr_baseline_s* \\
                   runs/efficient_ablation_20ep_base/simclr_baseline_s* \\
                   runs/efficient_ablation_30ep/simclr_baseline_s* \\
                   runs/efficient_ablation_60ep/simclr_baseline_s* \\
        --efficient runs/efficient_ablation_30ep/simclr_all_three@24px_s* \\
                    runs/efficient_ablation_60ep/simclr_all_three@24px_s*

Reads each run folder's results.json (knn_top1, flops, wall_s) and config.yaml (train.seed,
train.epochs, optim.lr); trains nothing. Baselines of one seed should share everything but
their length (the script prints each one's epochs and lr so that a mismatch shows).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

import yaml


def read_run(folder: Path) -> dict:
    """{folder, seed, epochs, lr, knn, flops, minutes} of a finished `jessl train` run folder."""
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
            "minutes": float(res["wall_s"]) / 60}


def at_accuracy(points: list[tuple[float, float]], target: float) -> float | None:
    """The cost at accuracy `target` on the line through the two (cost, accuracy) points whose
    accuracies bracket it, linear in log cost; None outside every bracket. Points are taken in
    order of cost; where accuracy falls with cost (seed noise), a pair that brackets the target
    still counts, so the first bracket from the cheap end is the answer."""
    points = sorted(points)
    for (c0, a0), (c1, a1) in zip(points, points[1:]):
        if min(a0, a1) <= target <= max(a0, a1) and a0 != a1:
            t = (target - a0) / (a1 - a0)
            return math.exp(math.log(c0) + t * (math.log(c1) - math.log(c0)))
    for cost, acc in points:  # exactly equal to a run's accuracy
        if acc == target:
            return cost
    return None


def speedups(baselines: list[dict], efficient: list[dict]) -> list[dict]:
    """Per efficient run: the bracketing baseline cost at its kNN, in FLOPs and in minutes, and
    the ratios to its own."""
    rows = []
    for run in sorted(efficient, key=lambda r: (r["seed"], r["flops"])):
        same = [b for b in baselines if b["seed"] == run["seed"]]
        flops = at_accuracy([(b["flops"], b["knn"]) for b in same], run["knn"])
        minutes = at_accuracy([(b["minutes"], b["knn"]) for b in same], run["knn"])
        rows.append({**run, "base_flops": flops, "base_minutes": minutes,
                     "speedup_flops": flops / run["flops"] if flops else None,
                     "speedup_time": minutes / run["minutes"] if minutes else None})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline", nargs="+", required=True, type=Path,
                   help="finished baseline run folders, several lengths per seed")
    p.add_argument("--efficient", nargs="+", required=True, type=Path,
                   help="finished efficient run folders")
    p.add_argument("--json", type=Path, help="also write the rows here")
    args = p.parse_args(argv)
    baselines = [read_run(f) for f in args.baseline]
    efficient = [read_run(f) for f in args.efficient]

    print("baselines (seed: epochs @ lr -> kNN %, PFLOPs, min):")
    for seed in sorted({b["seed"] for b in baselines}):
        runs = sorted((b for b in baselines if b["seed"] == seed), key=lambda b: b["flops"])
        print(f"  seed {seed}: " + "; ".join(
            f"{b['epochs']} @ {b['lr']:g} -> {b['knn']:.2f}, {b['flops'] / 1e15:.4f}, "
            f"{b['minutes']:.1f}" for b in runs))
    rows = speedups(baselines, efficient)
    print("\n| seed | efficient run | epochs | kNN (%) | PFLOPs | min "
          "| baseline PFLOPs at that kNN | speed-up, FLOPs | speed-up, time |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        base = "outside every bracket" if r["base_flops"] is None \
            else f"{r['base_flops'] / 1e15:.4f}"
        sf = "-" if r["speedup_flops"] is None else f"{r['speedup_flops']:.2f}x"
        st = "-" if r["speedup_time"] is None else f"{r['speedup_time']:.2f}x"
        name = f"{Path(r['folder']).parent.name}/{Path(r['folder']).name}"
        print(f"| {r['seed']} | {name} | "
              f"{r['epochs']} | {r['knn']:.2f} | {r['flops'] / 1e15:.4f} | {r['minutes']:.1f} | "
              f"{base} | {sf} | {st} |")
    by_epochs: dict[int, list[dict]] = {}
    for r in rows:
        if r["speedup_flops"] is not None:
            by_epochs.setdefault(r["epochs"], []).append(r)
    for epochs, group in sorted(by_epochs.items()):
        f = [r["speedup_flops"] for r in group]
        t = [r["speedup_time"] for r in group if r["speedup_time"] is not None]
        print(f"\nefficient runs of {epochs} epochs: speed-up at equal kNN, FLOPs "
              f"{statistics.mean(f):.2f}x (mean of {len(f)}: "
              f"{', '.join(f'{x:.2f}' for x in f)})"
              + (f", time {statistics.mean(t):.2f}x" if t else ""))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
