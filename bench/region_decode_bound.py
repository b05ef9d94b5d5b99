"""How much of a photo the views need: the ceiling on what a region (partial) JPEG decode saves.

Issue 17 asks the loader to decode only the region its views need (libjpeg-turbo's
jpeg_crop_scanline / jpeg_skip_scanlines, or a lossless crop then a decode, at whole-MCU
granularity). Before wiring a second JPEG library in, this measures what it could give: for
every photo of the ImageNet sample it draws the loader's own crop boxes of the BYOL pair
(RandomResizedCrop 0.08-1 at 224 px, the sampler jessl trains with, seeds 0, epochs 0-4) and
reports, as fractions of the photo:

    union        the MCU blocks inside either view's box: all a region decode must inverse-DCT
                 and colour-convert
    bounding box the smallest rectangle holding both boxes (a single crop region)
    rows         the rows down to the lower box's bottom edge: a top-down decoder still
                 entropy-decodes every MCU row above it (skip_scanlines skips the IDCT, not
                 the Huffman decoding)

    python bench/region_decode_bound.py [--sample ../shared/data/imagenet_sample1000]

Then the decode's split: libjpeg-turbo at its 1/8 DCT scale still entropy-decodes every block
but inverse-transforms only each block's DC term and colour-converts 1/64 of the pixels, so
its time is about the entropy decoding alone, and full - eighth is the share a region decode
can cut, in proportion to the area outside the union. The bound printed last:
(1 - union) x (full - eighth) / full of the decode time, at most. Seconds, one thread.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import simplejpeg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MCU = {"420": (16, 16), "422": (8, 16), "440": (16, 8), "411": (8, 32)}  # (h, w) px; else 8x8


def photo_sizes(sample: Path) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """(heights, widths, MCU sizes) of every JPEG under `sample`, from the headers."""
    heights, widths, mcus = [], [], []
    for path in sorted(p for p in sample.rglob("*") if p.is_file()):
        h, w, _, subsampling = simplejpeg.decode_jpeg_header(path.read_bytes())
        heights.append(h)
        widths.append(w)
        mcus.append(MCU.get(subsampling, (8, 8)))
    return np.array(heights), np.array(widths), mcus


def decode_seconds(blobs: list[bytes], smallest: bool, repeats: int) -> float:
    """Median over `repeats` of the seconds to decode every blob at full size, or at the
    smallest DCT scale (1/8: simplejpeg picks the smallest scale at least min_height x
    min_width, here 1 x 1; its min_factor alone does not reduce)."""
    least = 1 if smallest else 0
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for blob in blobs:
            simplejpeg.decode_jpeg(blob, min_height=least, min_width=least)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def fractions(boxes: list[tuple[int, int, int, int]], height: int, width: int,
              mcu: tuple[int, int]) -> tuple[float, float, float]:
    """(union of the MCU-aligned boxes, their bounding box, rows to the lowest bottom edge) as
    fractions of the photo; boxes are (top, left, h, w) in source pixels."""
    mh, mw = mcu
    mask = np.zeros((-(-height // mh), -(-width // mw)), bool)
    for top, left, h, w in boxes:
        mask[top // mh:-(-(top + h) // mh), left // mw:-(-(left + w) // mw)] = True
    tops = [b[0] for b in boxes]
    bottoms = [b[0] + b[2] for b in boxes]
    lefts = [b[1] for b in boxes]
    rights = [b[1] + b[3] for b in boxes]
    bbox = (max(bottoms) - min(tops)) * (max(rights) - min(lefts)) / (height * width)
    return float(mask.mean()), bbox, max(bottoms) / height


def main(argv=None) -> int:
    from jessl.data import sampler as S
    from jessl.data.ops import crop
    from jessl.data.views import resolve_views
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sample", default=str(ROOT.parent / "shared" / "data" /
                                            "imagenet_sample1000"))
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3, help="timed decodes of the sample")
    args = ap.parse_args(argv)
    if not Path(args.sample).is_dir():
        print(f"no photos at {args.sample} (the ImageNet sample of ../shared/data)")
        return 1
    heights, widths, mcus = photo_sizes(Path(args.sample))
    views = resolve_views("byol")
    cfgs = S.view_configs(views)
    rows = []
    for epoch in range(args.epochs):
        ints, floats = S.sample_chunk(0, epoch, np.arange(len(heights)), heights, widths, cfgs)
        boxes = [S.view_params(ints, floats, v).ints(crop.SPEC)[:, :4] for v in range(2)]
        for i in range(len(heights)):
            rows.append(fractions([tuple(int(x) for x in b[i]) for b in boxes], heights[i],
                                  widths[i], mcus[i]))
    union, bbox, down = np.array(rows).T
    print(f"{len(heights)} photos x {args.epochs} epochs, the BYOL pair at 224 px; fractions "
          f"of the photo (mean, median):")
    print(f"  union of the two boxes, MCU-aligned: {union.mean():.3f}, {np.median(union):.3f}")
    print(f"  their bounding box:                  {bbox.mean():.3f}, {np.median(bbox):.3f}")
    print(f"  rows down to the lower box's bottom: {down.mean():.3f}, {np.median(down):.3f}")
    blobs = [p.read_bytes() for p in sorted(Path(args.sample).rglob("*")) if p.is_file()]
    full, eighth = (decode_seconds(blobs, small, args.repeats) for small in (False, True))
    cut = (full - eighth) / full
    print(f"decode, one thread, median of {args.repeats}: full size {1e3 * full / len(blobs):.2f}"
          f" ms a photo, at 1/8 scale (about the entropy decoding alone) "
          f"{1e3 * eighth / len(blobs):.2f} ms: {cut:.0%} of the decode is the part a region "
          f"decode can skip outside the views")
    print(f"ceiling of a region decode's saving: (1 - {union.mean():.3f}) x {cut:.2f} = "
          f"{(1 - union.mean()) * cut:.0%} of the decode time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
