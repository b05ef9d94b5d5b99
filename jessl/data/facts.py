"""What the layers above need to know about a dataset file, and the view-size rule built on it.

The 32 px "_cifar" presets suit small images; the rule that picks them lives here, beside the
file it reads, so that the config (the method's preset), the trainer (the CIFAR stem, the eval
views) and `jessl eval` (a checkpoint's stem) all decide with the same function and none of
them imports another for it.
"""

from __future__ import annotations

SMALL_IMAGE_PX = 64  # images no larger than this get the 32 px "_cifar" presets (CIFAR, STL at 64)


def small_images(path) -> bool:
    """True when every image of the dataset file is at most 64 px on its longer side."""
    from jessl.data.reader import Reader
    with Reader(path) as reader:
        h, w = reader.index["image.height"], reader.index["image.width"]
        return bool(len(h)) and int(max(h.max(), w.max())) <= SMALL_IMAGE_PX


def eval_preset(small: bool) -> str:
    """The evaluation preset for images that are small (`small_images`) or not."""
    return "eval_cifar" if small else "eval"


def eval_views(path) -> str:
    """The evaluation preset that suits the file: "eval_cifar" for small images, else "eval"."""
    return eval_preset(small_images(path))
