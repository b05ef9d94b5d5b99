"""Tiny dataset files for the trainer tests: each class a distinct colour, so any working
probe beats chance within a few steps."""

from pathlib import Path

import numpy as np
import pytest

COLOURS = [(220, 40, 40), (40, 200, 40), (40, 40, 220), (220, 220, 40)]  # one per class


def colour_images(n_per_class: int, size: int = 16, seed: int = 0):
    """[(uint8 (size, size, 3) image, label)]: class colour + a little noise, classes interleaved."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n_per_class):
        for label, colour in enumerate(COLOURS):
            img = np.clip(np.array(colour)[None, None, :] + rng.integers(-30, 30, (size, size, 3)),
                          0, 255).astype(np.uint8)
            items.append((img, label))
    return items


def write_file(path: Path, items) -> Path:
    from jessl.data import convert
    convert(items, path, overwrite=True, workers=1, progress=False)
    return path


@pytest.fixture(scope="session")
def tiny_files(tmp_path_factory):
    """(train, val): 64 and 32 colour images of 16 px, 4 classes."""
    folder = tmp_path_factory.mktemp("tiny-data")
    train = write_file(folder / "train.jessl", colour_images(16, seed=0))
    val = write_file(folder / "val.jessl", colour_images(8, seed=1))
    return train, val


def tiny_overrides(train, val, out, extra: dict | None = None) -> list[str]:
    """The smallest run that still exercises everything: small_cnn, batch 16, 1 thread."""
    fields = {"data.train": train, "data.val": val, "data.batch_size": 16, "data.threads": 1,
              "model.backbone": "small_cnn", "model.projector": "64-32",
              "optim.optimizer": "sgd", "optim.lr": 0.1, "optim.warmup_epochs": 1,
              "train.epochs": 2, "train.threads": 1, "train.out": out, "train.log_every": 1,
              "train.progress": False, "eval.k": 20, "eval.batch_size": 64}
    fields.update(extra or {})
    return [f"{k}={v}" for k, v in fields.items()]
