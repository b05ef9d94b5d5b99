"""How far the loader's crops are from torchvision's, pixel for pixel, default and exact mode.

For each view size the same random crop + flip parameters (the loader's own draw, replayed
through `jessl.data.sampler`) are applied by torchvision v2 to the Pillow decode of the same
JPEG bytes (`F.resized_crop(..., antialias=True)` on the uint8 tensor, then `F.horizontal_flip`)
and by the loader (`output="uint8"`, no colour ops): the absolute difference in uint8 levels,
mean and max over every pixel, is printed for `Loader(exact=False)` (the default: JPEGs decoded
at the smallest DCT scale the crops allow) and `Loader(exact=True)` (full-size decode).

    python bench/loader_accuracy.py [--images 200] [--sizes 32,64,96,224]

Reads ../shared/data/imagenet_sample1000 (full-size photos); the figures it printed are in
docs/loader_accuracy.md.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path

import numpy as np

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet_sample1000"


def reference_view(jpeg: bytes, box, flip: bool, size: int) -> np.ndarray:
    """torchvision v2's RandomResizedCrop (+ flip) for a given box, on Pillow's decode."""
    from PIL import Image
    from torchvision.transforms.v2 import functional as F
    image = F.pil_to_tensor(Image.open(io.BytesIO(jpeg)).convert("RGB"))
    top, left, h, w = (int(v) for v in box)
    out = F.resized_crop(image, top, left, h, w, [size, size], antialias=True)
    if flip:
        out = F.horizontal_flip(out)
    return out.numpy().astype(np.int16)


def measure(path, size: int, exact: bool, images: int) -> tuple[float, int, float]:
    """(mean |diff|, max |diff|, share of pixels off by more than 2 levels) over `images`."""
    from jessl.data import sampler as S
    from jessl.data.loader import Loader
    from jessl.data.ops import crop, flip
    from jessl.data.views import View
    view = View(size=size, flip_p=0.5)
    loader = Loader(path, images, [view], order="sequential", seed=1, output="uint8",
                    num_threads=1, exact=exact)
    batch = next(iter(loader))
    reader = loader.reader
    records = batch.indices.numpy()
    h = reader.index["image.height"][records].astype(np.int64)
    w = reader.index["image.width"][records].astype(np.int64)
    params = S.view_params(*S.sample_chunk(loader.seed, batch.epoch, records, h, w,
                                           S.view_configs([view])), 0)
    boxes, flips = params.ints(crop.SPEC), params.ints(flip.SPEC)[:, flip.INTS.on]
    diffs = []
    for j, record in enumerate(records):
        box = tuple(int(v) for v in boxes[j])  # (top, left, h, w): crop.INTS
        ref = reference_view(reader.blob(int(record)).tobytes(), box, bool(flips[j]), size)
        diffs.append(np.abs(batch.views[0][j].numpy().astype(np.int16) - ref).ravel())
    d = np.concatenate(diffs)
    return float(d.mean()), int(d.max()), float((d > 2).mean())


def kernel_bounds(path, boxes: int = 4000, seed: int = 0) -> dict:
    """|ops.resized_crop - torchvision| per backend, on random boxes of the photos' full
    decodes resized to random view sizes (16-256 px): {backend: (mean, max)} in levels."""
    import torch
    from torchvision.transforms.v2 import functional as F
    from jessl.data.ops.crop import resized_crop
    from jessl.data.reader import Reader
    rng = np.random.default_rng(seed)
    sums = {"numba": [0.0, 0, 0], "cv2": [0.0, 0, 0]}
    with Reader(path) as reader:
        photos = [reader.read_image(i) for i in range(min(len(reader), 50))]
    for _ in range(boxes):
        src = photos[rng.integers(len(photos))]
        if src.shape[2] == 1:
            continue
        H, W = src.shape[:2]
        h, w = int(rng.integers(1, H + 1)), int(rng.integers(1, W + 1))
        top, left = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
        out_h, out_w = int(rng.integers(16, 257)), int(rng.integers(16, 257))
        ref = F.resized_crop(torch.from_numpy(src).permute(2, 0, 1), top, left, h, w,
                             [out_h, out_w], antialias=True).permute(1, 2, 0).numpy()
        for backend, acc in sums.items():
            dst = np.empty((out_h, out_w, 3), np.uint8)
            resized_crop(src, (top, left, h, w), dst, backend=backend)
            d = np.abs(dst.astype(np.int16) - ref)
            acc[0] += float(d.sum())
            acc[1] = max(acc[1], int(d.max()))
            acc[2] += d.size
    return {b: (acc[0] / max(acc[2], 1), acc[1]) for b, acc in sums.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--sizes", default="32,64,96,224")
    parser.add_argument("--kernels", type=int, default=0, metavar="N",
                        help="also measure ops.resized_crop's backends on N random boxes")
    args = parser.parse_args(argv)
    if not SAMPLE.is_dir():
        print(f"{SAMPLE} is absent: this benchmark needs the ImageNet sample", file=sys.stderr)
        return 1
    from jessl.data import convert
    from jessl.data.sources import ImageFolderSource
    source = ImageFolderSource(SAMPLE)
    source.files, source.labels = source.files[:args.images], source.labels[:args.images]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sample.jessl"
        convert(source, path, progress=False)  # JPEGs stored byte for byte
        print(f"{args.images} ImageNet photos, crop + flip views, |jessl - torchvision| in uint8 "
              f"levels")
        print(f"{'size':>5} {'mode':>8} {'mean':>7} {'max':>5} {'>2 levels':>10}")
        if args.kernels:
            for backend, (mean, worst) in kernel_bounds(path, args.kernels).items():
                print(f"ops.resized_crop backend {backend}: mean {mean:.3f}, max {worst} levels "
                      f"from torchvision over {args.kernels} random boxes and sizes")
        for size in map(int, args.sizes.split(",")):
            for exact in (False, True):
                mean, worst, share = measure(path, size, exact, args.images)
                print(f"{size:>5} {'exact' if exact else 'default':>8} {mean:>7.3f} "
                      f"{worst:>5} {100 * share:>9.3f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
