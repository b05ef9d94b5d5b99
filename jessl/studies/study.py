"""A study file: one YAML that says which runs answer a question and how to read them.

    config: ../recipes/cifar10_simclr.yaml   # the base run: a config file (relative to this
                                             # file) or the config itself as a mapping
    overrides:                               # fixed for every run of the study
      train.epochs: 8
    grid:                                    # the cartesian product of these, first key slowest
      data.batch_size: [64, 256]
      optim.lr: [0.6, 1.2, 2.4]
    seeds: 2                                 # a count (seeds 0..N-1) or a list of seeds
    metric: knn                              # what `jessl report` shows: knn|linear|online|rankme
    x: optim.lr                              # the report's plot: a line over x (per y), or,
    y: data.batch_size                       # with both, a heatmap
    claim: "..."                             # free text (the paper's finding): kept, not read

`jessl sweep --study FILE --out DIR` runs it and `jessl report DIR` reads it back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from jessl.studies.grid import StudyError, seed_list, value_text
from jessl.studies.report import METRICS  # the metrics a report can read

KNOWN_KEYS = {"config", "overrides", "grid", "seeds", "metric", "x", "y", "name", "claim",
              "paper", "notes"}


@dataclass
class Study:
    """What a sweep runs: a base config, fixed overrides, a grid, seeds; and how to report it."""
    config: dict | None = None  # RunConfig.to_dict()-shaped mapping; None = the defaults
    config_path: str | None = None  # where `config` came from, for the manifest
    overrides: list[str] = field(default_factory=list)  # ["train.epochs=8", ...]
    grid: list[tuple[str, list]] = field(default_factory=list)
    seeds: list[int] | None = None
    metric: str = "knn"
    x: str | None = None
    y: str | None = None


def load_study(path) -> Study:
    """Read a study file (module docstring); errors name the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"study file {path} does not exist")
    try:
        d = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise StudyError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(d, dict):
        raise StudyError(f"{path}: a study file is a mapping (config, grid, seeds, metric ...)")
    unknown = sorted(set(d) - KNOWN_KEYS)
    if unknown:
        raise StudyError(f"{path}: unknown key(s) {unknown}; known: {sorted(KNOWN_KEYS)}")
    study = Study()
    config = d.get("config")
    if isinstance(config, str):
        config_path = (path.parent / config).resolve()
        study.config_path = str(config_path)
        study.config = _read_yaml_mapping(config_path, f"{path}: config")
    elif isinstance(config, dict):
        study.config, study.config_path = config, str(path)
    elif config is not None:
        raise StudyError(f"{path}: config must be a file name or a mapping, got {config!r}")
    overrides = d.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise StudyError(f"{path}: overrides must be a mapping of section.field: value")
    study.overrides = [f"{k}={value_text(v)}" for k, v in overrides.items()]
    grid = d.get("grid") or {}
    if not isinstance(grid, dict) or not all(isinstance(v, list) for v in grid.values()):
        raise StudyError(f"{path}: grid must map section.field to a list of values")
    study.grid = [(str(k), list(v)) for k, v in grid.items()]
    try:
        study.seeds = seed_list(d.get("seeds"))
    except ValueError as err:  # a StudyError, or a value yaml or the grid refused
        raise StudyError(f"{path}: {err}") from None
    study.metric = d.get("metric", "knn")
    if study.metric not in METRICS:
        raise StudyError(f"{path}: metric {study.metric!r} is not one of {', '.join(METRICS)}")
    study.x, study.y = d.get("x"), d.get("y")
    return study


def _read_yaml_mapping(path: Path, what: str) -> dict:
    if not path.is_file():
        raise StudyError(f"{what}: {path} does not exist")
    try:
        d = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise StudyError(f"{what}: {path} is not valid YAML: {err}") from None
    if not isinstance(d, dict):
        raise StudyError(f"{what}: {path} is not a mapping of config sections")
    return d
