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

N local processes share the cores: each gets train.threads = data.threads = cores // N and
OMP/MKL/NUMBA_NUM_THREADS to match (a run left to its defaults would take every core, and N of
them would oversubscribe the machine N times over). A child dies with the sweep (Linux
PR_SET_PDEATHSIG), so a killed sweep leaves no run training in the background to race with the
restarted one; a lock file keeps two sweeps out of one folder.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from jessl.config import ConfigError, RunConfig, default_threads
from jessl.files import write_atomic
from jessl.studies.grid import Point, value_text

MANIFEST = "sweep.json"
FORMAT = "jessl-sweep/1"
# fields that change how fast a run goes, not what it computes (batches are the same whatever
# the thread count): a restart may change them without being a different run
RUNTIME_KEYS = {("train", "threads"), ("data", "threads"), ("train", "progress")}
TRAIN_COMMAND = (sys.executable, "-m", "jessl", "train")


class SweepError(ValueError):
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
        cfg.validate()
    except ConfigError as err:
        raise SweepError(f"point {point.name}: {err}") from None
    return cfg


def same_run(a: dict, b: dict) -> list[str]:
    """The `section.field`s where two config dicts differ, runtime-only fields left out."""
    keys = sorted({(s, f) for d in (a, b) for s, sec in d.items() for f in (sec or {})})
    return [f"{s}.{f}" for s, f in keys if (s, f) not in RUNTIME_KEYS
            and (a.get(s) or {}).get(f) != (b.get(s) or {}).get(f)]


def run_status(run_dir: Path) -> str:
    """done (results.json: the trainer wrote it after the last epoch), partial (a checkpoint),
    or pending (nothing yet)."""
    from jessl.train.checkpoint import latest_checkpoint
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
    manifest["updated"] = _now()
    text = json.dumps(manifest, indent=1) + "\n"
    write_atomic(Path(out) / MANIFEST, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


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


# --- local runs ----------------------------------------------------------------------------

def threads_per_run(parallel: int, cores: int | None = None) -> int:
    """cores // parallel (at least 1): N local runs split the cores, none oversubscribes."""
    if parallel < 1:
        raise SweepError(f"--parallel must be >= 1, got {parallel}")
    return max(1, (cores or default_threads()) // parallel)


def run_local(out: Path, manifest: dict, parallel: int = 1, threads: int = 0,
              command=TRAIN_COMMAND, say=print) -> int:
    """Run the points still to run, `parallel` at a time, each as `command --config
    OUT/<name>/config.yaml` with its output in OUT/<name>/train.log; the manifest is rewritten
    at every start and end. Returns the number of points that failed in this call."""
    todo = [p for p in manifest["points"] if p["status"] not in ("done", "failed")]
    env = dict(os.environ)
    if threads:  # the interop and BLAS pools too, not only the ones the config sets
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
            env[var] = str(threads)
    running: dict[str, tuple] = {}
    failed = 0
    try:
        while todo or running:
            while todo and len(running) < parallel:
                entry = todo.pop(0)
                running[entry["name"]] = (_start(out, entry, command, env), entry)
                write_manifest(out, manifest)
                say(f"sweep: started {entry['name']} ({_attempt_text(entry)})")
            time.sleep(0.2)
            for name, (proc, entry) in list(running.items()):
                if proc.poll() is None:
                    continue
                del running[name]
                failed += not _finish(out, entry, proc.returncode)
                write_manifest(out, manifest)
                say(f"sweep: {name} {entry['status']}"
                    + (f": {entry['error']}" if entry["status"] == "failed" else ""))
    except KeyboardInterrupt:
        for proc, _ in running.values():  # SIGTERM: the trainer unwinds, temporary files go
            proc.terminate()
        for proc, entry in running.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            entry["attempts"][-1].update(ended=_now(), returncode=proc.returncode)
            entry["status"] = run_status(out / entry["name"])
        write_manifest(out, manifest)
        raise
    return failed


def _start(out: Path, entry: dict, command, env) -> subprocess.Popen:
    run_dir = out / entry["name"]
    status = run_status(run_dir)
    from jessl.train.checkpoint import latest_checkpoint
    ckpt = latest_checkpoint(run_dir)
    entry["attempts"].append({"started": _now(), "resumed_from": ckpt.name if ckpt else None,
                              "returncode": None})
    entry["status"] = "running"
    entry.pop("error", None)
    log = open(run_dir / "train.log", "a", encoding="utf-8")
    log.write(f"--- jessl sweep: {'resume' if status == 'partial' else 'start'} {_now()}\n")
    log.flush()
    parent = os.getpid()
    try:
        return subprocess.Popen([*command, "--config", str(run_dir / "config.yaml")],
                                stdout=log, stderr=subprocess.STDOUT, env=env,
                                preexec_fn=lambda: _die_with_parent(parent))
    finally:
        log.close()  # the child holds its own descriptor


def _finish(out: Path, entry: dict, returncode: int) -> bool:
    entry["attempts"][-1].update(ended=_now(), returncode=returncode)
    status = run_status(out / entry["name"])
    if returncode == 0 and status == "done":
        entry["status"] = "done"
        return True
    entry["status"] = "failed"
    entry["error"] = (f"exit status {returncode}: " if returncode else
                      "exit status 0 but no results.json: ") + _last_line(out / entry["name"])
    return False


def _die_with_parent(parent: int) -> None:
    """In the child before exec: SIGTERM when the sweep process dies (prctl PR_SET_PDEATHSIG,
    Linux); elsewhere a child outlives a killed sweep, and the lock is what protects a restart."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the sweep died before prctl took effect
        os._exit(143)


def _last_line(run_dir: Path) -> str:
    try:
        lines = [ln for ln in (run_dir / "train.log").read_text(errors="replace").splitlines()
                 if ln.strip()]
    except OSError:
        return "(no train.log)"
    errors = [ln for ln in lines if "error" in ln.lower()]
    return (errors or lines or ["(empty train.log)"])[-1].strip()[:300]


def _attempt_text(entry: dict) -> str:
    last = entry["attempts"][-1]
    n = len(entry["attempts"])
    what = f"resuming from {last['resumed_from']}" if last["resumed_from"] else "fresh"
    return f"attempt {n}, {what}"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# --- SLURM (submitit) ----------------------------------------------------------------------

def submit_slurm(out: Path, manifest: dict, opts, parallel: int = 0, job_class=None,
                 say=print) -> list:
    """Submit the points still to run as one job array through submitit, one task per point
    (jessl.train.submit.TrainJob: requeued on preemption and time-out, resuming from its newest
    checkpoint); at most `parallel` tasks at once when > 0. Returns the submitit jobs."""
    from jessl.train.submit import TrainJob, executor
    job_class = job_class or TrainJob
    todo = [p for p in manifest["points"] if p["status"] not in ("done", "failed")]
    if not todo:
        return []
    ex = executor(opts, str(out))
    if parallel:
        ex.update_parameters(slurm_array_parallelism=parallel)
    configs = [RunConfig.from_yaml(out / p["name"] / "config.yaml").to_dict() for p in todo]
    with ex.batch():  # one SLURM array; locally, one process per task
        jobs = [ex.submit(job_class(config)) for config in configs]
    for entry, job in zip(todo, jobs):
        entry["attempts"].append({"started": _now(), "job_id": str(job.job_id),
                                  "returncode": None})
        entry["status"] = "submitted"
    write_manifest(out, manifest)
    say(f"sweep: submitted {len(jobs)} array task(s), job {jobs[0].job_id.split('_')[0]} "
        f"(logs: {opts.folder or out / 'slurm'})")
    return jobs


def wait_slurm(out: Path, manifest: dict, jobs: list, say=print) -> int:
    """Wait for submitted jobs and record how each ended; returns the number that failed."""
    by_id = {e["attempts"][-1].get("job_id"): e for e in manifest["points"]
             if e["status"] == "submitted"}
    failed = 0
    for job in jobs:
        entry = by_id[str(job.job_id)]
        try:
            job.result()
            ok = True
        except Exception as err:  # submitit re-raises the task's error here
            ok, entry["error"] = False, str(err).strip().splitlines()[-1][:300]
        entry["attempts"][-1].update(ended=_now(), returncode=0 if ok else 1)
        entry["status"] = "done" if ok and run_status(out / entry["name"]) == "done" else "failed"
        failed += entry["status"] == "failed"
        say(f"sweep: {entry['name']} {entry['status']}")
    write_manifest(out, manifest)
    return failed


# --- the whole sweep -------------------------------------------------------------------------

def run_sweep(study, out, *, parallel: int = 1, cores: int | None = None, slurm=None,
              resume: bool = False, retry_failed: bool = False, wait: bool = False,
              command=TRAIN_COMMAND, argv=None, job_class=None, say=print) -> dict:
    """Expand `study` (jessl.studies.study.Study), check every point, then run the points still
    to run here (`parallel` at a time) or submit them to SLURM (`slurm`: SlurmOptions).
    An OUT that holds a sweep is continued only with `resume` (as `jessl train` asks for
    --resume auto). Returns the manifest."""
    from jessl.studies.grid import expand_grid
    out = Path(out)
    held = lock(out)
    try:
        previous = read_manifest(out)
        if previous is not None and not resume:
            raise SweepError(f"{out} already holds a sweep ({MANIFEST}); continue it with "
                             f"--resume auto, or choose another --out")
        points = expand_grid(study.grid, study.seeds)
        # SLURM gives each task its own cores (--cpus-per-task): the config's threads stand
        threads = threads_per_run(parallel, cores) if slurm is None and parallel > 1 else 0
        entries = prepare(out, points, study.config, study.overrides, threads, previous,
                          retry_failed, say)
        manifest = {"format": FORMAT, "created": (previous or {}).get("created", _now()),
                    "command": list(argv) if argv is not None else None,
                    "config": study.config_path,
                    "grid": [[k, [value_text(v) for v in vs]] for k, vs in study.grid],
                    "seeds": study.seeds, "overrides": study.overrides,
                    "metric": study.metric, "x": study.x, "y": study.y,
                    "executor": "slurm" if slurm is not None else "local",
                    "parallel": parallel, "threads_per_run": threads or None, "points": entries}
        write_manifest(out, manifest)
        if slurm is not None:
            jobs = submit_slurm(out, manifest, slurm, parallel if parallel > 1 else 0,
                                job_class, say)
            if wait and jobs:
                wait_slurm(out, manifest, jobs, say)
        else:
            run_local(out, manifest, parallel, threads, command, say)
        return manifest
    finally:
        held.close()
