"""FFCV 1.0.2 on issue 17's protocol, so that `bench/loader_table.py --ffcv-python` measures its
column in the same run as jessl's and torchvision's instead of quoting another day's figures.

FFCV is not a jessl dependency (it builds against system libraries), so this script runs with
the Python of a virtual environment that has it, and imports nothing from jessl:

    apt-get install pkg-config libturbojpeg0-dev libopencv-dev
    python -m venv /tmp/ffcv-venv
    /tmp/ffcv-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 ffcv pillow
    /tmp/ffcv-venv/bin/python bench/loader_ffcv.py --max-side 256 --json ffcv256.json

It writes the ImageNet sample (1,000 photos, ../shared/data/imagenet_sample1000) to a .beton the
way FFCV's ImageNet example does (RGBImageField, write_mode "jpg", JPEG quality 90, longer side
at most --max-side, original size without it: FFCV re-encodes either way), then times FFCV's
Loader on the crops+flip pair: per view RandomResizedCropRGBImageDecoder((224, 224)) (scale
0.08-1, ratio 3/4-4/3, torchvision's defaults) + RandomHorizontalFlip + ToTensor +
ToTorchImage. FFCV 1.0.2 has one pipeline per field (FFCV-SSL added `custom_field_mapper` for
more), so the photo is stored twice, as fields "image" and "image_1", one view from each: FFCV
decodes every image twice, as it does for two views either way.
Two outputs, as jessl's columns: "uint8" (what FFCV hands over before its NormalizeImage runs on
a GPU) and "float" (+ NormalizeImage to float32 with ImageNet's mean and std, on the CPU). 2
workers, batch 64, order RANDOM, page cache on; one Loader per output (FFCV compiles its
pipeline per Loader, 10-20 s here), a warm-up epoch, then --repeats timed epochs, the median.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet_sample1000"
MEAN = np.array([0.485, 0.456, 0.406]) * 255  # ImageNet statistics, as jessl's byol views
STD = np.array([0.229, 0.224, 0.225]) * 255


class Folder:
    """The sample as FFCV's writer wants it: (RGB image, the same again, label), labels by
    sorted folder."""

    def __init__(self, root: Path):
        classes = sorted(p for p in root.iterdir() if p.is_dir())
        self.items = [(f, label) for label, c in enumerate(classes) for f in sorted(c.iterdir())]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        from PIL import Image
        path, label = self.items[i]
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
        return rgb, rgb, label


def write_beton(root: Path, out: Path, max_side: int | None, workers: int) -> None:
    from ffcv.fields import IntField, RGBImageField
    from ffcv.writer import DatasetWriter

    def image():
        return RGBImageField(write_mode="jpg", jpeg_quality=90,
                             **({"max_resolution": max_side} if max_side else {}))
    writer = DatasetWriter(str(out), {"image": image(), "image_1": image(), "label": IntField()},
                           num_workers=workers)
    writer.from_indexed_dataset(Folder(root))


def make_loader(path: Path, output: str, batch_size: int, workers: int):
    from ffcv.fields.decoders import IntDecoder, RandomResizedCropRGBImageDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import NormalizeImage, RandomHorizontalFlip, ToTensor, ToTorchImage

    def view():
        ops = [RandomResizedCropRGBImageDecoder((224, 224)), RandomHorizontalFlip()]
        if output == "float":  # FFCV's NormalizeImage works on HWC uint8, before ToTensor
            ops.append(NormalizeImage(MEAN, STD, np.float32))
        return ops + [ToTensor(), ToTorchImage()]
    return Loader(str(path), batch_size=batch_size, num_workers=workers,
                  order=OrderOption.RANDOM, os_cache=True, drop_last=False,
                  pipelines={"image": view(), "image_1": view(),
                             "label": [IntDecoder(), ToTensor()]})


def pairs_per_s(loader) -> float:
    start, pairs = time.perf_counter(), 0
    for image, _, _ in loader:  # the fields in the writer's order: image, image_1, label
        pairs += len(image)
    return pairs / (time.perf_counter() - start)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=SAMPLE, help="ImageFolder of JPEG photos")
    ap.add_argument("--max-side", type=int, default=None, help="longer side stored (FFCV's "
                    "max_resolution); default: original size")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="timed epochs (median)")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    from importlib.metadata import version  # ffcv.__version__ says 0.0.3rc1 in 1.0.2
    result = {"ffcv": version("ffcv"), "max_side": args.max_side}
    with tempfile.TemporaryDirectory(prefix="ffcv-") as tmp:
        beton = Path(tmp) / "sample.beton"
        write_beton(args.root, beton, args.max_side, args.workers)
        for output in ("uint8", "float"):
            start = time.perf_counter()
            loader = make_loader(beton, output, args.batch_size, args.workers)
            pairs_per_s(loader)  # warm-up: FFCV compiles its pipeline in the first epoch
            result[f"warm-up s, {output}"] = time.perf_counter() - start
            runs = [pairs_per_s(loader) for _ in range(args.repeats)]
            result[output] = statistics.median(runs)
            result[f"{output} runs"] = runs
    print(json.dumps(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    # without the interpreter's teardown, where numba's finalizers of FFCV 1.0.2's compiled
    # pipeline print pages of harmless KeyErrors
    os._exit(code)
