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

from jessl.config import EvalConfig
from jessl.errors import USER_ERRORS, print_error
from jessl.eval.datasets import REGISTRY, EvalError

DATA_HELP = ("dataset files are written by `jessl convert` (e.g. `jessl convert "
             "../shared/data/cifar10_jpeg_test.npz cifar10_test.jessl`); an .npz given here "
             "is converted once into the cache folder")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jessl eval", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="probe", required=True)
    model, data, suite_data, common = _model_options(), _data_options(), \
        _suite_data_options(), _common_options()
    single = [model, data, common]

    p = sub.add_parser("knn", parents=single, help="weighted kNN top-1/top-5 (DINO eval_knn.py)")
    _knn_options(p)
    p = sub.add_parser("linear", parents=single,
                       help="linear probe, lr and weight decay chosen on a train hold-out")
    p.add_argument("--epochs", type=int, default=None,
                   help="passes over the training images (default 30 on precomputed features, "
                   "10 with --augment: each is a backbone pass)")
    p.add_argument("--augment", action="store_true",
                   help="train on features of fresh RandomResizedCrop + flip views each epoch "
                   "(backbone frozen), as SimCLR / DINO linear evaluation")
    p.add_argument("--augment-scale", type=_floats, default=(0.08, 1.0), metavar="LO,HI",
                   help="RandomResizedCrop area range with --augment (default 0.08,1.0)")
    p = sub.add_parser("mlp", parents=single, help="MLP probe (best and last epoch)")
    p.add_argument("--epochs", type=int, default=10, help="epochs (default 10)")
    p.add_argument("--hidden", type=_widths, default=(2048, 2048), metavar="W-W",
                   help="hidden widths (default 2048-2048, FFCV-SSL)")
    sub.add_parser("rankme", parents=single,
                   help="RankMe and alpha-ReQ of the training-image features (no labels used)")

    p = sub.add_parser("suite", parents=[model, suite_data, common],
                       help="kNN, linear, MLP and RankMe on several datasets, beside the "
                       "random-init baseline; writes report.md, report.json, report.png")
    _knn_options(p)
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the report files")
    p.add_argument("--probes", default=",".join(_suite().PROBES),
                   help="comma-separated subset of knn,linear,mlp,rankme (default: all)")
    p.add_argument("--linear-epochs", type=int, default=_suite().SUITE_LINEAR_EPOCHS,
                   help="linear probe epochs (default %(default)s; the single command: 30)")
    p.add_argument("--mlp-epochs", type=int, default=_suite().SUITE_MLP_EPOCHS,
                   help="MLP probe epochs (default %(default)s; the single command: 10)")
    p.add_argument("--mlp-hidden", type=_widths, default=_suite().SUITE_MLP_HIDDEN,
                   metavar="W-W", help="MLP hidden widths (default 512-512; the single "
                   "command: 2048-2048)")
    p.add_argument("--probe-train-per-class", type=int, default=0, metavar="N",
                   help="linear and MLP probes train on at most N images a class, kNN and "
                   "RankMe on all (a faster run; default 0 = all)")
    p.add_argument("--no-projector", dest="projector", action="store_false",
                   help="skip the kNN and RankMe of the checkpoint's projector embeddings")
    return parser


class _Parser(argparse.ArgumentParser):
    """A bad option is one `jessl eval: error:` line and status 2, as `jessl train` does
    (subparsers are made of the same class, so theirs too)."""

    def error(self, message: str):
        print(f"jessl eval: error: {message}", file=sys.stderr)
        sys.exit(2)


def _suite():
    from jessl.eval import suite
    return suite


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
    g.add_argument("--views", metavar="PRESET", help="evaluation view preset (default: "
                   "eval_cifar for images <= 64 px, else eval)")


def _common_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("running")
    g.add_argument("--seed", type=int, default=0, help="splits, subsamples, probe init and "
                   "order, and --random-init's weights (default 0)")
    g.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch and loader threads (default: all available cores)")
    g.add_argument("--batch-size", type=int, default=EvalConfig.batch_size,
                   help="images per forward pass when extracting features (default "
                   "%(default)s)")
    g.add_argument("--device", default="auto", help="where the network extracts features: "
                   "auto (a CUDA GPU when torch sees one, else cpu), cpu, cuda, cuda:N; the "
                   "probes themselves run on the CPU (default auto)")
    g.add_argument("--cache-dir", metavar="DIR", help="converted datasets and cached features "
                   "(default: $JESSL_CACHE or ~/.cache/jessl)")
    g.add_argument("--no-cache", dest="cache", action="store_false",
                   help="extract features afresh and do not store them")
    g.add_argument("--json", action="store_true", help="print one JSON object (messages go "
                   "to stderr)")
    return p


def _knn_options(p) -> None:
    from jessl.eval.knn import KS, TEMPERATURE
    p.add_argument("--k", type=_ints, default=KS, metavar="K,K",
                   help=f"neighbours (default {','.join(map(str, KS))}: DINO's best, and "
                   f"InstDisc's)")
    p.add_argument("--temperature", type=float, default=TEMPERATURE,
                   help="vote weight exp(sim / T) (default %(default)s, DINO)")


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers")
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give positive integers, e.g. 20,200")
    return values


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers")


def _widths(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.replace(",", "-").split("-") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not widths like 2048-2048")
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: widths must be positive, e.g. 2048-2048")
    return values


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
    if args.threads is not None:
        if args.threads < 1:
            raise EvalError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    cache = cache_root(args.cache_dir)
    roots = data_roots(args.data_root)
    # every cheap check first: a dataset may take minutes to convert (issue 15)
    settings = _settings(args, cache)
    from jessl.runtime import check_device, resolve_device
    try:
        check_device(args.device, "--device")
    except ValueError as err:
        raise EvalError(str(err)) from None
    settings.device = str(resolve_device(args.device))
    _check_network(args)
    datasets = _datasets(args, roots, cache, say)
    model = _model(args, datasets[0], say)
    start = time.perf_counter()
    if args.probe == "suite":
        return _run_suite(args, model, datasets, settings, say, start)
    data = datasets[0]
    if args.probe == "linear" and args.augment:
        from jessl.eval.augmented import augmented_linear_probe
        epochs = args.epochs if args.epochs is not None else 10
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


def _settings(args, cache):
    from jessl.eval.suite import Settings
    s = Settings(seed=args.seed, views=args.views, batch_size=args.batch_size,
                 threads=args.threads, cache_dir=cache / "features" if args.cache else None)
    if args.views:
        from jessl.data.views import PRESETS
        if args.views not in PRESETS:
            raise EvalError(f"unknown view preset {args.views!r}; known: "
                            f"{', '.join(sorted(PRESETS))}")
    if hasattr(args, "k"):
        s.ks, s.temperature = args.k, args.temperature
        if args.temperature <= 0:
            raise EvalError(f"--temperature must be > 0, got {args.temperature}")
    if args.probe == "linear" and args.epochs is not None:
        s.linear_epochs = args.epochs
    if args.probe == "mlp":
        s.mlp_epochs, s.mlp_hidden = args.epochs, args.hidden
    if args.probe == "suite":
        s.linear_epochs, s.mlp_epochs, s.mlp_hidden = \
            args.linear_epochs, args.mlp_epochs, args.mlp_hidden
        s.probe_train_per_class = args.probe_train_per_class or None
        s.projector = args.projector
    for name in ("linear_epochs", "mlp_epochs", "batch_size"):
        if getattr(s, name) < 1:
            raise EvalError(f"{name.replace('_', '-')} must be >= 1, got {getattr(s, name)}")
    return s


def _run_suite(args, model, datasets, settings, say, start) -> int:
    from jessl.eval.report import write_report
    from jessl.eval.suite import PROBES, run_suite
    probes = [p.strip() for p in args.probes.split(",") if p.strip()]
    unknown = [p for p in probes if p not in PROBES]
    if unknown or not probes:
        raise EvalError(f"unknown probe(s) {', '.join(unknown) or '(none)'}; known: "
                        f"{', '.join(PROBES)}")
    rows = run_suite(model, datasets, settings, probes, say)
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
