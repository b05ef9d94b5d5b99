"""The scripts under bench/ are not a package: tests load them by path."""

import importlib.util
from pathlib import Path

BENCH = Path(__file__).parents[1] / "bench"


def load(name: str):
    """bench/<name>.py as a fresh module."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
