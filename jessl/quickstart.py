"""`jessl quickstart`: a first pretraining run that needs no download and no GPU.

scikit-learn ships the UCI handwritten digits (1,797 greyscale 8x8 images, 10 classes) inside
its wheel, so this works offline on a fresh machine: the digits are split per class into a
train and a validation file, a small CNN is pretrained on them with SimCLR for a few epochs
(32 px views), and the run reports the online linear probe and the kNN accuracy of the trained
network against the same network at random initialisation.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

QUICK = {  # about a minute and a half on 2 busy cores (see `run`)
    "method.name": "simclr",
    "method.temperature": 0.1,  # SimCLR Table 5
    "model.backbone": "small_cnn",
    "data.batch_size": 128,  # 11 steps per epoch over the 1,438 training digits
    "optim.optimizer": "lars",
    "optim.lr": 0.3,  # per 256 images, SimCLR appendix B.1
    "optim.warmup_epochs": 0.5,
    "train.epochs": 4,
    "train.log_every": 5,
    "eval.baseline": True,  # the kNN of the untrained network: how far training moved it
}
VAL_FRACTION = 0.2  # per class, reproducible (seed 0): 1,438 train / 359 validation digits


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(N, 8, 8) uint8 images and (N,) labels of scikit-learn's bundled digits."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    # pixel values are 0..16 ink counts: stretch to the full 8-bit range
    images = np.clip(np.rint(digits.images * (255 / 16)), 0, 255).astype(np.uint8)
    return images, digits.target.astype(np.int64)


def write_digits(out: Path) -> tuple[Path, Path]:
    """The digits as two dataset files, split per class: (train, val)."""
    from jessl.data import convert
    from jessl.data.reader import Reader
    from jessl.eval.splits import stratified_split

    images, labels = digits_arrays()
    train_idx, val_idx = stratified_split(labels, fraction=VAL_FRACTION, seed=0)
    paths = []
    for name, idx in (("digits-train", train_idx), ("digits-val", val_idx)):
        path = out / f"{name}.jessl"
        result = convert([(images[i], int(labels[i])) for i in idx], path, overwrite=True,
                         workers=1, progress=False)
        with Reader(path) as reader:  # the file gives back exactly what went in
            same = all(np.array_equal(reader.read_image(j)[:, :, 0], images[i])
                       for j, i in enumerate(idx))
        if not same:
            raise RuntimeError(f"{path}: an image did not round-trip")
        print(f"wrote {path}: {result.records:,} digits, 8x8 grey, round trip exact")
        paths.append(path)
    return paths[0], paths[1]


def run(out: Path, overrides: dict | None = None) -> int:
    """Write the digits files, pretrain, print the probe and kNN accuracies; 0 on success."""
    from jessl.config import RunConfig
    from jessl.train.trainer import train

    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train_file, val_file = write_digits(out)
    run_dir = out / "run"
    if run_dir.exists():  # a quickstart run always starts over
        shutil.rmtree(run_dir)
    cfg = RunConfig()
    for key, value in {"data.train": str(train_file), "data.val": str(val_file),
                       "train.out": str(run_dir), **QUICK, **(overrides or {})}.items():
        cfg.set(key, value)
    cfg.validate()
    print(f"pretraining {cfg.method.name} on {cfg.model.backbone} for {cfg.train.epochs} "
          f"epochs (32 px views; run folder {run_dir})")
    m = train(cfg)
    seconds = time.perf_counter() - start
    k = cfg.eval.k
    print()
    rows = [("online linear probe, validation top-1", m["probe/backbone_val_top1"]),
            (f"kNN (k={k}) top-1, trained network", m["knn_top1"]),
            (f"kNN (k={k}) top-1, same network at random init", m["knn_top1_random_init"])]
    for label, value in rows:
        print(f"{label + ':':<48} {value:5.1f}%")
    print(f"pretraining moved the kNN by {m['knn_top1'] - m['knn_top1_random_init']:+.1f} points")
    print(f"done in {seconds:.0f} s; metrics, config and checkpoints are in {run_dir}")
    return 0
