"""`jessl sweep --slurm`: the points as one SLURM job array through submitit, one task per
point (jessl.train.submit.TrainJob, requeued on preemption and time-out).

A sweep submitted without --wait returns at once; running the same command again later (to
submit what failed or was never submitted) must not submit a second task for a point whose task
is still queued or running: its last job's state is asked of SLURM (sacct, through submitit)
first, and only points with no live task are submitted."""

from __future__ import annotations

from pathlib import Path

from jessl.config import RunConfig
from jessl.studies.sweep import run_status, utc_now, write_manifest

# SLURM job states in which a task will still run (or is running): its point is not submitted
# again (sacct's states, https://slurm.schedmd.com/sacct.html#SECTION_JOB-STATE-CODES)
LIVE_STATES = frozenset({"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
                         "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING", "STAGE_OUT",
                         "SIGNALING"})


def slurm_state(job_id: str, folder: str) -> str:
    """The job's state as sacct tells it (submitit's watcher); UNKNOWN without sacct or record."""
    import submitit
    return submitit.SlurmJob(folder=folder, job_id=job_id).state.split()[0].upper()


def live_task(entry: dict, folder: str, state_of=slurm_state) -> str | None:
    """The job id of the point's last SLURM task if it is still queued or running, else None."""
    last = (entry.get("attempts") or [{}])[-1]
    job_id = last.get("job_id")
    if not job_id or last.get("ended"):
        return None
    return job_id if state_of(job_id, folder) in LIVE_STATES else None


def submit_slurm(out: Path, manifest: dict, opts, parallel: int = 0, job_class=None,
                 say=print, state_of=slurm_state) -> list:
    """Submit the points still to run as one job array through submitit, one task per point
    (jessl.train.submit.TrainJob: requeued on preemption and time-out, resuming from its newest
    checkpoint); at most `parallel` tasks at once when > 0. A point whose last task is still
    queued or running on SLURM is left to it. Returns the submitit jobs."""
    from jessl.train.submit import TrainJob, executor
    job_class = job_class or TrainJob
    todo = [p for p in manifest["points"] if p["status"] not in ("done", "failed")]
    if opts.cluster in (None, "", "slurm"):  # submitit's local/debug executors have no queue
        folder = str(opts.folder or out / "slurm")
        live = [(entry, live_task(entry, folder, state_of)) for entry in todo]
        for entry, job_id in live:
            if job_id is not None:
                entry["status"] = "submitted"
                say(f"sweep: {entry['name']} still queued or running as job {job_id}: "
                    f"not submitted again")
        todo = [entry for entry, job_id in live if job_id is None]
        if len(todo) < len(live):
            write_manifest(out, manifest)
    if not todo:
        return []
    ex = executor(opts, str(out))
    if parallel:
        ex.update_parameters(slurm_array_parallelism=parallel)
    configs = [RunConfig.from_yaml(out / p["name"] / "config.yaml").to_dict() for p in todo]
    with ex.batch():  # one SLURM array; locally, one process per task
        jobs = [ex.submit(job_class(config)) for config in configs]
    for entry, job in zip(todo, jobs):
        entry["attempts"].append({"started": utc_now(), "job_id": str(job.job_id),
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
        entry["attempts"][-1].update(ended=utc_now(), returncode=0 if ok else 1)
        entry["status"] = "done" if ok and run_status(out / entry["name"]) == "done" else "failed"
        failed += entry["status"] == "failed"
        say(f"sweep: {entry['name']} {entry['status']}")
    write_manifest(out, manifest)
    return failed
