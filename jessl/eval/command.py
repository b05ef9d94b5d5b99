"""`jessl eval knn | linear | mlp | rankme | suite`: probes of a frozen network from the command line.

    jessl eval knn --checkpoint runs/simclr --dataset cifar10
    jessl eval linear --weights resnet18.pt --backbone resnet18 --train a.jessl --test b.jessl
    jessl eval mlp --random-init --backbone small_cnn --train val.jessl --split-per-class 10
    jessl eval suite --checkpoint runs/simclr --datasets cifar10,tinyimagenet --out report/

The network: --checkpoint (a `jessl train` checkpoint or run folder), --weights with --backbone
(a plain state dict), or --random-init with --backbone (the baseline). The data: jessl dataset
files (`jessl convert X.npz X.jessl`), a registry name (cifar10, tinyimagenet: their .npz in
../shared/data are converted once into the cache), or NAME=TRAIN[:TEST].
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from jessl.config import (FeatureConfig, KnnProbeConfig, LinearProbeConfig, MlpProbeConfig,
                          SuiteConfig)
from jessl.errors import USER_ERRORS, print_error
from jessl.flags import add_flags, values
from jessl.eval.datasets import REGISTRY, EvalError

DATA_HELP = ("dataset files are written by `jessl convert` (e.g. `jessl convert "
             "../shared/data/cifar10_jpeg_test.npz cifar10_test.jessl`); an .npz given here "
             "is converted once into the cache folder")


# the dataclasses whose fields are each probe's own options (jessl.config); every probe also
# takes FeatureConfig's, in the "running" group
PROBE_CONFIGS = {"knn": (KnnProbeConfig,), "linear": (LinearProbeConfig,),
                 "mlp": (MlpProbeConfig,), "rankme": (), "suite": (KnnProbeConfig, SuiteConfig)}
PROBE_HELP = {
    "knn": "weighted kNN top-1/top-5 (DINO eval_knn.py)",
    "linear": "linear probe, lr and weight decay chosen on a train hold-out",
    "mlp": "MLP probe (best and last epoch)",
    "rankme": "RankMe and alpha-ReQ of the training-image features (no labels used)",
    "suite": "kNN, linear, MLP and RankMe on several datasets, beside the random-init "
             "baseline; writes report.md, report.json, report.png"}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jessl eval", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="probe", required=True)
    model, data, suite_data, common = _model_options(), _data_options(), \
        _suite_data_options(), _common_options()
    for probe, configs in PROBE_CONFIGS.items():
        p = sub.add_parser(probe, parents=[model, suite_data if probe == "suite" else data,
                                           common], help=PROBE_HELP[probe])
        if probe == "suite":
            p.add_argument("--out", required=True, metavar="DIR",
                           help="folder for the report files")
        if configs:
            group = p.add_argument_group(f"{probe} options")
            for cls in configs:
                add_flags(group, cls)
    return parser


def probe_configs(args) -> list:
    """FeatureConfig and the probe's own option dataclasses from parsed `args`, each validated
    (ConfigError names the option)."""
    return [cls(**values(args, cls)).validate()
            for cls in (FeatureConfig, *PROBE_CONFIGS[args.probe])]


class _Parser(argparse.ArgumentParser):
    """A bad option is one `jessl eval: error:` line and status 2, as `jessl train` does
    (subparsers are made of the same class, so theirs too)."""

    def error(self, message: str):
        print(f"jessl eval: error: {message}", file=sys.stderr)
        sys.exit(2)


def _model_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("the network (give one)")
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", metavar="CKPT", help="a `jessl train` checkpoint, or its "
                     "run folder (its newest checkpoint); backbone and stem from its config")
    src.add_argument("--weights", metavar="FILE.pt", help="a plain backbone state dict "
                     "(torchvision / timm style; an fc.* head and module./backbone. prefixes "
                     "are tolerated); needs --backbone")
    src.add_argument("--random-init", action="store_true",
                     help="the backbone at random initialisation (--seed): the baseline")
    g.add_argument("--backbone", metavar="NAME", help="architecture for --weights and "
                   "--random-init: resnet18, resnet34, resnet50, small_cnn or timm:<name>")
    g.add_argument("--cifar-stem", choices=("auto", "on", "off"), default="auto",
                   help="3x3 stride-1 stem for 32-64 px images; auto: from the checkpoint's "
                   "config or the weights, else from the images' size (default)")
    g.add_argument("--label", help="the model's name in the output (default: from the source)")
    return p


def _data_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("the data", DATA_HELP)
    g.add_argument("--train", metavar="FILE", help="dataset file the probe learns from")
    g.add_argument("--test", metavar="FILE", help="dataset file it is tested on")
    g.add_argument("--split-per-class", type=int, metavar="N",
                   help="no test file: test on N images of each class of --train, train on "
                   "the rest (reproducible from --seed)")
    g.add_argument("--dataset", metavar="NAME", help=f"instead of --train/--test: a registry "
                   f"name ({', '.join(sorted(REGISTRY))}) or NAME=TRAIN[:TEST]")
    _shared_data_options(g)
    return p


def _suite_data_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("the data", DATA_HELP)
    g.add_argument("--datasets", required=True, metavar="LIST",
                   help=f"comma-separated: registry names ({', '.join(sorted(REGISTRY))}: "
                   f"cifar10 is its train/test files, tinyimagenet its 50 val images a class "
                   f"split 40 train / 10 test), NAME=TRAIN[:TEST], or TRAIN:TEST")
    g.add_argument("--split-per-class", type=int, metavar="N",
                   help="test images a class for datasets given without a test file")
    _shared_data_options(g)
    return p


def _shared_data_options(g) -> None:
    g.add_argument("--train-per-class", type=int, metavar="N",
                   help="use at most N training images of each class (drawn with --seed)")
    g.add_argument("--data-root", metavar="DIR", help="folder of the registry's .jessl or .npz "
                   "files (default: $JESSL_DATA, then ../shared/data)")


def _common_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("running")
    add_flags(g, FeatureConfig)
    g.add_argument("--cache-dir", metavar="DIR", help="converted datasets and cached features "
                   "(default: $JESSL_CACHE or ~/.cache/jessl)")
    g.add_argument("--json", action="store_true", help="print one JSON object (messages go "
                   "to stderr)")
    return p


# --- running ------------------------------------------------------------------------------

def main(argv=None) -> int:
    """`jessl eval ...` (cli.main dispatches here so that convert/inspect never import torch)."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("jessl: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as err:
        print_error(err)
        return 1


def run(args) -> int:
    import torch

    from jessl.eval.datasets import cache_root, data_roots
    say = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    # every cheap check first: a dataset may take minutes to convert (issue 15)
    feature, *probe = probe_configs(args)
    if feature.threads is not None:
        torch.set_num_threads(feature.threads)
    cache = cache_root(args.cache_dir)
    roots = data_roots(args.data_root)
    settings = _settings(feature, probe, cache)
    _check_network(args)
    datasets = _datasets(args, roots, cache, say)
    model = _model(args, datasets[0], say)
    start = time.perf_counter()
    if args.probe == "suite":
        return _run_suite(args, model, datasets, settings, say, start)
    data = datasets[0]
    if args.probe == "linear" and args.augment:
        from jessl.eval.augmented import AUG_EPOCHS, augmented_linear_probe
        epochs = args.epochs if args.epochs is not None else AUG_EPOCHS
        r = augmented_linear_probe(
            model.backbone.to(settings.device), data.train, data.test, train_idx=data.train_idx,
            test_idx=data.test_idx, views=args.views, scale=tuple(args.augment_scale),
            epochs=epochs, seed=args.seed, num_threads=args.threads,
            cache_dir=settings.cache_dir, channels_last=settings.channels_last)
        result = r.to_dict()
    else:
        from jessl.eval.suite import features, run_probe
        f = features(model.backbone, data, settings)
        result = run_probe(args.probe, f, settings)
        result["features"] = f.train_x.shape[1]
    seconds = time.perf_counter() - start
    if args.json:
        print(json.dumps({"probe": args.probe, "augment": bool(getattr(args, "augment", False)),
                          "model": _describe(model), "dataset": _describe_data(data),
                          "result": result, "seconds": seconds}, indent=1))
    else:
        print(f"model: {model.label} ({model.arch}, cifar_stem={model.cifar_stem})")
        print(f"data: {data.describe()}")
        print(format_result(args.probe, result, getattr(args, "augment", False)))
        print(f"took {seconds:.1f} s")
    return 0


def _datasets(args, roots, cache, say) -> list:
    from jessl.eval.datasets import (DatasetEntry, load_data, locate_file, parse_dataset,
                                     parse_datasets)
    if args.probe == "suite":
        entries = parse_datasets(args.datasets, args.split_per_class)
    elif args.dataset:
        if args.train or args.test:
            raise EvalError("give --dataset or --train/--test, not both")
        entries = [parse_dataset(args.dataset, args.split_per_class)]
    else:
        if not args.train:
            raise EvalError("no data: give --train FILE with --test FILE or --split-per-class "
                            "N, or --dataset NAME")
        if (args.test is None) == (args.split_per_class is None):
            raise EvalError("give exactly one of --test FILE and --split-per-class N with "
                            "--train")
        entries = [(Path(args.train).stem,
                    DatasetEntry(args.train, args.test, args.split_per_class))]
    if args.split_per_class is not None and args.split_per_class < 1:
        raise EvalError(f"--split-per-class must be >= 1, got {args.split_per_class}")
    names = [n for n, _ in entries]
    if len(set(names)) != len(names):
        raise EvalError(f"two datasets share a name in {', '.join(names)}: write NAME=TRAIN:TEST")
    if args.train_per_class is not None and args.train_per_class < 1:
        raise EvalError(f"--train-per-class must be >= 1, got {args.train_per_class}")
    for _, entry in entries:  # every file found before the first .npz is converted
        for ref in (entry.train, entry.test):
            if ref is not None:
                locate_file(ref, roots, cache)
    return [load_data(name, entry, roots=roots, cache=cache, seed=args.seed,
                      train_per_class=args.train_per_class, say=say) for name, entry in entries]


def _check_network(args) -> None:
    """The network's source exists, loads and names a known backbone: checked before any
    dataset is converted or read."""
    from jessl.eval.models import check_arch, checkpoint_file
    if args.checkpoint:
        if args.backbone:
            raise EvalError("--backbone is read from the checkpoint's config; drop it")
        _check_loads(checkpoint_file(args.checkpoint))
        return
    check_arch(args.backbone)
    if args.weights:
        if not Path(args.weights).is_file():
            raise EvalError(f"weights file {args.weights} does not exist")
        _check_loads(Path(args.weights))


def _check_loads(file: Path) -> None:
    """torch can open `file` (memory-mapped: nothing is read that is not needed)."""
    import torch
    try:
        torch.load(file, map_location="cpu", mmap=True, weights_only=False)
    except Exception:  # not a torch file, truncated, or in torch's legacy format: load it
        try:
            torch.load(file, map_location="cpu", weights_only=False)
        except Exception as err:
            raise EvalError(f"{file} is not a file torch can read: {err}") from None


def _model(args, data, say):
    from jessl.data.facts import small_images
    from jessl.eval.models import from_checkpoint, from_weights, random_init
    stem = {"auto": None, "on": True, "off": False}[args.cifar_stem]
    small = small_images(data.train)  # the trainer's rule for the stem, on the probe's images
    if args.checkpoint:
        if args.backbone:
            raise EvalError("--backbone is read from the checkpoint's config; drop it")
        model = from_checkpoint(args.checkpoint, stem, small, say)
    elif args.weights:
        model = from_weights(args.weights, args.backbone, stem, small, args.seed)
    else:
        model = random_init(args.backbone, small if stem is None else stem, args.seed)
    if args.label:
        model.label = args.label
    return model


def _settings(feature: FeatureConfig, probe: list, cache):
    """The suite's Settings from the validated option dataclasses."""
    from jessl.eval.suite import Settings
    from jessl.runtime import resolve_device
    s = Settings(seed=feature.seed, views=feature.views, batch_size=feature.batch_size,
                 threads=feature.threads, device=str(resolve_device(feature.device)),
                 cache_dir=cache / "features" if feature.cache else None)
    for cfg in probe:
        if isinstance(cfg, KnnProbeConfig):
            s.ks, s.temperature = cfg.k, cfg.temperature
        elif isinstance(cfg, LinearProbeConfig) and cfg.epochs is not None:
            s.linear_epochs = cfg.epochs
        elif isinstance(cfg, MlpProbeConfig):
            s.mlp_epochs, s.mlp_hidden = cfg.epochs, cfg.hidden
        elif isinstance(cfg, SuiteConfig):
            s.linear_epochs, s.mlp_epochs, s.mlp_hidden = \
                cfg.linear_epochs, cfg.mlp_epochs, cfg.mlp_hidden
            s.probe_train_per_class = cfg.probe_train_per_class or None
            s.projector = cfg.projector
    return s


def _run_suite(args, model, datasets, settings, say, start) -> int:
    from jessl.eval.report import write_report
    from jessl.eval.suite import run_suite
    rows = run_suite(model, datasets, settings, args.probes, say)
    paths = write_report(rows, args.out)
    seconds = time.perf_counter() - start
    if args.json:
        print(json.dumps({"model": _describe(model), "datasets": [_describe_data(d) for d in
                                                                  datasets],
                          "rows": rows, "files": {k: str(v) for k, v in paths.items()},
                          "seconds": seconds, "seconds_by_stage": settings.timings}, indent=1))
    else:
        print(paths["md"].read_text().split("\n", 2)[2].rstrip())
        print(f"wrote {paths['md']}, {paths['json']}, {paths['png']} in {seconds:.0f} s")
    return 0


def _describe(model) -> dict:
    return {"label": model.label, "backbone": model.arch, "cifar_stem": model.cifar_stem,
            "seed": model.seed, "projector": model.projector is not None}


def _describe_data(data) -> dict:
    return {"name": data.name, "train": str(data.train), "test": str(data.test),
            "train_records": None if data.train_idx is None else len(data.train_idx),
            "test_records": None if data.test_idx is None else len(data.test_idx)}


def format_result(probe: str, r: dict, augment: bool = False) -> str:
    """A probe's result as the lines a person reads."""
    def pct(v):
        return "–" if v is None else f"{v:.2f}%"
    if probe == "knn":
        ks = sorted({int(k[1:].split("_")[0]) for k in r if k.startswith("k")})
        return "kNN: " + "; ".join(
            f"k={k} top-1 {pct(r[f'k{k}_top1'])}" + (f", top-5 {pct(r[f'k{k}_top5'])}"
                                                     if f"k{k}_top5" in r else "") for k in ks)
    if probe == "rankme":
        alpha = "–" if r["alpha_req"] is None else f"{r['alpha_req']:.3f}"
        return (f"RankMe {r['rankme']:.2f} (of at most {r['dim']} dimensions, {r['rows']:,} "
                f"training images); alpha-ReQ {alpha}")
    if probe == "linear":
        how = f"augmented views, {r['view']}" if augment else "precomputed features"
        return (f"linear probe ({how}, {r['epochs']} epochs): top-1 {pct(r['top1'])}, top-5 "
                f"{pct(r['top5'])}; lr {r['lr']}, weight decay {r['weight_decay']} chosen on "
                f"the train hold-out")
    if probe == "mlp":
        return (f"MLP probe ({'-'.join(map(str, r['hidden']))}, {r['epochs']} epochs): best "
                f"epoch {r['best_epoch'] + 1} top-1 {pct(r['top1_best'])}, top-5 "
                f"{pct(r['top5_best'])}; last epoch top-1 {pct(r['top1_last'])}, top-5 "
                f"{pct(r['top5_last'])}")
    return json.dumps(r)
