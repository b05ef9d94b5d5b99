"""A run's learning curve from its metrics.jsonl: accuracy against compute and wall time.

`jessl curve RUN [RUN ...]` prints one markdown row per epoch (view size, loss, online-probe
accuracy, kNN when the run evaluated it (`eval.knn_every`), cumulative training FLOPs and
minutes), the final kNN, and with `--reach X` the FLOPs and training minutes each run needed
to reach X% kNN; `--plot` draws accuracy against petaFLOPs and against training minutes for
every run: the curves the recipes and the efficient-training ablation in docs/ quote.

FLOPs (`flops`) and training seconds (`wall_s`) are cumulative keys of the trainer's records
(jessl.train.flops); runs older than the compute accounting lack them, and read as "n/a".
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

PETA = 1e15  # FLOPs in a petaFLOP (jessl.train.flops.PETA; not imported: it loads torch)
VAL = "probe/backbone_val_top1"  # the online probe on the validation file (trainer.py)


def run_cpu(run_dir) -> str | None:
    """The CPU model a run trained on (its env.json, written by the trainer); None for a
    folder without one."""
    env = Path(run_dir) / "env.json"
    return json.loads(env.read_text()).get("cpu") if env.is_file() else None


def same_cpu(a: str | None, b: str | None) -> bool:
    """Whether two runs' minutes compare: FLOPs are the same on any machine, training minutes
    only on one CPU model (a study that spans sessions meets other machines). A run with no
    record of its CPU compares with any, as runs did before env.json."""
    return a is None or b is None or a == b


def stopped_epoch(run_dir) -> int | None:
    """The last epoch an earlier run in RUN finished, from its metrics.jsonl; None if it
    finished none or left no metrics."""
    if not (Path(run_dir) / "metrics.jsonl").is_file():
        return None
    return max((r["epoch"] for r in read_metrics(run_dir) if r.get("kind") == "epoch"),
               default=None)


def read_metrics(run_dir) -> list[dict]:
    """The records of RUN/metrics.jsonl, in order; a line that is not JSON is an error naming
    the file and the line (a run killed mid-write can leave half a line at the end: that last
    line alone is dropped, since the trainer flushes whole records)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics.jsonl (is {run_dir} a `jessl train` run "
                                f"folder?)")
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            if i == len(lines):  # the interrupted last write
                break
            raise ValueError(f"{path}, line {i}: not a JSON record ({err.msg})") from None
    return records


def epoch_rows(records: list[dict]) -> list[dict]:
    """One row per epoch record: epoch, view_size, loss, val_top1 (None without a probe),
    knn (None unless evaluated after that epoch; the final kNN on the last row), flops (None for
    older runs), train_min (the summed per-epoch training seconds: steps and data only) and
    wall_min (since the start of the first epoch, so probe evaluations count too)."""
    epochs = [r for r in records if r.get("kind") == "epoch"]
    if not epochs:
        return []
    start = epochs[0]["time"] - epochs[0]["seconds"]
    rows, train_s = [], 0.0
    for r in epochs:
        train_s += r["seconds"]
        rows.append({"epoch": r["epoch"], "view_size": r.get("view_size"), "loss": r["loss"],
                     "val_top1": r.get(VAL), "knn": r.get("knn_top1"), "flops": r.get("flops"),
                     "train_min": r.get("wall_s", train_s) / 60,
                     "wall_min": (r["time"] - start) / 60})
    final = final_record(records)
    if final is not None and "knn_top1" in final and rows[-1]["epoch"] == final.get("epoch"):
        rows[-1]["knn"] = final["knn_top1"]
    return rows


def reach(rows: list[dict], target: float, key: str = "knn") -> dict | None:
    """The first row whose accuracy `key` ("knn" or "val_top1") is >= target %: {"epoch",
    "flops", "train_min", "accuracy"}; None if no row gets there."""
    for r in rows:
        if r[key] is not None and r[key] >= target:
            return {"epoch": r["epoch"], "flops": r["flops"], "train_min": r["train_min"],
                    "accuracy": r[key]}
    return None


def reach_line(run: str, rows: list[dict], target: float) -> str:
    """"FLOPs and minutes to reach X% kNN" for one run, as one line."""
    hit = reach(rows, target)
    if hit is None:
        best = max((r["knn"] for r in rows if r["knn"] is not None), default=None)
        seen = "no kNN recorded" if best is None else f"best kNN {best:.2f}%"
        return f"{run}: FLOPs and minutes to reach {target:g}% kNN: not reached ({seen})"
    flops = "n/a" if hit["flops"] is None else f"{hit['flops'] / PETA:.4g} PFLOPs"
    return (f"{run}: FLOPs and minutes to reach {target:g}% kNN: {flops}, "
            f"{hit['train_min']:.1f} min (epoch {hit['epoch']}, kNN {hit['accuracy']:.2f}%)")


def final_record(records: list[dict]) -> dict | None:
    finals = [r for r in records if r.get("kind") == "final"]
    return finals[-1] if finals else None


def markdown(rows: list[dict], final: dict | None = None) -> str:
    lines = ["| epoch | view px | loss | online probe, val top-1 | kNN top-1 | PFLOPs | "
             "training min | wall min |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        acc = "" if r["val_top1"] is None else f"{r['val_top1']:.1f}%"
        knn = "" if r["knn"] is None else f"{r['knn']:.2f}%"
        flops = "n/a" if r["flops"] is None else f"{r['flops'] / PETA:.4g}"
        lines.append(f"| {r['epoch']} | {r['view_size'] or ''} | {r['loss']:.3f} | {acc} | "
                     f"{knn} | {flops} | {r['train_min']:.1f} | {r['wall_min']:.1f} |")
    if final is not None and "knn_top1" in final:
        text = f"\nFinal kNN top-1 {final['knn_top1']:.2f}%"
        if "knn_top1_random_init" in final:
            text += f", random init {final['knn_top1_random_init']:.2f}%"
        lines.append(text + ".")
    return "\n".join(lines)


def plot(curves: dict[str, list[dict]], path) -> None:
    """Accuracy against training petaFLOPs (left) and training minutes (right), one line per
    run (online probe, solid) and kNN points where evaluated (crosses), as a PNG (written to a
    temporary file and renamed). Runs without FLOPs are left off the left panel."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from jessl.files import write_atomic

    fig = Figure(figsize=(11.0, 4.0))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    for name, rows in curves.items():
        colour = None
        for ax, x_of in ((axes[0], lambda r: None if r["flops"] is None else r["flops"] / PETA),
                         (axes[1], lambda r: r["train_min"])):
            probe = [(x_of(r), r["val_top1"]) for r in rows
                     if r["val_top1"] is not None and x_of(r) is not None]
            knn = [(x_of(r), r["knn"]) for r in rows if r["knn"] is not None and
                   x_of(r) is not None]
            if probe:
                colour = ax.plot(*zip(*probe), marker="o", color=colour, label=name)[0].get_color()
            if knn:
                colour = ax.plot(*zip(*knn), "x--", color=colour,
                                 label=f"{name} (kNN)")[0].get_color()
    axes[0].set_xlabel("training compute (petaFLOPs)")
    axes[1].set_xlabel("training time (minutes)")
    axes[0].set_ylabel("top-1 (%): online probe (o), kNN (x)")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize="small")
    fig.tight_layout()
    write_atomic(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=100))


def main(argv=None) -> int:
    import argparse
    p = argparse.ArgumentParser(prog="jessl curve", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="run folders (train.out) holding metrics.jsonl")
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="also draw probe accuracy against wall time to this file")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.add_argument("--reach", type=float, action="append", default=[], metavar="X",
                   help="print the FLOPs and training minutes to reach X%% kNN (repeatable)")
    args = p.parse_args(argv)
    out = {}
    for run in args.runs:
        try:
            records = read_metrics(run)
        except (FileNotFoundError, ValueError) as err:
            print(f"jessl curve: error: {err}", file=sys.stderr)
            return 1
        out[run] = {"epochs": epoch_rows(records), "final": final_record(records)}
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        for run, r in out.items():
            print(f"## {run}\n\n{markdown(r['epochs'], r['final'])}\n")
        for target in args.reach:
            for run, r in out.items():
                print(reach_line(run, r["epochs"], target))
    if args.plot:
        plot({run: r["epochs"] for run, r in out.items()}, args.plot)
        if not args.json:
            print(f"plot: {args.plot}")
    return 0
