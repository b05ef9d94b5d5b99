"""One network on one dataset through one probe, and the suite: every probe, every dataset,
the trained network beside its random-init twin, written as a report.

Features are extracted once per (network, records) through `extract_features` and its disk
cache, then every probe is a function of them. RankMe is measured on training-record features
(up to RANKME_SAMPLES of them), as Garrido et al. measure it on the pretraining data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch

from jessl.config import EvalConfig, FeatureConfig, SuiteConfig
from jessl.eval.datasets import EvalData, EvalError
from jessl.eval.knn import KS, TEMPERATURE, knn_accuracy
from jessl.eval.models import EvalModel, baseline_of
from jessl.eval.probes import LINEAR_EPOCHS, MLP_EPOCHS, MLP_HIDDEN, VAL_FRACTION
from jessl.eval.rankme import alpha_req, rankme
from jessl.eval.report import BASELINE

PROBES = SuiteConfig.probes  # every probe run_probe knows: the suite runs them all by default
RANKME_SAMPLES = EvalConfig.rankme_samples  # rows RankMe is computed on: 25,600 (the trainer's)


@dataclass
class Settings:
    """How features are extracted and the probes run; defaults are the single commands',
    those of `jessl eval`'s options (jessl.config's FeatureConfig and probe configs)."""
    ks: tuple[int, ...] = KS
    temperature: float = TEMPERATURE
    linear_epochs: int = LINEAR_EPOCHS
    mlp_epochs: int = MLP_EPOCHS
    mlp_hidden: tuple[int, ...] = MLP_HIDDEN
    val_fraction: float = VAL_FRACTION
    probe_train_per_class: int | None = None  # linear/MLP probes: subsample the train records
    seed: int = FeatureConfig.seed  # splits, subsamples, probe initialisation and batch order
    views: str | None = FeatureConfig.views  # evaluation view preset; None: by image size
    batch_size: int = FeatureConfig.batch_size  # images per forward pass extracting features
    threads: int | None = FeatureConfig.threads  # loader threads; None: all cores
    cache_dir: object = None  # feature cache folder; None: off
    # NHWC images and weights: small_cnn extracts 1.4x faster on this project's 2-core CPU
    # (479 vs 336 images/s, batch 256, one run under load ~4); features equal up to rounding
    channels_last: bool = True
    device: str = "cpu"  # where the backbone extracts features (cpu, cuda, cuda:N); probes run on the CPU
    projector: bool = True  # also kNN and RankMe of the projector's embeddings, when there is one
    timings: dict = field(default_factory=dict)  # seconds per stage, filled as the suite runs


class Features(NamedTuple):
    train_x: torch.Tensor  # (N, F)
    train_y: torch.Tensor  # (N,)
    test_x: torch.Tensor  # (M, F)
    test_y: torch.Tensor  # (M,)


def features(net: torch.nn.Module, data: EvalData, s: Settings) -> Features:
    """net over the train and test records of `data`, through the feature cache."""
    from jessl.data.facts import eval_views
    from jessl.eval.features import extract_features
    views = s.views or eval_views(data.train)  # one view for both: the train file's image size
    net = net.to(s.device)  # in place; the cache key is the weights' values, wherever they are
    if s.channels_last:
        net = net.to(memory_format=torch.channels_last)  # in place; the cache key is unchanged
    out = []
    for path, idx in ((data.train, data.train_idx), (data.test, data.test_idx)):
        x, y = extract_features(net, path, views, s.batch_size, s.threads, indices=idx,
                                cache_dir=s.cache_dir, channels_last=s.channels_last)
        labeled = y >= 0  # -1: an image without a label, which no probe can use
        if not labeled.any():
            raise EvalError(f"{path} has no labels: the probes need a labeled dataset file")
        out += [x[labeled], y[labeled]] if not labeled.all() else [x, y]
    return Features(*out)


def run_probe(probe: str, f: Features, s: Settings) -> dict:
    """One probe on extracted features -> its results (accuracies in %, RankMe, settings)."""
    if probe == "knn":
        return knn_accuracy(f.train_x, f.train_y, f.test_x, f.test_y, ks=s.ks,
                            temperature=s.temperature)
    if probe == "rankme":
        x = _rows(f.train_x, RANKME_SAMPLES, s.seed)
        try:
            alpha = alpha_req(x)
        except ValueError:  # too few non-zero eigenvalues for the fit (tiny or collapsed)
            alpha = None
        return {"rankme": rankme(x), "alpha_req": alpha, "rows": len(x), "dim": x.shape[1]}
    from jessl.eval.probes import linear_probe, mlp_probe
    x, y = f.train_x, f.train_y
    if s.probe_train_per_class is not None:
        from jessl.eval.datasets import subsample_per_class
        keep = torch.from_numpy(subsample_per_class(y.numpy(), None, s.probe_train_per_class,
                                                    s.seed))
        x, y = x[keep], y[keep]
    if probe == "linear":
        return linear_probe(x, y, f.test_x, f.test_y, epochs=s.linear_epochs,
                            val_fraction=s.val_fraction, seed=s.seed).to_dict()
    if probe == "mlp":
        return mlp_probe(x, y, f.test_x, f.test_y, hidden=s.mlp_hidden, epochs=s.mlp_epochs,
                         val_fraction=s.val_fraction, seed=s.seed).to_dict()
    raise EvalError(f"unknown probe {probe!r}; known: {', '.join(PROBES)}")


def result_rows(model: str, dataset: str, probe: str, result: dict, tag: str = "") -> list[dict]:
    """A probe's results -> report rows {model, dataset, probe, metric, value}."""
    def row(p, metric, value):
        return {"model": model, "dataset": dataset, "probe": p + tag, "metric": metric,
                "value": value}
    if probe == "knn":
        return [row(f"knn k={k[1:].split('_')[0]}", k.split("_")[1], v) for k, v in result.items()]
    if probe == "rankme":
        return [row("rankme", "rankme", result["rankme"]),
                row("rankme", "alpha_req", result["alpha_req"])]
    if probe == "linear":
        return [row("linear", "top1", result["top1"]), row("linear", "top5", result["top5"])]
    if probe == "mlp":
        return [row(f"mlp {which}", metric, result[f"{metric}_{which}"])
                for which in ("best", "last") for metric in ("top1", "top5")]
    raise EvalError(f"unknown probe {probe!r}")


def evaluate(model: EvalModel, data: EvalData, probes, s: Settings, say=print) -> list[dict]:
    """Every probe of one network on one dataset -> report rows (plus projector rows)."""
    rows = []
    start = time.perf_counter()
    f = features(model.backbone, data, s)
    _timed(s, "features", start)
    say(f"  {model.label}: {f.train_x.shape[1]} features of {len(f.train_y):,} + "
        f"{len(f.test_y):,} images ({time.perf_counter() - start:.0f} s)")
    for probe in probes:
        t = time.perf_counter()
        result = run_probe(probe, f, s)
        _timed(s, probe, t)
        rows += result_rows(model.label, data.name, probe, result)
        say(f"  {model.label}: {probe} {_brief(probe, result)} ({time.perf_counter() - t:.0f} s)")
    if s.projector and model.projector is not None and ({"knn", "rankme"} & set(probes)):
        t = time.perf_counter()
        # the projector maps features to embeddings: no second pass over the images
        g = Features(project(model.projector, f.train_x), f.train_y,
                     project(model.projector, f.test_x), f.test_y)
        for probe in [p for p in probes if p in ("knn", "rankme")]:
            result = run_probe(probe, g, s)
            rows += result_rows(model.label, data.name, probe, result, tag=" (projector)")
            say(f"  {model.label}: {probe} of projector embeddings {_brief(probe, result)}")
        _timed(s, "projector", t)
    return rows


def run_suite(model: EvalModel, datasets: list[EvalData], s: Settings, probes=PROBES,
              say=print) -> list[dict]:
    """model and its random-init twin (same architecture, stem, seed and projector) on every
    dataset -> report rows. A model that is itself the random init is evaluated once."""
    models = [model] if model.label == BASELINE else [baseline_of(model), model]
    rows = []
    for data in datasets:
        say(data.describe())
        for m in models:
            rows += evaluate(m, data, probes, s, say)
    return rows


@torch.no_grad()
def project(head: torch.nn.Module, x: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """features (N, F) -> head(features) (N, D) in eval mode (BatchNorm: running statistics)."""
    head.eval()
    return torch.cat([head(x[i:i + chunk]).float() for i in range(0, len(x), chunk)])


def _rows(x: torch.Tensor, limit: int, seed: int) -> torch.Tensor:
    """At most `limit` rows of x, drawn with seed (all, in order, when there are fewer)."""
    if len(x) <= limit:
        return x
    pick = np.sort(np.random.default_rng(seed).choice(len(x), limit, replace=False))
    return x[torch.from_numpy(pick)]


def _timed(s: Settings, stage: str, start: float) -> None:
    s.timings[stage] = s.timings.get(stage, 0.0) + time.perf_counter() - start


def _brief(probe: str, r: dict) -> str:
    if probe == "knn":
        return ", ".join(f"{k} {v:.2f}%" for k, v in r.items() if k.endswith("top1"))
    if probe == "rankme":
        alpha = "–" if r["alpha_req"] is None else f"{r['alpha_req']:.3f}"
        return f"RankMe {r['rankme']:.1f}, alpha-ReQ {alpha}"
    if probe == "linear":
        return f"top-1 {r['top1']:.2f}% (lr {r['lr']}, wd {r['weight_decay']})"
    if probe == "mlp":
        return f"top-1 {r['top1_best']:.2f}% best epoch {r['best_epoch'] + 1}, " \
               f"{r['top1_last']:.2f}% last"
    return str(r)
