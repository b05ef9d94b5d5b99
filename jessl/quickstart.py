"""`jessl quickstart`: a first run that needs no download.

scikit-learn ships the UCI handwritten digits (1,797 greyscale 8x8 images, 10 classes) inside
its wheel, so this works offline on a fresh machine: the digits go into a dataset file, which is
then inspected and verified end to end.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(N, 8, 8) uint8 images and (N,) labels of scikit-learn's bundled digits."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    # pixel values are 0..16 ink counts: stretch to the full 8-bit range
    images = np.clip(np.rint(digits.images * (255 / 16)), 0, 255).astype(np.uint8)
    return images, digits.target.astype(np.int64)


def run(out: Path) -> int:
    from jessl.data import convert
    from jessl.data.inspect import format_summary, summarize, verify_file
    from jessl.data.reader import Reader

    images, labels = digits_arrays()
    dataset = [(img, int(y)) for img, y in zip(images, labels)]
    path = out / "digits.jessl"
    result = convert(dataset, path, overwrite=True, workers=1, progress=False)
    print(f"wrote {path}: {result.records:,} records ({result.images_per_s:,.0f} images/s)")
    with Reader(path) as reader:
        print(format_summary(summarize(reader)))
        same = all(np.array_equal(reader.read_image(i)[:, :, 0], images[i])
                   for i in range(len(reader)))
    failures = verify_file(path)
    print(f"round trip: {'every image identical to the source' if same else 'MISMATCH'}; "
          f"verify: {len(failures)} failures")
    return 0 if same and not failures else 1
