"""`jessl sweep`'s local runs: the points as `jessl train` processes, N at a time.

N processes share the cores: each gets train.threads = data.threads = cores // N (the sweep
writes them into its config) and OMP/MKL/NUMBA_NUM_THREADS to match here, since a run left to
its defaults takes every core and N of them would oversubscribe the machine N times over.
With N > 1 on a machine with GPUs, each run sees one GPU (CUDA_VISIBLE_DEVICES), dealt from
the GPUs this process may use by the slot the run occupies, so N runs on N GPUs each have their
own, and N runs on fewer GPUs share them evenly instead of all landing on GPU 0.
A child dies with the sweep (Linux PR_SET_PDEATHSIG), so a killed sweep leaves no run training
in the background to race with the restarted one.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from jessl.config import default_threads
from jessl.studies.sweep import SweepError, run_status, utc_now, write_manifest

TRAIN_COMMAND = (sys.executable, "-m", "jessl", "train")


def threads_per_run(parallel: int, cores: int | None = None) -> int:
    """cores // parallel (at least 1): N local runs split the cores, none oversubscribes."""
    if parallel < 1:
        raise SweepError(f"--parallel must be >= 1, got {parallel}")
    return max(1, (cores or default_threads()) // parallel)


def visible_gpus(env: dict) -> list[str]:
    """The GPUs the runs may use: CUDA_VISIBLE_DEVICES's entries when it is set (CUDA ignores
    everything from the first invalid entry on, e.g. -1), else torch's count of this machine's."""
    listed = env.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        gpus = []
        for entry in (e.strip() for e in listed.split(",")):
            if not entry or entry.startswith("-"):
                break
            gpus.append(entry)
        return gpus
    try:
        import torch
        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # a broken CUDA install must not stop a sweep that can run on the CPU
        return []


def gpu_for_slot(gpus: list[str], slot: int) -> str | None:
    """Slot k (0 .. parallel-1) of the running runs takes GPU k mod len(gpus); None: no GPU."""
    return gpus[slot % len(gpus)] if gpus else None


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
    # one run alone keeps what the user set; N at once are dealt the GPUs, one each
    gpus = visible_gpus(env) if parallel > 1 and todo else []
    free_slots = list(range(parallel))
    running: dict[str, tuple] = {}
    failed = 0
    try:
        while todo or running:
            while todo and len(running) < parallel:
                entry, slot = todo.pop(0), free_slots.pop(0)
                gpu = gpu_for_slot(gpus, slot)
                run_env = env if gpu is None else {**env, "CUDA_VISIBLE_DEVICES": gpu}
                running[entry["name"]] = (_start(out, entry, command, run_env, gpu), entry, slot)
                write_manifest(out, manifest)
                say(f"sweep: started {entry['name']} ({_attempt_text(entry)}"
                    + (f", GPU {gpu})" if gpu is not None else ")"))
            time.sleep(0.2)
            for name, (proc, entry, slot) in list(running.items()):
                if proc.poll() is None:
                    continue
                del running[name]
                free_slots.append(slot)
                failed += not _finish(out, entry, proc.returncode)
                write_manifest(out, manifest)
                say(f"sweep: {name} {entry['status']}"
                    + (f": {entry['error']}" if entry["status"] == "failed" else ""))
    except KeyboardInterrupt:
        for proc, _, _ in running.values():  # SIGTERM: the trainer unwinds, temporary files go
            proc.terminate()
        for proc, entry, _ in running.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            entry["attempts"][-1].update(ended=utc_now(), returncode=proc.returncode)
            entry["status"] = run_status(out / entry["name"])
        write_manifest(out, manifest)
        raise
    return failed


def _start(out: Path, entry: dict, command, env, gpu: str | None = None) -> subprocess.Popen:
    run_dir = out / entry["name"]
    status = run_status(run_dir)
    from jessl.checkpoint import latest_checkpoint
    ckpt = latest_checkpoint(run_dir)
    entry["attempts"].append({"started": utc_now(),
                              "resumed_from": ckpt.name if ckpt else None,
                              "returncode": None,
                              **({"gpu": gpu} if gpu is not None else {})})
    entry["status"] = "running"
    entry.pop("error", None)
    log = open(run_dir / "train.log", "a", encoding="utf-8")
    log.write(f"--- jessl sweep: {'resume' if status == 'partial' else 'start'} {utc_now()}\n")
    log.flush()
    parent = os.getpid()
    try:
        return subprocess.Popen([*command, "--config", str(run_dir / "config.yaml")],
                                stdout=log, stderr=subprocess.STDOUT, env=env,
                                preexec_fn=lambda: _die_with_parent(parent))
    finally:
        log.close()  # the child holds its own descriptor


def _finish(out: Path, entry: dict, returncode: int) -> bool:
    entry["attempts"][-1].update(ended=utc_now(), returncode=returncode)
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
