"""`jessl convert | inspect | train | submit | eval | curve | sweep | report | bench | quickstart`: the command line over the library."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from jessl import __version__
from jessl.errors import USER_ERRORS, print_error


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # SIGTERM (a scheduler, `kill`) unwinds like Ctrl-C, so temporary files are removed
    signal.signal(signal.SIGTERM, _raise_interrupt)
    if argv[:1] == ["train"]:
        # its parser lists every method's options, which needs torch: build it only here, so
        # `jessl convert` and `jessl inspect` start in a fraction of a second
        from jessl.train.command import main as train_main
        return train_main(argv[1:])
    if argv[:1] == ["submit"]:  # the same run as `jessl train`, through SLURM (submitit)
        from jessl.train.submit import main as submit_main
        return submit_main(argv[1:])
    if argv[:1] == ["eval"]:
        # the probes need torch too: imported only for `jessl eval`
        from jessl.eval.command import main as eval_main
        return eval_main(argv[1:])
    if argv[:1] == ["curve"]:
        from jessl.train.curve import main as curve_main
        return curve_main(argv[1:])
    if argv[:1] == ["sweep"]:
        from jessl.studies.command import sweep_main
        return sweep_main(argv[1:])
    if argv[:1] == ["report"]:
        from jessl.studies.command import report_main
        return report_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("jessl: interrupted; nothing was written", file=sys.stderr)
        return 130
    except USER_ERRORS as err:  # anything else is a bug: let its traceback show
        print_error(err)
        return 1


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jessl", description=__doc__)
    parser.add_argument("--version", action="version", version=f"jessl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("convert", help="write an image folder or .npz to a dataset file",
                       description="Convert SRC (an ImageFolder-style folder, a flat folder, "
                       "a .npz of arrays x/y, or a .npz of JPEG bytes + offsets) to OUT.")
    p.add_argument("src", help="image folder or .npz file")
    p.add_argument("out", help="the dataset file to write (e.g. train.jessl)")
    p.add_argument("--format", choices=("auto", "raw", "jpeg"), default="auto",
                   help="how images are stored; auto keeps JPEG sources as JPEG (copied byte "
                   "for byte when not resized) and stores everything else raw (default)")
    p.add_argument("--quality", type=int, default=90,
                   help="JPEG quality when re-encoding, 1-100 (default 90, as FFCV)")
    p.add_argument("--max-side", type=int, default=None, metavar="N",
                   help="shrink images whose longer side exceeds N px (area interpolation)")
    p.add_argument("--max-pixels", type=int, default=None, metavar="N",
                   help="refuse images larger than N pixels as decompression bombs "
                   "(default 268M = 16384x16384)")
    p.add_argument("--no-verify-jpeg", dest="verify_jpeg", action="store_false",
                   help="copy JPEGs without the decode check that catches corrupt files")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="parallel processes (default: all available cores)")
    p.add_argument("--on-error", choices=("fail", "skip"), default="fail",
                   help="stop at the first bad image (default), or skip it and list it in "
                   "OUT.report.json")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_convert)

    p = sub.add_parser("inspect", help="show what a dataset file holds")
    p.add_argument("file")
    p.add_argument("--verify", action="store_true",
                   help="decode every record and check its checksum; report any that fail")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="processes for --verify (default: all available cores)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=_inspect)

    p = sub.add_parser("bench", help="measure jessl against a reference in the same run")
    bench = p.add_subparsers(dest="bench", required=True)
    b = bench.add_parser("loader", help="two-view loading pairs/s vs torchvision v2 "
                         "(the FFCV-SSL paper's Table 2)")
    b.add_argument("--data", required=True, help="a dataset file")
    b.add_argument("--preset", default="simclr", help="view preset whose size and "
                   "normalisation the columns use (default simclr; simclr_cifar for 32 px)")
    b.add_argument("--baseline", choices=("torchvision", "none"), default="torchvision")
    b.add_argument("--columns", default="all", help="comma-separated Table 2 columns: "
                   "crops+flip, +blur, +grey, +solarize, +jitter (default: all)")
    b.add_argument("--batch-size", type=int, default=64)
    b.add_argument("--baseline-images", type=int, default=None,
                   help="images the (slow) torchvision references read per run (default: "
                   "256 at ImageNet size, 8192 at 32 px)")
    b.add_argument("--repeats", type=int, default=3, help="runs per figure; medians reported")
    b.add_argument("--workers", type=int, default=None,
                   help="threads for jessl, processes for torchvision (default: all cores)")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.set_defaults(run=_bench_loader)

    p = sub.add_parser("train", add_help=False, help="pretrain a backbone with an SSL method "
                       "(`jessl train --help` lists every option)")
    p.add_argument("options", nargs=argparse.REMAINDER)  # parsed by jessl.train.command

    p = sub.add_parser("submit", add_help=False, help="submit `jessl train` to SLURM through "
                       "submitit: nodes, GPUs, partition, time; requeued and resumed on "
                       "preemption or time-out (`jessl submit --help`)")
    p.add_argument("options", nargs=argparse.REMAINDER)  # parsed by jessl.train.submit

    p = sub.add_parser("eval", add_help=False, help="probe a frozen network: kNN, linear, MLP, "
                       "RankMe, or the suite of them beside the random-init baseline "
                       "(`jessl eval --help`)")
    p.add_argument("options", nargs=argparse.REMAINDER)  # parsed by jessl.eval.command

    p = sub.add_parser("curve", add_help=False, help="a run's learning curve from its "
                       "metrics.jsonl: probe accuracy per epoch against training and wall time, "
                       "optionally plotted (`jessl curve --help`)")
    p.add_argument("options", nargs=argparse.REMAINDER)  # parsed by jessl.train.curve

    p = sub.add_parser("sweep", add_help=False, help="a grid of `jessl train` runs, one folder "
                       "per point: sequential, N local processes or a SLURM array; a killed "
                       "sweep resumes (`jessl sweep --help`)")
    p.add_argument("options", nargs=argparse.REMAINDER)  # parsed by jessl.studies.command

    p = sub.add_parser("report", add_help=False, help="a sweep's or runs' final metric and cost "
                       "as a table, a line plot or a heatmap (`jessl report --help`)")
    p.add_argument("options", nargs=argparse.REMAINDER)  # parsed by jessl.studies.command

    p = sub.add_parser("quickstart", help="the first run, offline: pretrain a small CNN on the "
                       "digits that ship with scikit-learn and compare its probe and kNN "
                       "accuracy with the same network at random initialisation")
    p.add_argument("--out", default="jessl-quickstart", help="folder for the run's files")
    p.set_defaults(run=_quickstart)
    return parser


def _convert(args) -> int:
    from jessl.data import convert
    new_folder = not Path(args.out).parent.exists()  # made by convert, removed if it fails
    result = convert(args.src, args.out, format=args.format, quality=args.quality,
                     max_side=args.max_side, max_pixels=args.max_pixels,
                     verify_jpeg=args.verify_jpeg, workers=args.workers,
                     on_error=args.on_error, overwrite=args.overwrite,
                     progress=not args.quiet)
    print(f"wrote {result.path}: {result.records:,} records in {result.seconds:.1f} s "
          f"({result.images_per_s:,.0f} images/s)"
          + (f"; created the folder {result.path.parent}" if new_folder else ""))
    if result.skipped:
        print(f"skipped {len(result.skipped)} image(s), e.g. {result.skipped[0]['name']}: "
              f"{result.skipped[0]['reason']}")
    if result.converted:
        print(f"converted {len(result.converted)} image(s) to store them faithfully, e.g. "
              f"{result.converted[0]['name']}: {result.converted[0]['note']}")
    if result.report:
        print(f"report: {result.report}")
    return 0


def _inspect(args) -> int:
    from jessl.data.inspect import format_summary, summarize, verify_file
    from jessl.data.reader import Reader
    from jessl.data.writer import available_cores
    with Reader(args.file) as reader:
        summary = summarize(reader)
        unchecked = reader.unchecked_fields
    failures = None
    if args.verify:
        failures = verify_file(args.file, args.workers or available_cores(),
                               progress=not args.json and sys.stderr.isatty())
        summary["verify"] = {"checked": summary["records"], "failed": failures,
                             "decode_only_fields": unchecked}
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(format_summary(summary))
        if failures is not None:
            bad = len({f["record"] for f in failures if f["record"] is not None})
            print(f"verify: {summary['records'] - bad:,} of {summary['records']:,} "
                  f"records decode and match their checksums")
            if unchecked:
                print(f"verify: format version {summary['format_version']} stores no checksum "
                      f"for {', '.join(unchecked)}: checked only to decode (rewrite the file "
                      f"with this jessl to cover them)")
            for f in failures[:20]:
                print(f"  FAILED {f['error']}")
    return 1 if failures else 0


def _bench_loader(args) -> int:
    from jessl.benchmarks.loader import COLUMNS, run
    columns = COLUMNS if args.columns == "all" else [
        c.strip() for c in args.columns.split(",") if c.strip()]
    log = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    result = run(args.data, preset=args.preset, columns=columns, batch_size=args.batch_size,
                 baseline_images=args.baseline_images, repeats=args.repeats,
                 workers=args.workers, baseline=args.baseline, log=log)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"full pipeline: jessl {result['jessl_pairs_per_s']:,.0f} pairs/s; decode floor "
              f"{result['decode_floor_pairs_per_s']:,.0f}/s ({result['floor_ratio']:.1f}x)")
        if result["ratio"] is not None:
            print(f"ratio vs torchvision {result['ratio']:.1f}x, vs tuned "
                  f"{result['ratio_tuned']:.1f}x")
    return 0


def _quickstart(args) -> int:
    from jessl.quickstart import run
    return run(Path(args.out))


if __name__ == "__main__":
    sys.exit(main())
