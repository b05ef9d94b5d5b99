"""`jessl submit`: the same run as `jessl train`, submitted to SLURM through submitit.

    jessl submit --nodes 2 --gpus-per-node 4 --partition learnfair --time 4320 \\
        --config simclr.yaml --train.out /checkpoint/me/simclr

Every process is one rank of the run (tasks per node = GPUs per node, or --tasks-per-node on a
CPU partition); submitit exports RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT and the job
joins the process group as it would under torchrun. When SLURM preempts the job or its time
runs out, submitit calls `TrainJob.checkpoint`, which requeues the same run with
`train.resume auto`: it continues from the newest checkpoint in train.out (the trainer writes
one every `train.checkpoint_every` epochs, so at most that much work is redone).

No path is built in: the run folder is train.out, and submitit's logs go to --folder, by
default train.out/slurm. submitit is optional: `pip install 'jessl[slurm]'`.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from jessl.config import ConfigError, RunConfig
from jessl.errors import print_error
from jessl.flags import add_flags, values
from jessl.train.inputs import check_inputs


@dataclass
class SlurmOptions:
    nodes: int = 1  # machines
    gpus_per_node: int = 0  # GPUs asked of SLURM per node; 0 = a CPU job
    tasks_per_node: int = 0  # processes (ranks) per node; 0 = gpus_per_node, or 1 without GPUs
    cpus_per_task: int = 0  # cores per process; 0 = SLURM's default
    mem_gb: int = 0  # memory per node; 0 = SLURM's default
    partition: str = ""  # SLURM partition; "" = the cluster's default
    time: int = 60  # minutes per job; a job that runs out is requeued and resumes
    max_requeues: int = 3  # time-outs after which the run is not requeued (preemptions: unlimited, as submitit)
    account: str = ""  # SLURM account; "" = none
    qos: str = ""  # SLURM quality of service; "" = none
    constraint: str = ""  # SLURM node constraint, e.g. "volta32gb"; "" = none
    folder: str = ""  # submitit's logs and pickles; "" = <train.out>/slurm
    name: str = "jessl"  # job name
    cluster: str = ""  # submitit executor: "" = SLURM when sbatch is found, else local; "local" runs here (tests)


def _submitit():
    try:
        import submitit
    except ImportError:
        raise ImportError("jessl submit needs submitit, which is optional: "
                          "pip install 'jessl[slurm]' (or pip install submitit)") from None
    return submitit


class TrainJob:
    """The callable submitit runs in every process: join the process group, then train.

    Checkpointable (submitit calls `checkpoint` on preemption and time-out): it returns the
    same job with train.resume = auto, which submitit requeues. A plain class with the method
    submitit looks for, so importing jessl does not import submitit."""

    def __init__(self, config: dict, attempt: int = 0):
        self.config = config  # RunConfig.to_dict(): plain data, pickles across versions
        self.attempt = attempt  # requeues so far

    def __call__(self) -> dict:
        from jessl import distributed
        from jessl.train.trainer import train
        submitit = _submitit()
        env = submitit.JobEnvironment()
        if env.num_tasks > 1:
            # MASTER_ADDR = the first node, MASTER_PORT from the job id, RANK, WORLD_SIZE ...
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        joined = distributed.init_from_env()
        try:
            cfg = RunConfig.from_dict(self.config)
            if distributed.rank() == 0:
                print(f"jessl submit: {env}, attempt {self.attempt + 1}, resume "
                      f"{cfg.train.resume or 'no'}", flush=True)
            return train(cfg)
        finally:
            if joined:
                distributed.shutdown()

    def checkpoint(self, *args, **kwargs):
        """On preemption or time-out: the same run, resuming from its newest checkpoint."""
        config = {**self.config, "train": {**self.config["train"], "resume": "auto"}}
        return _submitit().helpers.DelayedSubmission(type(self)(config, self.attempt + 1))


def executor(opts: SlurmOptions, run_dir: str):
    """A submitit executor for `opts`; logs under opts.folder or <run_dir>/slurm."""
    submitit = _submitit()
    folder = opts.folder or str(Path(run_dir) / "slurm")
    cluster = opts.cluster or None
    ex = submitit.AutoExecutor(folder=folder, cluster=cluster,
                               slurm_max_num_timeout=opts.max_requeues)
    tasks = opts.tasks_per_node or opts.gpus_per_node or 1
    params = {"name": opts.name, "nodes": opts.nodes, "tasks_per_node": tasks,
              "timeout_min": opts.time}
    if opts.gpus_per_node:
        params["gpus_per_node"] = opts.gpus_per_node
    if opts.cpus_per_task:
        params["cpus_per_task"] = opts.cpus_per_task
    if opts.mem_gb:
        params["mem_gb"] = opts.mem_gb
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(opts, key):
            params[f"slurm_{key}"] = getattr(opts, key)
    ex.update_parameters(**params)
    return ex


def submit(cfg: RunConfig, opts: SlurmOptions):
    """Submit `cfg` as a job of `opts`; returns the submitit job. The config is validated here
    (in one process: the batch is checked against the job's processes below)."""
    # the GPUs are on the job's nodes, not necessarily here: check the device there
    here = RunConfig.from_dict(cfg.to_dict())
    here.train.device = "auto"
    check_inputs(here.validate())
    if cfg.train.device.startswith("cuda") and not opts.gpus_per_node:
        raise ConfigError(f"train.device {cfg.train.device} needs GPUs, but the job asks for "
                          f"none: give --gpus-per-node")
    world = opts.nodes * (opts.tasks_per_node or opts.gpus_per_node or 1)
    if cfg.data.batch_size % world:
        raise ConfigError(f"data.batch_size {cfg.data.batch_size} must be a multiple of the "
                          f"{world} processes ({opts.nodes} nodes x "
                          f"{world // opts.nodes} per node)")
    return executor(opts, cfg.train.out).submit(TrainJob(cfg.to_dict()))


# --- the command line -----------------------------------------------------------------------

def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register `jessl submit` on an argparse subparsers object."""
    p = subparsers.add_parser(
        "submit", allow_abbrev=False,
        help="submit `jessl train` to SLURM (submitit), requeued on preemption",
        description=__doc__.split("\n\n")[0] + " Options not listed here are `jessl train`'s.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_slurm_arguments(p)
    p.set_defaults(run=run)
    return p


def add_slurm_arguments(p) -> None:
    """One option a SlurmOptions field (`--gpus-per-node`), documented by its comment; `jessl
    sweep --slurm` takes the same ones."""
    add_flags(p, SlurmOptions, dest=lambda name: f"slurm_{name}")


def slurm_options(args) -> SlurmOptions:
    """The SlurmOptions of parsed `add_slurm_arguments` options."""
    return SlurmOptions(**values(args, SlurmOptions, dest=lambda name: f"slurm_{name}"))


def run(args, train_argv: list[str]) -> int:
    """The `jessl submit` action: slurm options from args, the run from `jessl train` options."""
    from jessl.train import command
    opts = slurm_options(args)
    parser = argparse.ArgumentParser(prog="jessl submit")
    command.add_parser(parser.add_subparsers(dest="command", required=True))
    train_args = parser.parse_args(["train", *train_argv])
    try:
        cfg = command.config_from_args(train_args)
        job = submit(cfg, opts)
    except (ConfigError, ImportError) as err:  # ImportError: submitit is not installed
        print_error(err)
        return 2
    print(f"submitted job {job.job_id}: {cfg.method.name} -> {cfg.train.out} (logs: "
          f"{opts.folder or Path(cfg.train.out) / 'slurm'})")
    return 0


def main(argv: list[str]) -> int:
    """`jessl submit [slurm options] [train options]`."""
    parser = argparse.ArgumentParser(prog="jessl")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args, rest = parser.parse_known_args(["submit", *argv])
    return args.run(args, rest)
