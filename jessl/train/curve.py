"""A run's learning curve from its metrics.jsonl: accuracy against training and wall time.

`jessl curve RUN [RUN ...]` prints one markdown row per epoch (view size, loss, online-probe
accuracy, cumulative minutes) and the final kNN, and with `--plot` draws probe accuracy against
wall time for every run on one axis: the curve the recipes in docs/ quote.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

VAL = "probe/backbone_val_top1"  # the online probe on the validation file (trainer.py)


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
    train_min (the summed per-epoch training seconds: steps and data only) and wall_min (since
    the start of the first epoch, so probe evaluations count too)."""
    epochs = [r for r in records if r.get("kind") == "epoch"]
    if not epochs:
        return []
    start = epochs[0]["time"] - epochs[0]["seconds"]
    rows, train_s = [], 0.0
    for r in epochs:
        train_s += r["seconds"]
        rows.append({"epoch": r["epoch"], "view_size": r.get("view_size"), "loss": r["loss"],
                     "val_top1": r.get(VAL), "train_min": train_s / 60,
                     "wall_min": (r["time"] - start) / 60})
    return rows


def final_record(records: list[dict]) -> dict | None:
    finals = [r for r in records if r.get("kind") == "final"]
    return finals[-1] if finals else None


def markdown(rows: list[dict], final: dict | None = None) -> str:
    lines = ["| epoch | view px | loss | online probe, val top-1 | training min | wall min |",
             "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        acc = "" if r["val_top1"] is None else f"{r['val_top1']:.1f}%"
        lines.append(f"| {r['epoch']} | {r['view_size'] or ''} | {r['loss']:.3f} | {acc} | "
                     f"{r['train_min']:.1f} | {r['wall_min']:.1f} |")
    if final is not None and "knn_top1" in final:
        text = f"\nFinal kNN top-1 {final['knn_top1']:.2f}%"
        if "knn_top1_random_init" in final:
            text += f", random init {final['knn_top1_random_init']:.2f}%"
        lines.append(text + ".")
    return "\n".join(lines)


def plot(curves: dict[str, list[dict]], path) -> None:
    """Online-probe validation accuracy against wall minutes, one line per run, as a PNG
    (written to a temporary file and renamed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from jessl.files import write_atomic

    fig = Figure(figsize=(6.0, 4.0))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for name, rows in curves.items():
        pts = [(r["wall_min"], r["val_top1"]) for r in rows if r["val_top1"] is not None]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=name)
    ax.set_xlabel("wall time (minutes)")
    ax.set_ylabel("online linear probe, val top-1 (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    write_atomic(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=100))


def main(argv=None) -> int:
    import argparse
    p = argparse.ArgumentParser(prog="jessl curve", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="run folders (train.out) holding metrics.jsonl")
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="also draw probe accuracy against wall time to this file")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
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
    if args.plot:
        plot({run: r["epochs"] for run, r in out.items()}, args.plot)
        if not args.json:
            print(f"plot: {args.plot}")
    return 0
