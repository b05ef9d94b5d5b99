"""`jessl submit` through submitit's local executor (no cluster): the job runs, is interrupted
as SLURM preempts it, requeues itself and resumes from its checkpoint (~15 s)."""

import json
import os
import signal
import time
from pathlib import Path

import pytest

from jessl.checkpoint import list_checkpoints, load_checkpoint
from jessl.config import ConfigError, load_config
from jessl.train.submit import SlurmOptions, TrainJob, executor, submit

from .conftest import tiny_overrides

ROOT = Path(__file__).resolve().parents[2]


class PausingJob(TrainJob):
    """TrainJob that, on its first attempt, waits after writing its first checkpoint until the
    test sends the preemption signal, so the interruption lands at a known point."""

    def __call__(self):
        if self.attempt == 0:
            import jessl.train.trainer as trainer
            save = trainer.atomic_save

            def save_then_wait(obj, path):
                save(obj, path)
                if obj["epoch"] == 1:
                    marker = Path(self.config["train"]["out"]) / "paused"
                    marker.write_text(str(os.getpid()))
                    for _ in range(600):  # the signal ends this; 60 s at most
                        time.sleep(0.1)

            trainer.atomic_save = save_then_wait
        return super().__call__()


def wait_for(predicate, seconds, what):
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.1)


def test_preempted_job_requeues_and_resumes(tiny_files, tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the job process unpickles tests.train...
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    train_file, val_file = tiny_files
    out = tmp_path / "run"
    cfg = load_config(None, tiny_overrides(train_file, val_file, out, {
        "train.epochs": 3, "eval.knn": False}))
    cfg.validate()
    opts = SlurmOptions(cluster="local", time=5, name="jessl-test")
    job = executor(opts, str(out)).submit(PausingJob(cfg.to_dict()))
    try:
        wait_for(lambda: (out / "paused").exists(), 60, "the first checkpoint")
        # SIGUSR2 to the task, as SLURM sends it before a preemption or the time limit
        # (LocalJob._interrupt signals submitit's local controller, which has no handler)
        os.kill(int((out / "paused").read_text()), signal.SIGUSR2)
        wait_for(job.done, 90, "the requeued job to finish")
        metrics = job.result()
    finally:
        if not job.done():
            job.cancel()
    log = job.stdout() or ""
    assert "attempt 1, resume no" in log and "attempt 2, resume auto" in log, log[-3000:]
    assert "epoch-0001.pt (epoch 1, step 4)" in log  # resumed from the interrupted job's file
    assert metrics["epoch"] == 3
    assert [p.name for p in list_checkpoints(out)] == ["epoch-0002.pt", "epoch-0003.pt"]
    assert load_checkpoint(list_checkpoints(out)[-1])["step"] == 12
    steps = [r["step"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
             if r["kind"] == "step"]
    assert steps == list(range(1, 13)), "the resumed run continues the metrics"
    assert (out / "slurm").is_dir(), "submitit's files go under train.out by default"


def test_submit_refuses_a_batch_the_processes_cannot_share(tiny_files, tmp_path):
    pytest.importorskip("submitit")
    train_file, val_file = tiny_files
    cfg = load_config(None, tiny_overrides(train_file, val_file, tmp_path / "run"))
    with pytest.raises(ConfigError, match="multiple of the 3 processes"):
        submit(cfg, SlurmOptions(cluster="local", nodes=3))


def test_submit_checks_a_gpu_run_against_the_job_not_this_machine(tiny_files, tmp_path,
                                                                   monkeypatch):
    """A login node has no GPU: train.device cuda is checked against --gpus-per-node, never
    against torch.cuda here."""
    pytest.importorskip("submitit")
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    train_file, val_file = tiny_files
    cfg = load_config(None, tiny_overrides(train_file, val_file, tmp_path / "run",
                                           {"train.device": "cuda"}))
    with pytest.raises(ConfigError, match="needs GPUs, but the job asks for none"):
        submit(cfg, SlurmOptions(cluster="local"))
    submitted = []

    class Executor:  # stands in for SLURM: records the job instead of running it
        def submit(self, job):
            submitted.append(job)
            return job

    monkeypatch.setattr("jessl.train.submit.executor", lambda opts, run_dir: Executor())
    job = submit(cfg, SlurmOptions(gpus_per_node=2))
    assert submitted == [job] and job.config["train"]["device"] == "cuda"
    assert cfg.train.device == "cuda"  # submit() checked a copy


def test_cli_submit_help_lists_the_slurm_options(capsys):
    from jessl.cli import main
    with pytest.raises(SystemExit):
        main(["submit", "--help"])
    text = capsys.readouterr().out
    for flag in ("--nodes", "--gpus-per-node", "--partition", "--time", "--max-requeues"):
        assert flag in text
