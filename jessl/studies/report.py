"""`jessl report`: every run of a sweep (or any run folders) as a table of its final metric and
cost, and the study's figure: a line over one key (mean +- std over seeds) or a heatmap of two.

Each run is read from its folder alone (config.yaml, metrics.jsonl / results.json, and for the
offline linear probe eval/report.json of `jessl eval suite --out RUN/eval`), so the report can be
rebuilt at any time, also while a sweep is still running. The metrics:

    knn     final kNN top-1 on the val file (`knn_top1`); random init: `knn_top1_random_init`
            (logged when eval.baseline is on, as the recipes do)
    online  the last epoch's online linear probe on the val file (`probe/backbone_val_top1`)
    linear  the offline linear probe's top-1 of `jessl eval suite`; random init: its random-init row
    rankme  RankMe of the backbone's features of the val file (`rankme_features`: the
            representation, as Garrido et al. 2023 rank it), else of the last embeddings (`rankme`)

With `select_by` (`jessl report --select-by rankme`) the report also reads a second metric
and does label-free model selection as RankMe is used (Garrido et al. 2023; the SSL Cookbook's
Table 3): within each seed, the setting that the second metric ranks highest against the one
the first metric (the labels') ranks highest, and how much of the first metric that choice
loses; then the same on the means over seeds.

Cost: training minutes (the summed epoch times: steps and data, no evaluation), wall minutes
(from the first epoch's start to the final record: per-epoch probes and the final kNN count),
and `flops` / `wall_s` where the trainer logs them (older runs lack both; their columns are
then left out).
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import yaml

from jessl.files import write_atomic
from jessl.studies.grid import SEED_KEY, StudyError, value_text
from jessl.studies.sweep import MANIFEST, RUNTIME_KEYS, config_value, read_manifest, run_status
from jessl.train.curve import VAL, epoch_rows, final_record, read_metrics

# metric -> (its key in a run's final record, the random-init baseline's key or None)
METRIC_KEYS = {"knn": ("knn_top1", "knn_top1_random_init"),
               "linear": ("linear top1", "random-init"), "online": (VAL, None), "rankme": ("rankme_features", None),
               # the projector's embeddings of the last epoch's training views (the trainer's
               # `rankme`): study 6 found it, not the features', tracking kNN at CPU scale
               "rankme_embeddings": ("rankme", None)}
METRICS = tuple(METRIC_KEYS)  # what a study file's `metric` and `jessl report --metric` name
# never "varied keys" of a report: every run has its own folder, and these do not change results
_IGNORED = {"train.out", "train.resume"} | {f"{s}.{f}" for s, f in RUNTIME_KEYS}


# --- runs -> rows -------------------------------------------------------------------------

def find_runs(paths) -> list[tuple[Path, dict | None, str | None]]:
    """[(run folder, its overrides from a sweep manifest or None, its manifest status or None)]
    for sweep folders, run folders and folders of run folders, in the order given."""
    found = []
    for path in map(Path, paths):
        manifest = read_manifest(path) if (path / MANIFEST).is_file() else None
        if manifest is not None:
            found += [(path / p["name"], p["overrides"], p["status"])
                      for p in manifest["points"]]
        elif (path / "config.yaml").is_file() or (path / "metrics.jsonl").is_file():
            found.append((path, None, None))
        elif path.is_dir():
            children = sorted(c for c in path.iterdir() if (c / "config.yaml").is_file())
            if not children:
                raise FileNotFoundError(f"{path}: no {MANIFEST}, config.yaml or run folders in it")
            found += [(c, None, None) for c in children]
        else:
            raise FileNotFoundError(f"{path} does not exist")
    return found


def flat_config(run_dir: Path) -> dict:
    """{"section.field": value} of RUN/config.yaml ({} when absent)."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        return {}
    d = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return {f"{s}.{f}": v for s, sec in d.items() for f, v in (sec or {}).items()}


def run_row(run_dir: Path, metric: str, status: str | None = None,
            dataset: str | None = None, select_by: str | None = None) -> dict:
    """One run's final metric, random-init baseline, progress and cost. `status` is the sweep
    manifest's: the folder decides done / partial / pending, the manifest adds failed and
    running. `dataset`: which dataset of eval/report.json the linear metric reads (its first)."""
    records = read_metrics(run_dir) if (run_dir / "metrics.jsonl").is_file() else []
    final = final_record(records) or _results(run_dir)
    epochs = epoch_rows(records)
    last = epochs[-1] if epochs else {}
    last_epoch = ([r for r in records if r.get("kind") == "epoch"] or [{}])[-1]
    value, baseline = metric_value(run_dir, final, last_epoch, metric, dataset)
    cost = final if final else last_epoch  # flops / wall_s: totals, or so far
    wall = last.get("wall_min")
    if wall is not None and "time" in (final or {}):  # the final kNN and RankMe count too
        wall += (final["time"] - last_epoch["time"]) / 60
    on_disk = run_status(run_dir)
    if on_disk != "done" and status in ("failed", "running", "submitted"):
        on_disk = status  # what the sweep knows and the folder cannot say
    row = {"run": run_dir.name, "path": str(run_dir), "status": on_disk, "value": _number(value),
           "random_init": _number(baseline), "epochs": last.get("epoch"),
           "train_min": last.get("train_min"), "wall_min": wall,
           "flops": _number(cost.get("flops")), "wall_s": _number(cost.get("wall_s"))}
    if select_by:
        row["select"] = _number(metric_value(run_dir, final, last_epoch, select_by, dataset)[0])
    return row


def metric_value(run_dir: Path, final: dict | None, last_epoch: dict, metric: str,
                 dataset: str | None = None) -> tuple:
    """(value, random-init baseline or None) of `metric` for one run: from its final record,
    the last epoch record (the online probe so far) or, for linear, RUN/eval/report.json."""
    key, base_key = METRIC_KEYS[metric]
    if metric == "linear":
        return _linear(run_dir, dataset)
    value = (final or {}).get(key, last_epoch.get(key) if metric == "online" else None)
    if metric == "rankme" and value is None:  # no val file: the embeddings' RankMe
        value = (final or {}).get("rankme")
    return value, (final or {}).get(base_key) if base_key else None


def _results(run_dir: Path) -> dict | None:
    path = run_dir / "results.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _linear(run_dir: Path, dataset: str | None = None) -> tuple[float | None, float | None]:
    """(trained, random-init) linear-probe top-1 on `dataset` (default: the first) from
    RUN/eval/report.json."""
    from jessl.eval.report import BASELINE
    path = run_dir / "eval" / "report.json"
    if not path.is_file():
        return None, None
    rows = [r for r in json.loads(path.read_text(encoding="utf-8"))["rows"]
            if r["probe"] == "linear" and r["metric"] == "top1"]
    if not rows:
        return None, None
    dataset = dataset or rows[0]["dataset"]
    value = next((r["value"] for r in rows if r["dataset"] == dataset and r["model"] != BASELINE),
                 None)
    base = next((r["value"] for r in rows if r["dataset"] == dataset and r["model"] == BASELINE),
                None)
    return value, base


def _number(v):
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) \
        and math.isfinite(v) else None


def varied_keys(configs: list[dict], overrides: list[dict | None]) -> list[str]:
    """The keys the runs differ in: a sweep's grid keys, in grid order, else every config
    field whose value is not the same in all runs (run folders, runtime fields left out)."""
    keys = []
    for o in overrides:
        keys += [k for k in (o or {}) if k not in keys]
    if keys:
        return keys
    fields = sorted({k for c in configs for k in c} - _IGNORED)
    return [k for k in fields if len({value_text(_get(c, k)) for c in configs}) > 1]


def _get(flat: dict, key: str):
    """flat_config's value of "section.field", its default where the run's config predates it."""
    if key in flat:
        return flat[key]
    section, _, field = key.partition(".")
    return config_value({}, section, field)


# --- the report ---------------------------------------------------------------------------

def build(paths, metric: str | None = None, x: str | None = None, y: str | None = None,
          dataset: str | None = None, select_by: str | None = None) -> dict:
    """Rows for every run under `paths` and their groups over seeds (mean, std, n); metric, x
    and y default to the sweep manifest's (its study file's). With `select_by`, a second
    metric's label-free choice against the first's (`selection`)."""
    paths = [Path(p) for p in paths]
    manifests = [read_manifest(p) for p in paths if (p / MANIFEST).is_file()]
    study = manifests[0] if manifests else {}
    metric = metric or study.get("metric") or "knn"
    for name in (metric, select_by or metric):
        if name not in METRIC_KEYS:
            raise StudyError(f"unknown metric {name!r}; known: {', '.join(METRIC_KEYS)}")
    if select_by == metric:
        raise StudyError(f"--select-by {select_by} is the metric itself: name the label-free "
                         f"one (rankme, rankme_embeddings) beside --metric knn, linear or online")
    x = x or study.get("x")
    y = y or (study.get("y") if x == study.get("x") else None)
    runs = find_runs(paths)
    configs = [flat_config(run_dir) for run_dir, _, _ in runs]
    keys = varied_keys(configs, [o for _, o, _ in runs])
    for key in (x, y):
        if key and configs and all(key not in c for c in configs):
            raise StudyError(f"--x/--y {key}: no run's config has this field (section.field)")
    rows = []
    for (run_dir, _, status), config in zip(runs, configs):
        row = run_row(run_dir, metric, status, dataset, select_by)
        shown = dict.fromkeys([*keys, *(k for k in (x, y) if k)])
        row["config"] = {k: config.get(k) for k in shown}
        rows.append(row)
    result = {"metric": metric, "key": METRIC_KEYS[metric][0], "keys": keys, "x": x, "y": y,
              "random_init": _mean([r["random_init"] for r in rows]),
              "runs": rows, "groups": groups(rows, [k for k in keys if k != SEED_KEY])}
    if select_by:
        result["select_by"] = select_by
        result["selection"] = selection(rows, [k for k in keys if k != SEED_KEY])
    return result


def groups(rows: list[dict], keys: list[str]) -> list[dict]:
    """Runs that differ only in their seed -> {config, mean, std, n, runs} (std: sample, n > 1)."""
    out: dict[tuple, dict] = {}
    for r in rows:
        ident = tuple(value_text(r["config"].get(k)) for k in keys)
        g = out.setdefault(ident, {"config": {k: r["config"].get(k) for k in keys},
                                   "values": [], "runs": []})
        g["runs"].append(r["run"])
        if r["value"] is not None:
            g["values"].append(r["value"])
    result = []
    for g in out.values():
        v = g.pop("values")
        g.update(mean=_mean(v), std=statistics.stdev(v) if len(v) > 1 else None, n=len(v))
        result.append(g)
    return result


def selection(rows: list[dict], keys: list[str]) -> list[dict]:
    """Label-free model selection over the settings of `keys`: for each seed (the rows'
    train.seed; one pass when the seed is not varied), the setting whose `select` value is the
    highest against the one whose `value` (the labels' metric) is, and the value the first
    choice loses; then the mean loss over seeds, and the same choice made on the means over
    seeds (a setting counts there only when it has both values on every seed). Rows lacking
    either value take no part."""
    def setting(r):
        return ", ".join(f"{k}={value_text(r['config'].get(k))}" for k in keys)

    def choose(label, candidates):
        chosen = max(candidates, key=lambda r: r["select"])
        best = max(candidates, key=lambda r: r["value"])
        return {"seed": label, "chosen": setting(chosen), "chosen_value": chosen["value"],
                "chosen_select": chosen["select"], "best": setting(best),
                "best_value": best["value"], "lost": best["value"] - chosen["value"],
                "settings": len(candidates)}

    usable = [r for r in rows if r["value"] is not None and r.get("select") is not None]
    by_seed: dict[str, list] = {}
    by_setting: dict[str, list] = {}
    for r in usable:
        seed = r["config"].get(SEED_KEY)
        by_seed.setdefault("all runs" if seed is None else value_text(seed), []).append(r)
        by_setting.setdefault(setting(r), []).append(r)
    out = [choose(seed, rs) for seed, rs in by_seed.items()]
    if len(out) > 1:
        out.append({"seed": "mean over seeds", "chosen": None,
                    "chosen_value": _mean([e["chosen_value"] for e in out]), "chosen_select": None,
                    "best": None, "best_value": _mean([e["best_value"] for e in out]),
                    "lost": _mean([e["lost"] for e in out]), "settings": None})
        means = [{"config": rs[0]["config"], "value": _mean([r["value"] for r in rs]),
                  "select": _mean([r["select"] for r in rs])}
                 for rs in by_setting.values() if len(rs) == len(by_seed)]
        if means:
            out.append(choose("means over seeds", means))
    return out


def _mean(values):
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def _fmt(v, digits: int = 2) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def markdown(result: dict) -> str:
    """The runs table (one line a run), then, when seeds repeat a setting, the mean +- std."""
    rows, keys, metric = result["runs"], result["keys"], result["metric"]
    extra = [k for k in ("flops", "wall_s") if any(r[k] is not None for r in rows)]
    header = ["run", *keys, "status", metric, "random init", "epochs", "train min", "wall min",
              *extra]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [r["run"], *(value_text(r["config"].get(k)) for k in keys), r["status"],
                 _fmt(r["value"]), _fmt(r["random_init"]), str(r["epochs"] or "–"),
                 _fmt(r["train_min"], 1), _fmt(r["wall_min"], 1)]
        cells += [("–" if r[k] is None else f"{r[k]:.3g}") for k in extra]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    if any(g["n"] > 1 for g in result["groups"]):
        gkeys = [k for k in keys if k != SEED_KEY]
        text += ("\n| " + " | ".join([*gkeys, f"{metric} mean", "std", "seeds"]) + " |\n|"
                 + "---|" * (len(gkeys) + 3) + "\n")
        for g in result["groups"]:
            text += "| " + " | ".join([*(value_text(g["config"][k]) for k in gkeys),
                                       _fmt(g["mean"]), _fmt(g["std"]), str(g["n"])]) + " |\n"
    best = max((g for g in result["groups"] if g["mean"] is not None), key=lambda g: g["mean"],
               default=None)
    if best is not None and len(result["groups"]) > 1:
        setting = ", ".join(f"{k}={value_text(v)}" for k, v in best["config"].items())
        text += f"\nHighest {metric}: {setting} ({best['mean']:.2f}).\n"
    if result.get("selection"):
        text += selection_markdown(result)
    if result["random_init"] is not None:
        text += f"\nRandom init ({metric}): {result['random_init']:.2f}.\n"
    elif metric == "knn":
        text += "\nNo random-init kNN in these runs (the trainer logs it with eval.baseline " \
                "true).\n"
    return text


def selection_markdown(result: dict) -> str:
    """The selection table: per seed, the label-free choice beside the labels' and the loss."""
    metric, by = result["metric"], result["select_by"]
    text = (f"\nChosen by {by} (no labels) against chosen by {metric}, per seed:\n\n"
            f"| seed | chosen by {by} | its {metric} | chosen by {metric} | its {metric} | "
            f"{metric} lost | settings compared |\n|---|---|---:|---|---:|---:|---:|\n")
    for e in result["selection"]:  # settings compared: fewer than the grid while a sweep runs
        text += (f"| {e['seed']} | {e['chosen'] or ''} | {_fmt(e['chosen_value'])} | "
                 f"{e['best'] or ''} | {_fmt(e['best_value'])} | {_fmt(e['lost'])} | "
                 f"{e['settings'] or ''} |\n")
    return text


def write_json(result: dict, path) -> Path:
    text = json.dumps(result, indent=1) + "\n"
    return write_atomic(Path(path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


# --- the figure ---------------------------------------------------------------------------

def plot(result: dict, path) -> Path:
    """`figure(result)` as a PNG, written to a temporary file and renamed."""
    fig = figure(result)
    return write_atomic(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=100))


def figure(result: dict):
    """A heatmap of the mean metric over (x, y), or mean +- std over x with one line per
    setting of the other keys; the random-init baseline marked (a dashed line, or the
    heatmap's title). Figure + Agg canvas, not pyplot: no global backend, no open figures."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    x, y = result["x"], result["y"]
    if not x:
        raise StudyError("--plot needs --x KEY (and --y KEY for a heatmap), or a sweep whose "
                         "study names x")
    fig = Figure(figsize=(6.4, 4.4))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    if y:
        _heatmap(fig, ax, result, x, y)
    else:
        _lines(ax, result, x)
    fig.tight_layout()
    return fig


def _axis(values: list) -> list:
    """Distinct values in plot order: sorted when all are numbers, else as first seen."""
    distinct = list(dict.fromkeys(values))
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in distinct):
        return sorted(distinct)
    return distinct


def _lines(ax, result: dict, x: str) -> None:
    others = [k for k in result["keys"] if k not in (x, SEED_KEY)]
    lines: dict[tuple, list] = {}
    for g in (g for g in groups(result["runs"], [x, *others]) if g["mean"] is not None):
        lines.setdefault(tuple(value_text(g["config"][k]) for k in others), []).append(g)
    numeric = True
    for i, (label, gs) in enumerate(lines.items()):
        xs = _axis([g["config"][x] for g in gs])
        numeric &= all(isinstance(v, (int, float)) for v in xs)
        by_x = {value_text(g["config"][x]): g for g in gs}
        pos = xs if numeric else list(range(len(xs)))
        mean = [by_x[value_text(v)]["mean"] for v in xs]
        std = [by_x[value_text(v)]["std"] or 0.0 for v in xs]
        name = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in zip(others, label)) or None
        ax.errorbar(pos, mean, yerr=std, marker="o", capsize=3, color=f"C{i % 10}", label=name)
        if not numeric:
            ax.set_xticks(pos, [value_text(v) for v in xs])
    if numeric and lines:
        xs = [g["config"][x] for gs in lines.values() for g in gs]
        if min(xs) > 0 and max(xs) / min(xs) >= 8:  # lr and batch grids are geometric
            ax.set_xscale("log")
            ax.minorticks_off()
        ticks = _axis(xs)
        ax.set_xticks(ticks, [value_text(v) for v in ticks])
    if result["random_init"] is not None:
        ax.axhline(result["random_init"], color="0.5", linestyle="--",
                   label=f"random init ({result['random_init']:.1f})")
    ax.set_xlabel(x)
    ax.set_ylabel(f"{result['metric']} ({result['key']})")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")


def _heatmap(fig, ax, result: dict, x: str, y: str) -> None:
    import numpy as np
    others = [k for k in result["keys"] if k not in (x, y, SEED_KEY)]
    if others:
        raise StudyError(f"a heatmap of {x} by {y}: the runs also differ in {', '.join(others)}; "
                         f"report a subset of the runs, or plot one key")
    gs = groups(result["runs"], [x, y])
    xs = _axis([g["config"][x] for g in gs])
    ys = _axis([g["config"][y] for g in gs])
    grid = np.full((len(ys), len(xs)), np.nan)
    for g in gs:
        if g["mean"] is not None:
            grid[ys.index(g["config"][y]), xs.index(g["config"][x])] = g["mean"]
    im = ax.imshow(grid, cmap="viridis", aspect="auto", origin="lower")
    fig.colorbar(im, ax=ax, label=f"{result['metric']} ({result['key']})")
    finite = grid[np.isfinite(grid)]
    middle = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for g in gs:
        if g["mean"] is not None:
            i, j = ys.index(g["config"][y]), xs.index(g["config"][x])
            text = f"{g['mean']:.1f}" + (f"\n±{g['std']:.1f}" if g["std"] is not None else "")
            ax.text(j, i, text, ha="center", va="center", fontsize="small",
                    color="black" if g["mean"] > middle else "white")
    labels = [value_text(v) for v in xs]
    # long values (projector shapes) would overlap side by side: slant them
    slant = max(map(len, labels)) * len(labels) > 48
    ax.set_xticks(range(len(xs)), labels, rotation=20 if slant else 0,
                  ha="right" if slant else "center")
    ax.set_yticks(range(len(ys)), [value_text(v) for v in ys])
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    if result["random_init"] is not None:
        ax.set_title(f"random init: {result['random_init']:.1f}", fontsize="small")
