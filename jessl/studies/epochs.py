"""Probes over the epochs of one run (FFCV-SSL Figure 8): the online probe beside offline probes.

    jessl report runs/studies/probes/base --over-epochs --plot probes.png

reads, for every epoch of RUN:

- the online linear probe's test accuracy that the trainer logged (`probe/backbone_val_top1` of
  the epoch's record in RUN/metrics.jsonl: a linear layer trained beside the network, on the
  detached features of the training views);
- the offline probes of that epoch's checkpoint, from `RUN/eval-epoch-NN/report.json`, which
  `jessl eval suite --checkpoint RUN/checkpoints/epoch-00NN.pt ... --out RUN/eval-epoch-NN`
  writes (docs/studies.md, study 4): kNN, linear, MLP best and last epoch of the probe.

and prints one row an epoch, the Pearson correlation of the online probe with the offline
linear one over the epochs (the paper's "well correlated"), and how often the MLP's best epoch
beats its last (the paper's "it overfits"); `--plot` draws the curves.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from jessl.errors import UserError
from jessl.files import write_atomic
from jessl.train.curve import read_metrics

ONLINE = "probe/backbone_val_top1"  # the trainer's per-epoch record (train/probe.py)
COLUMNS = ("online", "knn", "linear", "mlp_best", "mlp_last")  # top-1 %, one row an epoch
EVAL_DIR = re.compile(r"eval-epoch-(\d+)$")


def offline(report: Path, model: str | None = None) -> dict:
    """{knn, linear, mlp_best, mlp_last} top-1 of the checkpoint's rows of a suite report.json
    (the trained network's, not the random-init baseline's; its first dataset)."""
    try:
        data = json.loads(report.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"{report}: not a readable `jessl eval suite` report ({err})") from err
    rows = [r for r in data.get("rows", []) if r.get("metric") == "top1"
            and r.get("model") != data.get("baseline", "random-init")]
    if not rows:
        return {}
    dataset = rows[0]["dataset"]
    out = {}
    for r in rows:
        if r["dataset"] != dataset:
            continue
        probe = r["probe"]
        if probe.startswith("knn") and "knn" not in out:  # the first k the suite ran
            out["knn"] = r["value"]
        elif probe in ("linear", "mlp best", "mlp last"):
            out[probe.replace(" ", "_")] = r["value"]
    return out


def collect(run_dir) -> list[dict]:
    """One row an epoch: {"epoch", "online", "knn", "linear", "mlp_best", "mlp_last"} (None where
    a number is missing)."""
    run = Path(run_dir)
    rows = {}
    for record in read_metrics(run):
        if record.get("kind") == "epoch" and ONLINE in record:
            rows.setdefault(int(record["epoch"]), {})["online"] = record[ONLINE]
    for folder in sorted(run.glob("eval-epoch-*")):
        m = EVAL_DIR.search(folder.name)
        if m and (folder / "report.json").is_file():
            rows.setdefault(int(m.group(1)), {}).update(offline(folder / "report.json"))
    if not rows:
        raise UserError(f"{run}: no epoch records with an online probe ({ONLINE}) and no "
                        f"eval-epoch-NN/report.json folders")
    return [{"epoch": e, **{c: rows[e].get(c) for c in COLUMNS}} for e in sorted(rows)]


def pearson(xs: list[float], ys: list[float]) -> float | None:
    """Pearson's r of paired values, None for fewer than 3 pairs or a constant side."""
    pairs = [(x, y) for x, y in zip(xs, ys) if x is not None and y is not None]
    if len(pairs) < 3:
        return None
    mx = sum(x for x, _ in pairs) / len(pairs)
    my = sum(y for _, y in pairs) / len(pairs)
    sxy = sum((x - mx) * (y - my) for x, y in pairs)
    sxx = sum((x - mx) ** 2 for x, _ in pairs)
    syy = sum((y - my) ** 2 for _, y in pairs)
    return None if sxx == 0 or syy == 0 else sxy / math.sqrt(sxx * syy)


def summary(rows: list[dict]) -> dict:
    """The paper's two claims, as numbers: online-vs-offline-linear correlation, MLP overfitting."""
    mlp = [(r["mlp_best"], r["mlp_last"]) for r in rows
           if r["mlp_best"] is not None and r["mlp_last"] is not None]
    return {"pearson_online_linear": pearson([r["online"] for r in rows],
                                             [r["linear"] for r in rows]),
            "mlp_best_above_last": sum(b > last for b, last in mlp), "mlp_epochs": len(mlp),
            "mlp_minus_linear": _mean([r["mlp_best"] - r["linear"] for r in rows
                                       if r["mlp_best"] is not None and r["linear"] is not None])}


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def markdown(rows: list[dict]) -> str:
    def fmt(v):
        return "-" if v is None else f"{v:.2f}"
    lines = ["| epoch | online linear | kNN | offline linear | MLP best | MLP last |",
             "|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['epoch']} | " + " | ".join(fmt(r[c]) for c in COLUMNS) + " |" for r in rows]
    s = summary(rows)
    r = s["pearson_online_linear"]
    lines += ["", f"Pearson r (online vs offline linear, over epochs): {fmt(r)}",
              f"MLP best epoch above its last epoch: {s['mlp_best_above_last']} of "
              f"{s['mlp_epochs']} checkpoints; MLP (best) minus offline linear, mean: "
              f"{fmt(s['mlp_minus_linear'])} points"]
    return "\n".join(lines)


def plot(rows: list[dict], path) -> Path:
    """Top-1 over epochs, one line a probe; written atomically."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    labels = {"online": "online linear", "knn": "kNN", "linear": "offline linear",
              "mlp_best": "MLP (best epoch)", "mlp_last": "MLP (last epoch)"}
    for c in COLUMNS:
        pts = [(r["epoch"], r[c]) for r in rows if r[c] is not None]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=labels[c],
                    linestyle="--" if c == "mlp_last" else "-")
    ax.set_xlabel("epoch")
    ax.set_ylabel("top-1 (%)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    out = write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
    return out
