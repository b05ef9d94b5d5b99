"""A grid of config overrides -> the points of a sweep, each with a run-folder name.

    grid = [("optim.lr", [0.3, 0.6]), ("data.batch_size", [64, 256])]
    points = expand_grid(grid, seeds=[0, 1])
    points[0].name        # "lr=0.3_batch_size=64_seed=0"
    points[0].overrides   # {"optim.lr": 0.3, "data.batch_size": 64, "train.seed": 0}

The points are the cartesian product of the grid in the order its keys are given, the first key
varying slowest and the seed fastest, so the seeds of one setting run one after another.

A name is `field=value` for every key of the point joined by `_`: the field without its section
(`method.name` is `method`), or the whole dotted key where two keys of the grid share a field
name (`optim.lr` and `probe.lr`). Names hold only `A-Z a-z 0-9 . _ = + -`, and `=` only after
a key, so distinct values give distinct names; a value with any other
character, or a name longer than MAX_NAME, is cut and given the first 8 hex digits of the
SHA-1 of the point's overrides, so two points never share a folder. The name says what a run is
at a glance; the run's config.yaml, not its name, is what a report reads.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass

import yaml

from jessl.errors import UserError


class StudyError(UserError, ValueError):
    """A grid, seed list, study file or report request that cannot be used: the message names
    the file, key or value (a ValueError too, for callers that catch that)."""


SEED_KEY = "train.seed"
MAX_NAME = 96  # characters; file systems allow 255, shells and SLURM logs are happier short
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")  # `=` marks a key: never inside a value
_SHORT = {"method.name": "method"}  # a field name that says nothing on its own


@dataclass(frozen=True)
class Point:
    """One run of a sweep: its folder name and the overrides that make it (key -> value)."""
    name: str
    overrides: dict

    def override_args(self) -> list[str]:
        """["optim.lr=0.3", ...]: the form `RunConfig.apply_overrides` reads."""
        return [f"{k}={value_text(v)}" for k, v in self.overrides.items()]


def expand_grid(grid: list[tuple[str, list]], seeds: list[int] | None = None) -> list[Point]:
    """The cartesian product of `grid` ([(key, values)], first key slowest), with the seed as the
    last, fastest key when `seeds` is given; one Point per combination."""
    grid = [(key, list(values)) for key, values in grid]
    keys = [key for key, _ in grid]
    if len(set(keys)) != len(keys):
        raise StudyError(f"a grid key is given twice: {keys}")
    for key, values in grid:
        if not values:
            raise StudyError(f"grid key {key}: no values")
        if len({value_text(v) for v in values}) != len(values):
            raise StudyError(f"grid key {key}: a value is given twice: {values}")
    if seeds is not None:
        if SEED_KEY in keys:
            raise StudyError(f"give seeds with --seeds or as a {SEED_KEY} grid, not both")
        grid.append((SEED_KEY, list(seeds)))
    labels = short_names([key for key, _ in grid])
    points = []
    for combo in itertools.product(*(values for _, values in grid)):
        overrides = dict(zip((key for key, _ in grid), combo))
        points.append(Point(run_name(overrides, labels), overrides))
    names = [p.name for p in points]
    if len(set(names)) != len(names):  # only a SHA-1 collision could get here
        raise StudyError(f"two points of the grid got the same folder name: {names}")
    return points


def short_names(keys: list[str]) -> dict[str, str]:
    """{key: the label used in run names}: the field name, unless two keys share it."""
    field = {k: _SHORT.get(k, k.split(".")[-1]) for k in keys}
    counts = {}
    for label in field.values():
        counts[label] = counts.get(label, 0) + 1
    return {k: field[k] if counts[field[k]] == 1 else k for k in keys}


def run_name(overrides: dict, labels: dict[str, str] | None = None) -> str:
    """The folder name of a point (module docstring): safe characters, short, unique."""
    if not overrides:
        return "base"
    labels = labels or short_names(list(overrides))
    parts, changed = [], False
    for key, value in overrides.items():
        text = value_text(value)
        safe = _UNSAFE.sub("-", text) or "-"
        changed |= safe != text
        parts.append(f"{labels[key]}={safe}")
    name = "_".join(parts)
    if changed or len(name) > MAX_NAME:
        digest = hashlib.sha1(json.dumps(
            {k: value_text(v) for k, v in overrides.items()}, sort_keys=True).encode()).hexdigest()
        name = f"{name[:MAX_NAME - 9]}-{digest[:8]}"
    return name


def value_text(value) -> str:
    """A grid value as the command line writes it: true/false, none, numbers as Python does."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return ",".join(value_text(v) for v in value)
    return str(value)


def parse_grid_arg(text: str) -> tuple[str, list]:
    """`optim.lr=0.3,0.6,1.2` -> ("optim.lr", ["0.3", "0.6", "1.2"]); a YAML list
    (`key=[a, b]`) for values that hold commas. Values stay strings: the config types them."""
    key, sep, values = text.partition("=")
    key = key.strip().lstrip("-").replace("-", "_")
    if not sep or not key or not values.strip():
        raise StudyError(f"--grid {text!r}: write section.field=V1,V2,...")
    values = values.strip()
    if values.startswith("["):
        try:
            parsed = yaml.safe_load(values)
        except yaml.YAMLError as err:
            raise StudyError(f"--grid {text!r}: not a YAML list: {err}") from None
        if not isinstance(parsed, list):
            raise StudyError(f"--grid {text!r}: not a YAML list")
        return key, parsed
    return key, [v.strip() for v in values.split(",") if v.strip()]


def seed_list(seeds) -> list[int] | None:
    """`--seeds N` or a study's `seeds:` (N, or a list) -> [0 .. N-1] or the list; None: none."""
    if seeds is None:
        return None
    if isinstance(seeds, bool):
        raise StudyError(f"seeds must be a count or a list of seeds, got {seeds!r}")
    if isinstance(seeds, int):
        if seeds < 1:
            raise StudyError(f"seeds must be >= 1, got {seeds}")
        return list(range(seeds))
    if isinstance(seeds, list) and seeds and all(isinstance(s, int) and not isinstance(s, bool)
                                                 for s in seeds):
        return list(seeds)
    raise StudyError(f"seeds must be a count or a list of integer seeds, got {seeds!r}")
