"""Writer throughput: `jessl convert` against the simplest correct alternatives, same run.

    python bench/bench_writer.py [--repeats 5] [--data ../shared/data]

Cases, on ../shared/data/imagenet_sample1000 (1,000 original ImageNet JPEGs, median 500x375):
  pass-through   jessl (JPEG bytes copied after a strict decode check)
                 vs a Pillow loop that checks each file (open + load) and appends its bytes
  --max-side 256 jessl (DCT-scaled decode, area resize, JPEG q90)
                 vs a Pillow loop (open, convert, BOX resize, save q90)
                 vs an OpenCV loop (imdecode, INTER_AREA resize, imencode q90: FFCV's writer)
and on CIFAR-10 train (50,000 JPEGs of 32x32 in a .npz) pass-through vs the Pillow loop.
The references run in one process; jessl with 1 and with all workers. Each figure is the
median of `--repeats` runs, as images per second and per core. Files are in the page cache
after the first run, so this measures CPU, not the disk.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from jessl.data import convert
from jessl.data.writer import available_cores

QUALITY = 90
MAX_SIDE = 256


def folder_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def pillow_passthrough(blobs, out: Path) -> None:
    """Check each file decodes, append its bytes and remember offsets: correct and simple."""
    offsets = [0]
    with open(out, "wb") as f:
        for data in blobs():
            Image.open(io.BytesIO(data)).load()
            f.write(data)
            offsets.append(offsets[-1] + len(data))
        f.write(np.asarray(offsets, np.int64).tobytes())


def pillow_resize(blobs, out: Path) -> None:
    offsets = [0]
    with open(out, "wb") as f:
        for data in blobs():
            image = Image.open(io.BytesIO(data))
            image = image.convert("L" if image.mode == "L" else "RGB")
            factor = MAX_SIDE / max(image.size)
            if factor < 1:
                size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
                image = image.resize(size, Image.Resampling.BOX)
            buf = io.BytesIO()
            image.save(buf, format="JPEG", quality=QUALITY)
            f.write(buf.getvalue())
            offsets.append(offsets[-1] + buf.tell())
        f.write(np.asarray(offsets, np.int64).tobytes())


def opencv_resize(blobs, out: Path) -> None:
    cv2.setNumThreads(1)
    offsets = [0]
    with open(out, "wb") as f:
        for data in blobs():
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
            h, w = image.shape[:2]
            factor = MAX_SIDE / max(h, w)
            if factor < 1:
                size = (max(1, round(w * factor)), max(1, round(h * factor)))
                image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            ok, enc = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
            f.write(enc.tobytes())
            offsets.append(offsets[-1] + len(enc))
        f.write(np.asarray(offsets, np.int64).tobytes())


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    folder = args.data / "imagenet_sample1000"
    cifar = args.data / "cifar10_jpeg_train.npz"
    if not folder.is_dir():
        print(f"skipped: {folder} is absent (the real datasets live in ../shared/data)")
        return 0
    cores = available_cores()
    files = folder_files(folder)
    n = len(files)
    tmp = Path(tempfile.mkdtemp(prefix="jessl-bench-"))
    out = tmp / "out.jessl"

    def from_disk():
        for path in files:
            yield path.read_bytes()

    def jessl(src, workers, **kw):
        return lambda: convert(src, out, workers=workers, overwrite=True, progress=False, **kw)

    rows = []

    def case(name, images, ref_name, ref, ours):
        ref_s = timed(ref, args.repeats)
        row = {"case": name, "images": images, "reference": ref_name,
               "reference_img_s": images / ref_s}
        for workers in sorted({1, cores}):
            s = timed(ours(workers), args.repeats)
            row[f"jessl_{workers}w_img_s"] = images / s
            row[f"jessl_{workers}w_img_s_per_core"] = images / s / workers
        row["ratio_per_core"] = row["jessl_1w_img_s"] / row["reference_img_s"]
        row[f"ratio_{cores}w_vs_reference"] = row[f"jessl_{cores}w_img_s"] / row[
            "reference_img_s"]
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)

    case("imagenet pass-through", n, "Pillow loop (check + copy)",
         lambda: pillow_passthrough(from_disk, tmp / "ref.bin"),
         lambda w: jessl(folder, w))
    case(f"imagenet --max-side {MAX_SIDE}", n, "Pillow loop (BOX resize, q90)",
         lambda: pillow_resize(from_disk, tmp / "ref.bin"),
         lambda w: jessl(folder, w, max_side=MAX_SIDE))
    case(f"imagenet --max-side {MAX_SIDE}", n, "OpenCV loop (INTER_AREA, q90; FFCV's way)",
         lambda: opencv_resize(from_disk, tmp / "ref.bin"),
         lambda w: jessl(folder, w, max_side=MAX_SIDE))
    if cifar.exists():
        npz = np.load(cifar)
        jpeg, offsets = npz["jpeg"], npz["offsets"]

        def cifar_blobs():
            for i in range(len(offsets) - 1):
                yield jpeg[offsets[i]:offsets[i + 1]].tobytes()
        case("cifar10 train pass-through", len(offsets) - 1, "Pillow loop (check + copy)",
             lambda: pillow_passthrough(cifar_blobs, tmp / "ref.bin"),
             lambda w: jessl(cifar, w))
    for path in tmp.iterdir():
        path.unlink()
    tmp.rmdir()

    machine = {"cpu": platform.processor() or platform.machine(), "cores": cores,
               "python": platform.python_version(), "repeats": args.repeats}
    if args.json:
        print(json.dumps({"machine": machine, "rows": rows}, indent=1))
        return 0
    print(f"# writer throughput, {cores} cores, median of {args.repeats} runs")
    print(f"| case | reference | ref img/s | jessl 1 proc img/s | jessl {cores} proc img/s |"
          f" jessl/ref per core | jessl {cores} proc / ref |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['reference']} | {r['reference_img_s']:,.0f} | "
              f"{r['jessl_1w_img_s']:,.0f} | {r[f'jessl_{cores}w_img_s']:,.0f} | "
              f"{r['ratio_per_core']:.1f}x | {r[f'ratio_{cores}w_vs_reference']:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
