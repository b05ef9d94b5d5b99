"""What the layers above need to know about a dataset file, read once, and the view-size rule.

On the way to the first training step, the config (the batch against the file's size, the
method's preset), the trainer (the CIFAR stem, the eval views, the loader) and `jessl eval` each
want a fact about the train file. Opening it validates its whole index, so `shared_reader`
keeps one validated Reader per file and every layer asks it: `jessl train` opens the train file
once before the first step (tests/train/test_open_once.py counts it). A file that changes on
disk (another size, modification time or inode) is opened afresh.

The 32 px "_cifar" presets suit small images; the rule that picks them lives here too, so that
config, trainer and eval all decide with the same function and none imports another for it.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass

SMALL_IMAGE_PX = 64  # images no larger than this get the 32 px "_cifar" presets (CIFAR, STL at 64)
KEEP_READERS = 4  # files kept open: train and val of a run, and those of a probe, with room

_readers: OrderedDict = OrderedDict()  # file identity -> Reader, newest last


def _identity(path) -> tuple:
    """(real path, device, inode, size, modification time): a rewritten file is another file."""
    real = os.path.realpath(path)
    st = os.stat(real)
    return real, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def shared_reader(path):
    """The validated Reader of the dataset file at `path`, opened on the first call for this
    version of the file; callers read from it and never close it (the map closes when the
    last user drops it). Raises what Reader raises for a missing or damaged file."""
    from jessl.data.reader import Reader
    try:
        key = _identity(path)
    except FileNotFoundError:
        return Reader(path)  # Reader's own message names the file
    reader = _readers.pop(key, None) or Reader(path)
    _readers[key] = reader
    while len(_readers) > KEEP_READERS:
        _readers.popitem(last=False)
    return reader


@dataclass(frozen=True)
class FileFacts:
    images: int  # records in the file
    max_side: int  # px, the longest side of any image; 0 for a file without records

    @property
    def small(self) -> bool:
        """Every image at most SMALL_IMAGE_PX on its longer side (and at least one image)."""
        return 0 < self.max_side <= SMALL_IMAGE_PX


def file_facts(path) -> FileFacts:
    """Records and the longest image side of a dataset file, from its (shared) index."""
    reader = shared_reader(path)
    h, w = reader.index["image.height"], reader.index["image.width"]
    return FileFacts(len(reader), int(max(h.max(), w.max())) if len(h) else 0)


def small_images(path) -> bool:
    """True when every image of the dataset file is at most 64 px on its longer side."""
    return file_facts(path).small


def eval_preset(small: bool) -> str:
    """The evaluation preset for images that are small (`small_images`) or not."""
    return "eval_cifar" if small else "eval"


def eval_views(path) -> str:
    """The evaluation preset that suits the file: "eval_cifar" for small images, else "eval"."""
    return eval_preset(small_images(path))
