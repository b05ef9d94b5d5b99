"""What the writer reads from: image folders, .npz files and any indexable Python dataset.

A source has a length, a schema for what it adds beside the image (label, name) and
`item(i) -> Item`. Items carry the *encoded* bytes of files whenever there are some, so the
worker can pass a JPEG through without decoding it. Sources open their files lazily and drop
them when pickled, so each worker process holds its own handle.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from jessl.errors import UserError

# torchvision.datasets.folder.IMG_EXTENSIONS, so a folder converts to the same records
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class SourceError(UserError, ValueError):
    """A source that cannot be read as a whole (missing keys, inconsistent arrays ...)."""


@dataclass
class Item:
    name: str  # what a person finds the record by: a relative path, or "x[12]"
    image: object  # encoded bytes, a uint8 array or a PIL image
    label: int | None = None
    extras: dict = field(default_factory=dict)


class ImageFolderSource:
    """ImageFolder layout (root/class/**/image), or a flat folder of unlabeled images."""

    kind = "image_folder"

    def __init__(self, root):
        self.root = Path(root)
        if not self.root.is_dir():
            raise SourceError(f"{self.root}: not a folder")
        class_dirs = sorted(d.name for d in os.scandir(self.root) if d.is_dir())
        files, labels = [], []
        # torchvision's rule: one label per sorted subfolder, images found recursively in it
        for label, name in enumerate(class_dirs):
            found = sorted(_images_under(self.root / name))
            files += found
            labels += [label] * len(found)
        self.classes = class_dirs if files else None
        if not files:  # no class folders with images: a flat folder without labels
            files = sorted(p for p in _images_under(self.root, recursive=False))
            labels = None
        if not files:
            raise SourceError(f"{self.root}: no images with extensions {IMG_EXTENSIONS}")
        self.files = [str(p.relative_to(self.root)) for p in files]
        self.labels = labels
        self.fields = ([{"name": "label", "type": "int"}] if labels is not None else []) + [
            {"name": "name", "type": "str"}]

    def __len__(self) -> int:
        return len(self.files)

    def item(self, i: int) -> Item:
        name = self.files[i]
        with open(self.root / name, "rb") as f:
            data = f.read()
        label = self.labels[i] if self.labels is not None else None
        return Item(name, data, label, {"name": name})


def _images_under(folder: Path, recursive: bool = True):
    walk = folder.rglob("*") if recursive else folder.iterdir()
    return (p for p in walk if p.suffix.lower() in IMG_EXTENSIONS and p.is_file())


class _NpzSource:
    """Shared by both .npz layouts: the arrays are loaded once per process, on first use."""

    def __init__(self, path):
        self.path = Path(path)
        self._arrays = None
        with np.load(self.path, allow_pickle=False) as npz:
            self.keys = set(npz.files)
            self._check(npz)

    def __getstate__(self):
        return {**self.__dict__, "_arrays": None}

    @property
    def arrays(self) -> dict:
        if self._arrays is None:
            with np.load(self.path, allow_pickle=False) as npz:
                self._arrays = {k: npz[k] for k in npz.files}
        return self._arrays

    def _labels(self, npz, n: int):
        if "y" not in npz.files:
            return None
        y = npz["y"]
        if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
            raise SourceError(f"{self.path}: 'y' must be {n} integers, got {y.dtype} {y.shape}")
        return y

    def _classes(self, npz):
        for key in ("class_names", "classes"):
            if key in npz.files:
                return [str(c) for c in npz[key].tolist()]
        return None


class NpzJpegSource(_NpzSource):
    """`jpeg` (flat uint8, files back to back), `offsets` (N+1), optional `y`, `names`."""

    kind = "npz_jpeg"

    def _check(self, npz):
        jpeg, offsets = npz["jpeg"], npz["offsets"]
        n = len(offsets) - 1
        if jpeg.dtype != np.uint8 or jpeg.ndim != 1:
            raise SourceError(f"{self.path}: 'jpeg' must be a flat uint8 array")
        if n < 1 or offsets[0] != 0 or offsets[-1] != len(jpeg) or (np.diff(offsets) < 0).any():
            raise SourceError(f"{self.path}: 'offsets' must rise from 0 to len(jpeg)={len(jpeg)}")
        self.n = n
        self.labels = self._labels(npz, n)
        self.classes = self._classes(npz)
        self.has_names = "names" in npz.files
        self.fields = ([{"name": "label", "type": "int"}] if self.labels is not None else []) + [
            {"name": "name", "type": "str"}]

    def __len__(self) -> int:
        return self.n

    def item(self, i: int) -> Item:
        a = self.arrays
        lo, hi = int(a["offsets"][i]), int(a["offsets"][i + 1])
        name = str(a["names"][i]) if self.has_names else f"jpeg[{i}]"
        label = int(self.labels[i]) if self.labels is not None else None
        return Item(name, a["jpeg"][lo:hi].tobytes(), label, {"name": name})


class NpzArraySource(_NpzSource):
    """`x` uint8 (N, H, W) or (N, H, W, C) pixels and optional `y` labels."""

    kind = "npz_array"

    def _check(self, npz):
        x = npz["x"]
        if x.ndim not in (3, 4) or len(x) < 1:
            raise SourceError(f"{self.path}: 'x' must be (N, H, W) or (N, H, W, C), "
                              f"got shape {x.shape}")
        self.n = len(x)
        self.labels = self._labels(npz, self.n)
        self.classes = self._classes(npz)
        self.fields = [{"name": "label", "type": "int"}] if self.labels is not None else []

    def __len__(self) -> int:
        return self.n

    def item(self, i: int) -> Item:
        label = int(self.labels[i]) if self.labels is not None else None
        return Item(f"x[{i}]", self.arrays["x"][i], label)


def open_npz(path) -> _NpzSource:
    """The .npz source for whichever of the two layouts the file has."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
    except (OSError, ValueError) as err:
        raise SourceError(f"{path}: not a readable .npz file: {err}") from None
    if {"jpeg", "offsets"} <= keys:
        return NpzJpegSource(path)
    if "x" in keys:
        return NpzArraySource(path)
    raise SourceError(f"{path}: expected keys 'x' (+ 'y') or 'jpeg' + 'offsets' (+ 'y'), "
                      f"found {sorted(keys)}")


class DatasetSource:
    """Any indexable returning (image, label), (image, label, extras) or a dict with "image".

    Images may be encoded bytes, a path, a uint8 array or a PIL image. `fields` maps each
    extra field's name to its type (int, float, bytes, str, json); when omitted it is inferred
    from the first record.
    """

    kind = "python"

    def __init__(self, dataset, fields: dict | None = None, classes=None, labeled: bool = True):
        self.dataset = dataset
        self.classes = list(classes) if classes is not None else getattr(dataset, "classes", None)
        first = self._unpack(dataset[0], 0)
        if fields is None:
            fields = {k: _infer_type(k, v) for k, v in first.extras.items()}
        self.labeled = labeled and first.label is not None
        self.fields = ([{"name": "label", "type": "int"}] if self.labeled else []) + [
            {"name": k, "type": t} for k, t in fields.items()]

    def __len__(self) -> int:
        return len(self.dataset)

    def item(self, i: int) -> Item:
        return self._unpack(self.dataset[i], i)

    def _unpack(self, record, i: int) -> Item:
        if isinstance(record, dict):
            record = dict(record)
            image, label = record.pop("image"), record.pop("label", None)
            extras = record
        elif isinstance(record, (tuple, list)) and len(record) in (2, 3):
            image, label = record[0], record[1]
            extras = dict(record[2]) if len(record) == 3 else {}
        else:
            raise SourceError(f"record {i}: expected (image, label[, extras]) or a dict with "
                              f"'image', got {type(record).__name__}")
        if isinstance(image, (str, os.PathLike)):
            with open(image, "rb") as f:
                name, image = str(image), f.read()
        else:
            name = f"[{i}]"
        return Item(name, image, None if label is None else int(label), extras)


def _infer_type(name: str, value) -> str:
    if isinstance(value, (bool, int, np.integer)):
        return "int"
    if isinstance(value, (float, np.floating)):
        return "float"
    if isinstance(value, (bytes, bytearray)):
        return "bytes"
    if isinstance(value, str):
        return "str"
    try:
        json.dumps(value)
    except TypeError:
        raise SourceError(f"extra field {name!r}: cannot store a {type(value).__name__}") from None
    return "json"


def open_source(src):
    """A folder or .npz path becomes its source; an indexable dataset is wrapped as is."""
    if isinstance(src, (str, os.PathLike)):
        path = Path(src)
        if path.is_dir():
            return ImageFolderSource(path)
        if path.suffix == ".npz" and path.is_file():
            return open_npz(path)
        if not path.exists():
            raise SourceError(f"{path}: no such file or folder")
        raise SourceError(f"{path}: expected an image folder or a .npz file")
    if hasattr(src, "item") and hasattr(src, "fields"):
        return src
    return DatasetSource(src)
