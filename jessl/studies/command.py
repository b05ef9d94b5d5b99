"""`jessl sweep` and `jessl report`: the command lines over jessl.studies.

    jessl sweep --config BASE.yaml --grid optim.lr=0.3,0.6,1.2 --grid data.batch_size=64,256 \\
        --seeds 2 --out runs/study [--parallel 2 | --slurm --partition cpu ...] [--resume auto]
    jessl sweep --study docs/studies/projector_depth.yaml --out runs/depth data.train=x.jessl
    jessl report runs/study --metric knn --x optim.lr --y data.batch_size --plot lr_bs.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from jessl.errors import USER_ERRORS, UserError, print_error
from jessl.files import write_atomic
from jessl.studies.grid import StudyError
from jessl.studies.report import METRICS


class _Parser(argparse.ArgumentParser):
    """A bad option: one `jessl ...: error:` line and status 2, as `jessl train` does."""

    def error(self, message):
        print_error(message, self.prog)
        sys.exit(2)


def sweep_parser() -> argparse.ArgumentParser:
    from jessl.studies import sweep
    from jessl.train.submit import add_slurm_arguments
    p = _Parser(prog="jessl sweep", description=sweep.__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter,
                epilog="Overrides fixed for every point may follow as section.field=VALUE.")
    p.add_argument("--config", metavar="BASE.yaml", help="the base run's config (default: the "
                   "study's `config`, or jessl's defaults)")
    p.add_argument("--study", metavar="FILE.yaml", help="a study file: base config, fixed "
                   "overrides, grid, seeds, metric (jessl.studies.study)")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="a config field and its values (repeatable; `KEY=[a, b]` for values "
                   "with commas); the points are the cartesian product, the first key slowest")
    p.add_argument("--seeds", type=int, default=None, metavar="N",
                   help="every point with train.seed 0..N-1 (the fastest-varying key)")
    p.add_argument("--out", required=True, metavar="DIR", help="the sweep folder")
    p.add_argument("--parallel", type=int, default=1, metavar="N",
                   help="runs at once: N local processes with cores // N threads each (and one "
                   "visible GPU each, dealt round-robin, where there are GPUs), or, with "
                   "--slurm, the array's task limit (default 1)")
    p.add_argument("--cores", type=int, default=None, metavar="N",
                   help="cores the local runs share (default: those this process may use)")
    p.add_argument("--resume", choices=("auto",), default=None,
                   help="continue the sweep in --out: finished points are skipped, a "
                   "half-finished one resumes from its newest checkpoint")
    p.add_argument("--retry-failed", action="store_true",
                   help="run again the points whose training failed before")
    p.add_argument("--dry-run", action="store_true",
                   help="list the points and their run folders; run nothing")
    slurm = p.add_argument_group("SLURM (submitit), with --slurm: one array task per point, "
                                 "requeued on preemption and time-out")
    slurm.add_argument("--slurm", action="store_true", help="submit the points as a job array")
    slurm.add_argument("--wait", action="store_true", help="wait for the array to finish")
    add_slurm_arguments(slurm)
    p.add_argument("overrides", nargs="*", metavar="section.field=VALUE")
    return p


def study_from_args(args):
    """--study, then --config, --grid and --seeds on top of it, then the trailing overrides."""
    from jessl.studies.grid import parse_grid_arg
    from jessl.studies.study import Study, _read_yaml_mapping, load_study
    study = load_study(args.study) if args.study else Study()
    if args.config:
        study.config = _read_yaml_mapping(Path(args.config), "--config")
        study.config_path = str(Path(args.config).resolve())
    grid = dict(study.grid)
    for text in args.grid:
        key, values = parse_grid_arg(text)
        grid[key] = values  # the command line wins over the study file
    study.grid = list(grid.items())
    if args.seeds is not None:
        from jessl.studies.grid import seed_list
        study.seeds = seed_list(args.seeds)
    for item in args.overrides:
        if "=" not in item:
            raise StudyError(f"unexpected argument {item!r}: overrides are section.field=VALUE")
    study.overrides = list(study.overrides) + list(args.overrides)
    return study


def sweep_main(argv=None) -> int:
    from jessl.studies.grid import expand_grid
    from jessl.studies.sweep import SweepError, run_sweep
    argv = sys.argv[1:] if argv is None else list(argv)
    args = sweep_parser().parse_args(argv)
    try:
        study = study_from_args(args)
        if args.dry_run:
            for point in expand_grid(study.grid, study.seeds):
                print(f"{Path(args.out) / point.name}: {' '.join(point.override_args())}")
            return 0
        slurm = None
        if args.slurm:
            from jessl.train.submit import slurm_options
            slurm = slurm_options(args)
        manifest = run_sweep(study, args.out, parallel=args.parallel, cores=args.cores,
                             slurm=slurm, resume=args.resume == "auto",
                             retry_failed=args.retry_failed, wait=args.wait,
                             argv=["jessl", "sweep", *argv])
    # ConfigError, SweepError and StudyError are UserErrors; ImportError: submitit missing
    except USER_ERRORS + (ImportError,) as err:
        print_error(err, "jessl sweep")
        return 2
    except KeyboardInterrupt:
        print("jessl sweep: interrupted; continue with --resume auto", file=sys.stderr)
        return 130
    statuses = [p["status"] for p in manifest["points"]]
    if "submitted" in statuses:
        print(f"sweep: {statuses.count('submitted')} points submitted, "
              f"{statuses.count('done')} done before; `jessl report {args.out}` follows them")
        return 0
    print(f"sweep: {statuses.count('done')} of {len(statuses)} points done"
          + (f", {statuses.count('failed')} failed" if "failed" in statuses else "")
          + f"; jessl report {args.out}")
    return 1 if "failed" in statuses else 0


def report_parser() -> argparse.ArgumentParser:
    from jessl.studies import report
    p = _Parser(prog="jessl report", description=report.__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="RUNS_OR_SWEEP",
                   help="run folders, sweep folders (sweep.json), or folders of run folders")
    p.add_argument("--metric", choices=METRICS, default=None,
                   help="knn (final kNN top-1), linear (offline probe from RUN/eval, `jessl "
                   "eval suite --out RUN/eval`), online (last epoch's online probe), rankme "
                   "(default: the sweep's study metric, else knn)")
    p.add_argument("--x", default=None, metavar="KEY", help="config field on the plot's x axis "
                   "(default: the study's x)")
    p.add_argument("--y", default=None, metavar="KEY", help="second field: a heatmap of x by y "
                   "(default: the study's y)")
    p.add_argument("--dataset", default=None, metavar="NAME", help="with --metric linear: the "
                   "dataset of the suite's report (default: its first)")
    p.add_argument("--select-by", choices=METRICS, default=None, metavar="METRIC",
                   help="label-free model selection (RankMe's use, the SSL Cookbook's Table 3): "
                   "per seed, the setting with the highest METRIC (rankme, rankme_embeddings) "
                   "against the one with the highest --metric, and the --metric its choice "
                   "loses; then the same on the means over seeds")
    p.add_argument("--plot", default=None, metavar="PNG", help="draw the line plot or heatmap")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the rows as JSON")
    p.add_argument("--over-epochs", action="store_true",
                   help="one run's probes epoch by epoch (FFCV-SSL Figure 8): the online probe "
                   "from RUN/metrics.jsonl beside the offline probes of RUN/eval-epoch-NN "
                   "(`jessl eval suite` of each epoch's checkpoint)")
    return p


def over_epochs(args) -> None:
    """`--over-epochs`: the table, the two numbers the paper's claims turn on, the plot."""
    from jessl.studies import epochs
    if len(args.runs) != 1:
        raise UserError(f"--over-epochs reads one run folder, got {len(args.runs)}")
    rows = epochs.collect(args.runs[0])
    print(epochs.markdown(rows))
    if args.json:
        write_atomic(args.json, lambda tmp: Path(tmp).write_text(json.dumps(
            {"rows": rows, "summary": epochs.summary(rows)}, indent=1) + "\n"))
    if args.plot:
        epochs.plot(rows, args.plot)
        print(f"plot: {args.plot}")


def report_main(argv=None) -> int:
    from jessl.studies import report
    args = report_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        if args.over_epochs:
            over_epochs(args)
            return 0
        result = report.build(args.runs, metric=args.metric, x=args.x, y=args.y,
                              dataset=args.dataset, select_by=args.select_by)
        print(report.markdown(result))
        if args.json:
            report.write_json(result, args.json)
        if args.plot:
            report.plot(result, args.plot)
            print(f"plot: {args.plot}")
    except USER_ERRORS as err:
        print_error(err, "jessl report")
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(sweep_main())
