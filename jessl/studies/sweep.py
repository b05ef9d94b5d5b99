"""`jessl sweep`: one run folder per point of a grid, run here (one or N at a time) or on SLURM.

    OUT/sweep.json            the manifest: the grid, every point's overrides, status, attempts
    OUT/<point name>/         a `jessl train` run folder (config.yaml first, written by the sweep)
    OUT/<point name>/train.log   the run's output (local runs)
    OUT/slurm/                submitit's logs and pickles (--slurm)

Every point runs `jessl train --config OUT/<name>/config.yaml` with train.resume = auto, so a
sweep that is killed and started again skips the points that finished (results.json), continues
the half-finished one from its newest checkpoint (the trainer resumes exactly), and starts the
rest. The run folder, not the manifest, says whether a point finished; the manifest records what
the sweep did (attempts, return codes, job ids). A point whose training failed (a diverged loss
at a large learning rate, say) stays failed on a restart unless `--retry-failed`.

The points run here (jessl.studies.local: N processes splitting the cores) or as a SLURM array
(jessl.studies.slurm); a lock file keeps two sweeps out of one folder.
"""

from __future__ import annotations

import dataclasses
import datetime
import fcntl
import json
from pathlib import Path

import yaml

from jessl.config import SECTIONS, ConfigError, MethodConfig, RunConfig, method_options_type
from jessl.errors import UserError
from jessl.files import make_folders, remove_empty_folders, write_atomic
from jessl.studies.grid import Point, value_text
from jessl.train.inputs import check_inputs

MANIFEST = "sweep.json"
FORMAT = "jessl-sweep/1"
# fields that change how fast a run goes, not what it computes (batches are the same whatever
# the thread count): a restart may change them without being a different run
RUNTIME_KEYS = {("train", "threads"), ("data", "threads"), ("train", "progress")}
# sections that a switch turns off (their config class's `active`, read from its SWITCH
# fields): off in both runs, the trainer reads none of the section's other fields, so two runs
# that differ only there are the same run
SWITCHED = ("progressive", "hard_augment")


class SweepError(UserError, ValueError):
    """A sweep that cannot start: the message names the folder, point or key."""


# --- points -> resolved configs ---------------------------------------------------------------

def resolve_point(base: dict | None, fixed: list[str], point: Point, out: Path,
                  threads: int = 0) -> RunConfig:
    """The validated config of one point: base, then fixed overrides, then the point's; its run
    folder OUT/<name>, resumed automatically, no progress bar (the output goes to a log), data
    paths made absolute (a SLURM job may start elsewhere); threads > 0 caps both pools."""
    cfg = RunConfig.from_dict(base or {})
    try:
        cfg.apply_overrides(list(fixed) + point.override_args())
    except ConfigError as err:
        raise SweepError(f"point {point.name}: {err}") from None
    cfg.train.out = str((out / point.name).resolve())
    cfg.train.resume = "auto"
    cfg.train.progress = False
    for name in ("train", "val"):
        path = getattr(cfg.data, name)
        if path and Path(path).exists():
            setattr(cfg.data, name, str(Path(path).resolve()))
    if threads:
        cfg.train.threads = threads
        cfg.data.threads = min(cfg.data.threads or threads, threads)
    try:
        check_inputs(cfg.validate())  # every point's values and files, before any run starts
    except ConfigError as err:
        raise SweepError(f"point {point.name}: {err}") from None
    return cfg


def same_run(a: dict, b: dict) -> list[str]:
    """The `section.field`s where two config dicts differ, runtime-only fields and the fields of
    a section switched off in both (`SWITCHED`) left out. A field one of them lacks counts at
    its default: a run saved before the field existed ran without it, which is what a new
    field's default means, so a sweep still resumes after jessl gains an option."""
    keys = sorted({(s, f) for d in (a, b) for s, sec in d.items() for f in (sec or {})})
    return [f"{s}.{f}" for s, f in keys if (s, f) not in RUNTIME_KEYS
            and not _switched_off(a, b, s, f)
            and config_value(a, s, f) != config_value(b, s, f)]


def _switched_off(a: dict, b: dict, section: str, field: str) -> bool:
    """Whether `section.field` is read by neither run: its section is off in both."""
    if section not in SWITCHED:
        return False
    cls = SECTIONS[section]
    return field not in cls.SWITCH and not any(
        dataclasses.replace(cls(), **{f: config_value(d, section, f) for f in cls.SWITCH}).active
        for d in (a, b))


_ABSENT = object()


def config_value(config: dict, section: str, field: str):
    """config[section][field], or the field's default where the dict lacks it (a run saved
    before the field existed)."""
    values = config.get(section) or {}
    if field in values:
        return values[field]
    cls = SECTIONS.get(section)
    if section == "method" and field != "name":  # the method's own options, flattened in
        cls = method_options_type(values.get("name", MethodConfig.name))
    return getattr(cls(), field, _ABSENT) if cls is not None else _ABSENT


def run_status(run_dir: Path) -> str:
    """done (results.json: the trainer wrote it after the last epoch), partial (a checkpoint),
    or pending (nothing yet)."""
    from jessl.checkpoint import latest_checkpoint
    if (run_dir / "results.json").is_file():
        return "done"
    return "partial" if latest_checkpoint(run_dir) is not None else "pending"


def prepare(out: Path, points: list[Point], base: dict | None, fixed: list[str],
            threads: int, previous: dict | None, retry_failed: bool, say=print) -> list[dict]:
    """Resolve and check every point before any runs (a bad grid value fails here), write the
    config.yaml of each point still to run, and return the manifest's point entries."""
    before = {p["name"]: p for p in (previous or {}).get("points", [])}
    configs = [resolve_point(base, fixed, point, out, threads) for point in points]
    for cfg in configs:  # every check before the first file is written
        saved = Path(cfg.train.out) / "config.yaml"
        if saved.is_file():
            differ = same_run(yaml.safe_load(saved.read_text()) or {}, cfg.to_dict())
            if differ:
                raise SweepError(f"{saved.parent} holds a run of another config "
                                 f"({', '.join(differ)} differ): remove it, or sweep into "
                                 f"another --out")
    entries = []
    for point, cfg in zip(points, configs):
        run_dir = Path(cfg.train.out)
        saved = run_dir / "config.yaml"
        old = before.get(point.name, {})
        status = run_status(run_dir)
        if status != "done" and old.get("status") == "failed" and not retry_failed:
            status = "failed"
        if status not in ("done", "failed"):
            write_atomic(saved, lambda tmp: cfg.to_yaml(tmp))
        entries.append({"name": point.name,
                        "overrides": {k: value_text(v) for k, v in point.overrides.items()},
                        "status": status, "attempts": old.get("attempts", []),
                        **({"error": old["error"]} if status == "failed" and "error" in old
                           else {})})
    counts = {s: sum(e["status"] == s for e in entries) for s in ("done", "partial", "failed")}
    say(f"sweep: {len(entries)} points in {out}: {counts['done']} done, {counts['partial']} to "
        f"resume, {counts['failed']} failed (kept; --retry-failed runs them again), "
        f"{len(entries) - sum(counts.values())} to start")
    return entries


# --- the manifest and the lock ----------------------------------------------------------------

def read_manifest(out: Path) -> dict | None:
    path = Path(out) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise SweepError(f"{path}: not a JSON manifest ({err})") from None
    if manifest.get("format") != FORMAT:
        raise SweepError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    return manifest


def write_manifest(out: Path, manifest: dict) -> None:
    """Atomically (temporary file + rename): a reader or a killed sweep never sees half."""
    manifest["updated"] = utc_now()
    text = json.dumps(manifest, indent=1) + "\n"
    write_atomic(Path(out) / MANIFEST, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def utc_now() -> str:
    """The manifest's timestamps: ISO 8601, UTC, to the second."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def lock(out: Path):
    """An exclusive lock on OUT/.sweep.lock for this process's life (the kernel drops it when the
    process dies, SIGKILL included); SweepError when another sweep holds it."""
    out.mkdir(parents=True, exist_ok=True)
    f = open(out / ".sweep.lock", "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise SweepError(f"another `jessl sweep` is running in {out}") from None
    return f


# --- the whole sweep -------------------------------------------------------------------------

def run_sweep(study, out, *, parallel: int = 1, cores: int | None = None, slurm=None,
              resume: bool = False, retry_failed: bool = False, wait: bool = False,
              command=None, argv=None, job_class=None, say=print) -> dict:
    """Expand `study` (jessl.studies.study.Study), check every point, then run the points still
    to run here (`parallel` at a time) or submit them to SLURM (`slurm`: SlurmOptions).
    An OUT that holds a sweep is continued only with `resume` (as `jessl train` asks for
    --resume auto). Returns the manifest."""
    from jessl.studies.grid import expand_grid
    from jessl.studies.local import TRAIN_COMMAND, run_local, threads_per_run
    from jessl.studies.slurm import submit_slurm, wait_slurm
    out = Path(out)
    points = expand_grid(study.grid, study.seeds)  # a bad grid stops here, before OUT exists
    created = make_folders(out)
    held = lock(out)
    written = False
    try:
        previous = read_manifest(out)
        if previous is not None and not resume:
            raise SweepError(f"{out} already holds a sweep ({MANIFEST}); continue it with "
                             f"--resume auto, or choose another --out")
        # SLURM gives each task its own cores (--cpus-per-task): the config's threads stand
        threads = threads_per_run(parallel, cores) if slurm is None and parallel > 1 else 0
        entries = prepare(out, points, study.config, study.overrides, threads, previous,
                          retry_failed, say)
        manifest = {"format": FORMAT, "created": (previous or {}).get("created", utc_now()),
                    "command": list(argv) if argv is not None else None,
                    "config": study.config_path,
                    "grid": [[k, [value_text(v) for v in vs]] for k, vs in study.grid],
                    "seeds": study.seeds, "overrides": study.overrides,
                    "metric": study.metric, "x": study.x, "y": study.y,
                    "executor": "slurm" if slurm is not None else "local",
                    "parallel": parallel, "threads_per_run": threads or None, "points": entries}
        write_manifest(out, manifest)
        written = True
        if slurm is not None:
            jobs = submit_slurm(out, manifest, slurm, parallel if parallel > 1 else 0,
                                job_class, say)
            if wait and jobs:
                wait_slurm(out, manifest, jobs, say)
        else:
            run_local(out, manifest, parallel, threads, command or TRAIN_COMMAND, say)
        return manifest
    finally:
        held.close()
        if not written and created:  # refused before its first write: no empty OUT left behind
            (out / ".sweep.lock").unlink(missing_ok=True)
            remove_empty_folders(created)
