"""Which images a probe learns from and is tested on: dataset file pairs, per-class splits of a
file that has no test split, and a registry of the shared downstream datasets.

A dataset is named on the command line as
  * `cifar10`, `tinyimagenet`: a REGISTRY entry, whose files are looked up in the data roots;
  * `NAME=TRAIN[:TEST]`: an entry of your own (no TEST: a per-class split of TRAIN);
  * `TRAIN:TEST`: a file pair, named after TRAIN.
A file is a jessl dataset file (`jessl convert`). Where only the .npz of ../shared/data exists,
it is converted once into `<cache>/data/` and the copy is used from then on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jessl.errors import UserError
from jessl.eval.splits import stratified_split

DATA_ENV = "JESSL_DATA"  # a folder holding the registry's files (.jessl or .npz)
CACHE_ENV = "JESSL_CACHE"  # where converted files and features go (default ~/.cache/jessl)
SUFFIXES = (".jessl", ".npz")  # looked up in this order: a converted file is used as it is


class EvalError(UserError, ValueError):
    """Bad input to an evaluation (a missing file, an unknown name): one line, no traceback."""


@dataclass(frozen=True)
class DatasetEntry:
    """train / test: a file path, or a stem looked up in the data roots (`.jessl`, then `.npz`)."""
    train: str
    test: str | None = None  # None: hold out test_per_class images of each class of train
    test_per_class: int | None = None


REGISTRY: dict[str, DatasetEntry] = {
    # the official split: 5,000 / 1,000 images a class (Krizhevsky 2009), JPEG copies in shared/data
    "cifar10": DatasetEntry("cifar10_jpeg_train", "cifar10_jpeg_test"),
    # Tiny-ImageNet-200 has no labeled test split: its 50 validation images a class are split
    # 40 for training the probes and 10 for testing (shared/data/README.md)
    "tinyimagenet": DatasetEntry("tinyimagenet_jpeg_val", None, 10),
}


@dataclass(frozen=True)
class EvalData:
    """Resolved: the files and the records of each that the probes use (None: every record)."""
    name: str
    train: Path
    test: Path
    train_idx: np.ndarray | None = None
    test_idx: np.ndarray | None = None

    def describe(self) -> str:
        n_train = len(self.train_idx) if self.train_idx is not None else _records(self.train)
        n_test = len(self.test_idx) if self.test_idx is not None else _records(self.test)
        how = f"{self.train.name}" + ("" if self.test == self.train else f" / {self.test.name}")
        if self.test == self.train:
            how += " split per class"
        return f"{self.name} ({how}: {n_train:,} train / {n_test:,} test images)"


def parse_datasets(text: str, split_per_class: int | None = None) -> list[tuple[str, DatasetEntry]]:
    """"cifar10,mine=a.jessl:b.jessl,c.jessl:d.jessl" -> [(name, entry)], in order."""
    items = [s.strip() for s in text.split(",") if s.strip()]
    if not items:
        raise EvalError("no dataset named: give e.g. --datasets cifar10,tinyimagenet")
    return [parse_dataset(item, split_per_class) for item in items]


def parse_dataset(item: str, split_per_class: int | None = None) -> tuple[str, DatasetEntry]:
    """One dataset argument -> (name, entry); see the module docstring for the three forms."""
    if "=" in item:
        name, files = item.split("=", 1)
    elif item in REGISTRY:
        return item, REGISTRY[item]
    elif ":" in item or item.endswith(SUFFIXES):
        name, files = Path(item.split(":", 1)[0]).stem, item
    else:
        raise EvalError(f"unknown dataset {item!r}: known names {', '.join(sorted(REGISTRY))}, "
                        f"or give files as NAME=TRAIN[:TEST] or TRAIN:TEST")
    train, _, test = files.partition(":")
    if not name or not train:
        raise EvalError(f"cannot read dataset {item!r}: write NAME=TRAIN[:TEST]")
    if test:
        return name, DatasetEntry(train, test)
    if split_per_class is None:
        raise EvalError(f"dataset {name!r} has no test file: give NAME=TRAIN:TEST, or "
                        f"--split-per-class N to test on N images of each class of {train}")
    return name, DatasetEntry(train, None, split_per_class)


def data_roots(data_root=None) -> list[Path]:
    """Folders the registry's files are looked up in: --data-root, $JESSL_DATA, then
    ../shared/data beside the working directory and beside the jessl checkout."""
    if data_root is not None:
        return [Path(data_root)]
    roots = [Path(os.environ[DATA_ENV])] if os.environ.get(DATA_ENV) else []
    roots += [Path.cwd().parent / "shared" / "data",
              Path(__file__).resolve().parents[3] / "shared" / "data"]
    return list(dict.fromkeys(roots))


def cache_root(cache_dir=None) -> Path:
    """--cache-dir, $JESSL_CACHE, or ~/.cache/jessl (XDG_CACHE_HOME respected)."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "jessl"


def resolve_file(ref: str, roots: list[Path], cache: Path, say=print) -> Path:
    """A file argument or registry stem -> an existing dataset file, converting an .npz once.

    Order: the path as given; then for a bare stem `<root>/<stem>.jessl`, `<cache>/data/<stem>
    .jessl`, `<root>/<stem>.npz`. An .npz is converted to `<cache>/data/<stem>.jessl` (again
    only when the .npz is newer than that copy). Missing everywhere: EvalError naming the places.
    """
    found = locate_file(ref, roots, cache)
    return convert_once(found, cache, say) if found.suffix == ".npz" else found


def locate_file(ref: str, roots: list[Path], cache: Path) -> Path:
    """`resolve_file` without the conversion: the .jessl or .npz file `ref` names (cheap, so
    every dataset can be checked before the first is converted)."""
    path = Path(ref).expanduser()
    candidates = [path] if path.suffix in SUFFIXES or path.parent != Path(".") else []
    if not candidates:
        for suffix in SUFFIXES:
            candidates += [root / f"{ref}{suffix}" for root in roots]
            if suffix == ".jessl":
                candidates.append(cache / "data" / f"{ref}.jessl")
    for c in candidates:
        if c.is_file():
            return c
    if path.suffix in SUFFIXES or path.parent != Path("."):
        raise EvalError(f"dataset file {ref} does not exist")
    raise EvalError(f"dataset {ref!r}: neither {ref}.jessl nor {ref}.npz in "
                    f"{', '.join(str(r) for r in roots)} or {cache / 'data'}; pass --data-root "
                    f"DIR (the folder of the shared .npz files) or name the files as "
                    f"NAME=TRAIN.jessl:TEST.jessl (`jessl convert X.npz X.jessl` makes one)")


def convert_once(npz: Path, cache: Path, say=print) -> Path:
    """npz -> <cache>/data/<stem>.jessl, written only when missing or older than the npz."""
    out = cache / "data" / f"{npz.stem}.jessl"
    if out.is_file() and out.stat().st_mtime >= npz.stat().st_mtime:
        return out
    from jessl.data import convert
    say(f"converting {npz} -> {out} (once: later runs read the converted file)")
    try:
        convert(npz, out, overwrite=out.exists(), progress=False)
    except FileExistsError:  # another process converted it meanwhile (the write is atomic)
        pass
    return out


def file_labels(path: Path) -> np.ndarray:
    """(N,) int64 labels of a dataset file; EvalError for an unlabeled one."""
    from jessl.data.reader import Reader
    with Reader(path) as reader:
        labels = reader.labels
    if labels is None or not len(labels) or (labels < 0).all():
        raise EvalError(f"{path} has no labels: the probes need a labeled dataset file")
    return np.asarray(labels, np.int64)


def subsample_per_class(labels: np.ndarray, idx: np.ndarray | None, per_class: int,
                        seed: int) -> np.ndarray:
    """At most `per_class` of the records `idx` (None: all) from each class, drawn with seed;
    sorted. Classes with fewer keep all of theirs."""
    idx = np.arange(len(labels), dtype=np.int64) if idx is None else np.asarray(idx, np.int64)
    keep = []
    for c in np.unique(labels[idx]):
        members = idx[labels[idx] == c]
        rng = np.random.default_rng([seed, int(c), 1])  # 1: a stream apart from the test split's
        keep.append(rng.permutation(members)[:per_class])
    return np.sort(np.concatenate(keep)) if keep else idx[:0]


def load_data(name: str, entry: DatasetEntry, *, roots: list[Path], cache: Path, seed: int = 0,
              train_per_class: int | None = None, say=print) -> EvalData:
    """An entry -> EvalData: files resolved (converted if need be), splits drawn with `seed`."""
    train = resolve_file(entry.train, roots, cache, say)
    if entry.test is not None:
        test = resolve_file(entry.test, roots, cache, say)
        train_idx = test_idx = None
    else:
        test = train
        labels = file_labels(train)
        try:
            train_idx, test_idx = stratified_split(labels, test_per_class=entry.test_per_class,
                                                   seed=seed)
        except ValueError as err:
            raise EvalError(f"{name}: {err}") from None
    if train_per_class is not None:
        if train_per_class < 1:
            raise EvalError(f"--train-per-class must be >= 1, got {train_per_class}")
        train_idx = subsample_per_class(file_labels(train), train_idx, train_per_class, seed)
    return EvalData(name, train, test, train_idx, test_idx)


def _records(path: Path) -> int:
    from jessl.data.reader import Reader
    with Reader(path) as reader:
        return len(reader)
