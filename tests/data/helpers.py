"""Small image files made in memory for the dataset-file tests."""

import io

import numpy as np
from PIL import Image


def natural_like(h: int, w: int, c: int = 3, seed: int = 0) -> np.ndarray:
    """A smooth uint8 image (gradients + a little noise): JPEG-friendly, not constant."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)),
                     ((x + y) * 127 // max(h + w - 2, 1))], axis=-1)[:, :, :c]
    noise = rng.integers(0, 8, size=base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def encode(array_or_image, fmt: str, **kw) -> bytes:
    image = array_or_image if isinstance(array_or_image, Image.Image) else Image.fromarray(
        array_or_image.squeeze(-1) if array_or_image.ndim == 3 and array_or_image.shape[2] == 1
        else array_or_image)
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def pillow_decode(data: bytes) -> np.ndarray:
    """How a torchvision user reads a file: Pillow, grey kept as (H, W, 1)."""
    array = np.asarray(Image.open(io.BytesIO(data)))
    return array[:, :, None] if array.ndim == 2 else array
