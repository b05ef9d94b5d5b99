"""Evaluation results -> report.md (a table), report.json (the rows) and report.png (bars).

A row is one number: {"model": checkpoint or label, "dataset", "probe", "metric", "value"}.
The random-init baseline is a model like any other, named `baseline`; the table puts its column
first and gives each trained model a delta column beside it, so "how much did SSL buy" reads off
one line. Every file is written to a temporary name in out_dir and renamed over the old one, so
a reader never sees half a report.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path

from jessl.files import write_atomic

ROW_KEYS = ("model", "dataset", "probe", "metric", "value")
BASELINE = "random-init"  # the model label of the untrained backbone's rows


def _check_rows(rows: Iterable[dict]) -> list[dict]:
    rows = [dict(r) for r in rows]
    seen = set()
    for r in rows:
        missing = [k for k in ROW_KEYS if k not in r]
        if missing:
            raise ValueError(f"report row {r} lacks {missing}; rows need {ROW_KEYS}")
        key = tuple(r[k] for k in ROW_KEYS[:-1])
        if key in seen:  # a silent overwrite would hide a wrongly labelled run
            raise ValueError(f"two report rows for {dict(zip(ROW_KEYS, key))}")
        seen.add(key)
        v = r["value"]
        r["value"] = None if v is None or not math.isfinite(float(v)) else float(v)
    return rows


def _ordered(values: Iterable) -> list:
    return list(dict.fromkeys(values))  # unique, in order of first appearance


def _models(rows: list[dict], baseline: str) -> list[str]:
    models = _ordered(r["model"] for r in rows)
    return ([baseline] if baseline in models else []) + [m for m in models if m != baseline]


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def markdown_table(rows: list[dict], baseline: str = BASELINE) -> str:
    """Rows -> a markdown table: one line per (dataset, probe, metric), one column per model."""
    models = _models(rows, baseline)
    trained = [m for m in models if m != baseline]
    cell = {(r["model"], r["dataset"], r["probe"], r["metric"]): r["value"] for r in rows}
    header = ["dataset", "probe", "metric"]
    if baseline in models:
        header.append(baseline)
    for m in trained:
        header += [m, f"Δ {m}"] if baseline in models else [m]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for dataset, probe, metric in _ordered((r["dataset"], r["probe"], r["metric"]) for r in rows):
        base = cell.get((baseline, dataset, probe, metric))
        line = [str(dataset), str(probe), str(metric)]
        if baseline in models:
            line.append(_fmt(base))
        for m in trained:
            v = cell.get((m, dataset, probe, metric))
            line.append(_fmt(v))
            if baseline in models:
                line.append("–" if v is None or base is None else f"{v - base:+.2f}")
        lines.append("| " + " | ".join(line) + " |")
    return "\n".join(lines) + "\n"


def _write_text(path: Path, text: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    write_atomic(path, write)


def plot_bars(rows: list[dict], path: Path, baseline: str = BASELINE) -> None:
    """Rows -> a PNG: one panel per metric, bars grouped by (dataset, probe), one bar per model."""
    # Figure + FigureCanvasAgg instead of pyplot: no global backend switch, no open-figure registry.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    models = _models(rows, baseline)
    metrics = _ordered(r["metric"] for r in rows)
    cell = {(r["model"], r["dataset"], r["probe"], r["metric"]): r["value"] for r in rows}
    fig = Figure(figsize=(max(6.0, 1.2 * len(rows) / max(len(metrics), 1) + 2), 3.2 * len(metrics)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(metrics), 1, squeeze=False)[:, 0]
    width = 0.8 / max(len(models), 1)
    for ax, metric in zip(axes, metrics):
        groups = _ordered((r["dataset"], r["probe"]) for r in rows if r["metric"] == metric)
        for j, model in enumerate(models):
            xs = [i + (j - (len(models) - 1) / 2) * width for i in range(len(groups))]
            ys = [cell.get((model, d, p, metric)) for d, p in groups]
            ax.bar([x for x, y in zip(xs, ys) if y is not None], [y for y in ys if y is not None],
                   width, label=model, color="0.7" if model == baseline else f"C{j % 10}",
                   hatch="//" if model == baseline else None)
        ax.set_xticks(range(len(groups)), [f"{d}\n{p}" for d, p in groups])
        ax.set_ylabel(str(metric))
        ax.legend(fontsize="small")
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))


def write_report(results: Iterable[dict], out_dir, baseline: str = BASELINE) -> dict[str, Path]:
    """Rows {model, dataset, probe, metric, value} -> out_dir/report.{md,json,png}; returns the paths."""
    rows = _check_rows(results)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "report.md", "json": out / "report.json", "png": out / "report.png"}
    note = "" if any(r["model"] == baseline for r in rows) else \
        f"\nNo `{baseline}` rows: no baseline to compare with.\n"
    _write_text(paths["md"], "# Evaluation report\n\n" + markdown_table(rows, baseline) + note)
    _write_text(paths["json"], json.dumps({"baseline": baseline, "models": _models(rows, baseline),
                                           "rows": rows}, indent=1) + "\n")
    plot_bars(rows, paths["png"], baseline)
    return paths
