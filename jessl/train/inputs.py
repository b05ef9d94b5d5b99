"""What a run's config names on disk, checked where the trainer opens it.

`RunConfig.validate()` checks values alone, each section its own, with no file system, so a
config can be checked where its files are not (a sweep's grid before its runs, a SLURM submit
host). `check_inputs` is the rest, before any work: the run folder and the checkpoint to
resume, the dataset files, and what the run asks of the train file (a batch no larger than
it, a view preset for its image size). The train file is opened through `shared_reader`, the
Reader that the trainer and the loader then use, so it is opened once.
"""

from __future__ import annotations

from pathlib import Path

from jessl.config import ConfigError, RunConfig


def check_inputs(cfg: RunConfig) -> None:
    """ConfigError naming the field, for a run folder, checkpoint or dataset file the run
    cannot use; `cfg` is validated already."""
    check_run_folder(cfg.train.out, cfg.train.resume)
    check_data(cfg)


def check_run_folder(out: str, resume: str) -> None:
    """A fresh run does not overwrite one, and a checkpoint to resume from exists."""
    if not resume and any((Path(out) / "checkpoints").glob("*.pt")):
        raise ConfigError(f"train.out: {out} already holds a run; continue it with "
                          f"--train.resume auto, or choose another --train.out")
    if resume and resume != "auto" and not Path(resume).is_file():
        raise ConfigError(f"train.resume: checkpoint {resume} does not exist "
                          f"(give a file, or 'auto' for the newest in the run folder)")


def check_data(cfg: RunConfig) -> None:
    """The dataset files exist, the train file reads, and the batch and views suit it."""
    from jessl.data.facts import shared_reader
    from jessl.data.views import PRESETS
    d = cfg.data
    for name, path in (("data.train", d.train), ("data.val", d.val)):
        if path and not Path(path).is_file():
            raise ConfigError(f"{name}: dataset file {path} does not exist")
    try:  # the header and index only: the trainer and the loader use this same Reader
        n = len(shared_reader(d.train))
    except Exception as err:
        raise ConfigError(f"data.train: {d.train} is not a readable dataset file: {err}") \
            from None
    if d.batch_size > n:
        raise ConfigError(f"data.batch_size {d.batch_size} is larger than the {n} images "
                          f"of {d.train}: with drop_last no batch would be left")
    preset = cfg.views_preset()  # the method's, + "_cifar" for small images
    if preset not in PRESETS:
        raise ConfigError(f"data.views: method {cfg.method.name!r} asks for view preset "
                          f"{preset!r}, which jessl.data.views does not define; name one with "
                          f"--data.views (known: {', '.join(sorted(PRESETS))})")
    full = min(cfg.checked_views()[0].hw)
    if cfg.progressive.min_size > full:
        raise ConfigError(f"progressive.min_size {cfg.progressive.min_size} is larger than the "
                          f"views' size {full}")
    if cfg.hard_augment.active:
        from jessl.data.views import resolve_views
        pair = resolve_views(preset)
        if len(pair) < 2 or pair[0].hw != pair[1].hw:
            raise ConfigError(f"hard_augment: view preset {preset!r} has no pair of same-size "
                              f"views to mine")
