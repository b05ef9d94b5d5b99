"""Shared fixtures: the real datasets in ../shared/data, skipped with a reason when absent."""

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_file(name: str) -> Path:
    """Path of a file in ../shared/data, or skip the test saying what is missing."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} is absent: the real datasets live in ../shared/data beside the repo")
    return path


@pytest.fixture
def cifar_test_npz() -> Path:
    return shared_file("cifar10_jpeg_test.npz")


@pytest.fixture
def imagenet_sample() -> Path:
    return shared_file("imagenet_sample1000")
