"""Images and torch adapters shared by the ops tests."""

from pathlib import Path

import numpy as np
import pytest
import simplejpeg
import torch

from tests.conftest import SHARED_DATA

TENCH = "imagenet_sample1000/n01440764/n01440764_tench.JPEG"


def tench() -> np.ndarray:
    """A real 500x375 RGB photo (uint8 HWC), or skip saying what is missing."""
    path = Path(SHARED_DATA) / TENCH
    if not path.exists():
        pytest.skip(f"{path} is absent: the real images live in ../shared/data beside the repo")
    return simplejpeg.decode_jpeg(path.read_bytes(), colorspace="RGB")


def noise_image(height=48, width=64, channels=3, seed=0) -> np.ndarray:
    """Uniform random uint8 HWC: every level, no smoothness for a kernel to hide behind."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)


def images():
    """(name, image) pairs: the natural photo (a crop keeps tests fast) and a noise image."""
    return [("tench", np.ascontiguousarray(tench()[40:200, 60:260])), ("noise", noise_image())]


def to_torch(img: np.ndarray) -> torch.Tensor:
    """uint8 HWC numpy -> uint8 CHW tensor, the layout torchvision's functional ops take."""
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)


def from_torch(t: torch.Tensor) -> np.ndarray:
    return t.permute(1, 2, 0).contiguous().numpy()


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> int:
    assert a.shape == b.shape, (a.shape, b.shape)
    return int(np.abs(a.astype(np.int32) - b.astype(np.int32)).max())
