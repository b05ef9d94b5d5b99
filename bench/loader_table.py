"""Issue 17's loader table: jessl and torchvision in the same run, FFCV as reference numbers.

Pairs of 224 px views per second, two pipelines per dataset file:

    crops+flip  RandomResizedCrop(224, scale 0.08-1) + RandomHorizontalFlip(0.5), both views
    full        the BYOL pair (Grill et al. 2020, table 6): jitter 0.8 x (0.4, 0.4, 0.2, 0.1),
                grey 0.2, blur 1.0 / 0.1 (23 taps, sigma 0.1-2), solarize 0 / 0.2

Measured here, in this run: jessl's Loader (`--workers` threads; a warm-up epoch, then one timed
epoch per run) in two outputs: "jessl", normalised float32 batches (its default, what a CPU
training step takes), and "jessl, uint8", the views as uint8 pixels (`output="uint8"`: what
FFCV's decoder, flip, ToTensor and ToTorchImage give, its NormalizeImage then running on the
GPU; a quarter of the bytes to write, 0.15 against 0.6 MB a 224 px view); torchvision v2 in a
DataLoader with `--workers` persistent processes reading the same stored JPEG bytes with Pillow
(`jessl.benchmarks.loader`; a warm-up epoch, then one timed epoch per run, as jessl), three
ways: as its docs write it (ToImage first, the ops on uint8 tensors), the same with
`torch.set_flush_denormal(True)` in each worker (what a careful user runs), and with the ops
on PIL images up to PILToTensor ("PIL ops": Pillow's resize and colour ops, the blur still
torch's, flush-denormal on; also a way its docs write a pipeline), with jessl's ratio to the
fastest of the three; and the bare libjpeg-turbo decode of every image (the floor). Each
figure is the median of `--repeats` runs.
FFCV needs system libraries this project does not install, so its figures are printed as the
reference numbers issue 17 reported, with their versions; given `--ffcv-python` (the Python of a
virtual environment with FFCV 1.0.2: `bench/loader_ffcv.py` says how to make one), FFCV 1.0.2's
crops+flip pair is also measured in this run, on the same photos, by `bench/loader_ffcv.py`,
uint8 and float, with jessl's ratio to each: the fair ratio the 1.5x target asks for.

    python bench/loader_table.py                       # the ImageNet sample, originals and 256 px
    python bench/loader_table.py --images 64 --tv-images 64 --repeats 1    # a quick check
    python bench/loader_table.py --data "held-out 224 px photos=heldout.jessl"
    python bench/loader_table.py --ffcv-python /tmp/ffcv-venv/bin/python   # FFCV beside
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SAMPLE = ROOT.parent / "shared" / "data" / "imagenet_sample1000"
PIPELINES = ("crops+flip", "full")
ORIGINALS, STORED_256, HELD_OUT = ("ImageNet originals", "ImageNet stored at 256",
                                   "held-out 224 px photos")

# how bench/loader_ffcv.py stores the sample for each default file (--ffcv-python)
FFCV_MAX_SIDE = {ORIGINALS: None, STORED_256: 256}

# Reference figures from issue 17 (filed 2026-12-02; pairs/s, 1,000 images, two 224 px views,
# batch 64, 2 workers, medians of 2 timed epochs after a warm-up, on the 2-core dev box):
# FFCV 1.0.2 and FFCV-SSL (its fork of FFCV) as released; None = the pipeline has no such ops
# (FFCV 1.0.2 has no blur, grey, jitter or solarize). FFCV-SSL's blur was its 9 px kernel.
FFCV_REFERENCE = {
    (ORIGINALS, "crops+flip"): {"FFCV 1.0.2": 517, "FFCV-SSL": 519},
    (ORIGINALS, "full"): {"FFCV 1.0.2": None, "FFCV-SSL": 38.6},
    (STORED_256, "crops+flip"): {"FFCV 1.0.2": 1949, "FFCV-SSL": 2085},
    (STORED_256, "full"): {"FFCV 1.0.2": None, "FFCV-SSL": 41.9},
    (HELD_OUT, "crops+flip"): {"FFCV 1.0.2": 2162, "FFCV-SSL": 2223},
    (HELD_OUT, "full"): {"FFCV 1.0.2": None, "FFCV-SSL": 45.1},
}


def pipeline_views(name: str):
    """The two views of a pipeline, from the byol preset (224 px, ImageNet statistics)."""
    from jessl.benchmarks.loader import column_views
    from jessl.data.views import resolve_views
    byol = resolve_views("byol")
    return column_views(byol[0], "crops+flip") if name == "crops+flip" else byol


def jessl_pairs_per_s(path, views, images: int, batch_size: int, threads: int,
                      output: str = "float") -> float:
    """Pairs/s of one timed epoch over the first `images` records, after a warm-up epoch."""
    from jessl.data.loader import Loader
    loader = Loader(path, batch_size, views, num_threads=threads, drop_last=False,
                    indices=np.arange(images), output=output)
    for _ in loader:  # warm-up: kernels from numba's cache, file in the page cache, allocator
        pass
    start, pairs = time.perf_counter(), 0
    for batch in loader:
        pairs += len(batch.indices)
    return pairs / (time.perf_counter() - start)


def make_files(folder: Path) -> dict[str, str]:
    """The ImageNet sample as two dataset files: the original JPEGs, and re-encoded at 256 px."""
    from jessl.data import convert
    files = {ORIGINALS: folder / "imagenet.jessl", STORED_256: folder / "imagenet256.jessl"}
    for name, path in files.items():
        convert(SAMPLE, path, max_side=256 if name == STORED_256 else None, progress=False)
    return {name: str(path) for name, path in files.items()}


def ffcv_measured(python: str, max_side: int | None, args) -> dict:
    """FFCV 1.0.2's crops+flip pair on the ImageNet sample, measured now by
    `bench/loader_ffcv.py` in the virtual environment whose Python is `python`."""
    with tempfile.TemporaryDirectory(prefix="jessl-ffcv-") as tmp:
        out = Path(tmp) / "ffcv.json"
        cmd = [python, str(ROOT / "bench" / "loader_ffcv.py"), "--root", str(SAMPLE),
               "--batch-size", str(args.batch_size), "--workers", str(args.workers),
               "--repeats", str(args.repeats), "--json", str(out)]
        # its stderr only on failure: FFCV 1.0.2's compiled pipelines, when collected, print
        # pages of harmless KeyErrors from numba's finalizers
        done = subprocess.run(cmd + (["--max-side", str(max_side)] if max_side else []),
                              stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n"
                               f"{done.stderr[-3000:]}")
        return json.loads(out.read_text())


def measure(name: str, path: str, args) -> list[dict]:
    """One row per pipeline of dataset file `path`: medians of the runs and the ratios."""
    from jessl.benchmarks.loader import decode_floor_per_s, torchvision_pairs_per_s
    from jessl.data.reader import Reader
    images = min(args.images, len(Reader(path)))
    tv_images = min(args.tv_images, images)
    # FFCV first, in its own process (its workers and compile are done when it returns)
    ffcv = ffcv_measured(args.ffcv_python, FFCV_MAX_SIDE[name], args) \
        if args.ffcv_python and name in FFCV_MAX_SIDE else None
    floor = statistics.median(decode_floor_per_s(path, args.workers)
                              for _ in range(args.repeats))
    rows = []
    for pipeline in PIPELINES:
        views = pipeline_views(pipeline)
        runs = {"jessl": [], "jessl, uint8": [], "torchvision": [],
                "torchvision, flush-denormal": [], "torchvision, PIL ops": []}
        for _ in range(args.repeats):
            for key, output in (("jessl", "float"), ("jessl, uint8", "uint8")):
                runs[key].append(jessl_pairs_per_s(path, views, images, args.batch_size,
                                                   args.workers, output))
            for key, tuned, on_tensors in (("torchvision", False, True),
                                           ("torchvision, flush-denormal", True, True),
                                           ("torchvision, PIL ops", True, False)):
                runs[key].append(torchvision_pairs_per_s(path, views, tv_images,
                                                         args.batch_size, args.workers, tuned,
                                                         on_tensors))
        row = {"data": name, "pipeline": pipeline, "images": images, "tv_images": tv_images,
               **{k: statistics.median(v) for k, v in runs.items()},
               **FFCV_REFERENCE.get((name, pipeline), {"FFCV 1.0.2": None, "FFCV-SSL": None}),
               "decode floor": floor}
        row["jessl / torchvision, flush-denormal"] = \
            row["jessl"] / row["torchvision, flush-denormal"]
        row["jessl / fastest torchvision"] = row["jessl"] / max(
            row["torchvision"], row["torchvision, flush-denormal"], row["torchvision, PIL ops"])
        # across runs and machines' moods: a pointer to issue 17's 1.5x target, not a result
        row["jessl / FFCV 1.0.2 (reference)"] = \
            row["jessl"] / row["FFCV 1.0.2"] if row["FFCV 1.0.2"] else None
        row["jessl, uint8 / FFCV 1.0.2 (reference)"] = \
            row["jessl, uint8"] / row["FFCV 1.0.2"] if row["FFCV 1.0.2"] else None
        if ffcv and pipeline == "crops+flip":  # FFCV 1.0.2 has none of the full pipeline's ops
            row["FFCV 1.0.2, this run"], row["FFCV 1.0.2, uint8, this run"] = \
                ffcv["float"], ffcv["uint8"]
            row["jessl / FFCV 1.0.2, this run"] = row["jessl"] / ffcv["float"]
            row["jessl, uint8 / FFCV 1.0.2, uint8, this run"] = \
                row["jessl, uint8"] / ffcv["uint8"]
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict]) -> str:
    """The issue's table, plus the decode floor and jessl's ratio to tuned torchvision."""
    cols = ("torchvision", "torchvision, flush-denormal", "torchvision, PIL ops", "FFCV 1.0.2",
            "FFCV-SSL", "jessl", "jessl, uint8", "jessl / torchvision, flush-denormal",
            "jessl / fastest torchvision",
            "jessl / FFCV 1.0.2 (reference)", "jessl, uint8 / FFCV 1.0.2 (reference)",
            "decode floor")
    measured = ("FFCV 1.0.2, this run", "FFCV 1.0.2, uint8, this run",
                "jessl / FFCV 1.0.2, this run", "jessl, uint8 / FFCV 1.0.2, uint8, this run")
    if any(m in r for r in rows for m in measured):
        cols += measured

    def fmt(value, col):
        if value is None:
            return "no ops" if col.startswith("FFCV") else "-"
        return f"{value:.2f}x" if " / " in col else \
            f"{value:,.0f}" if value >= 100 else f"{value:.1f}"
    lines = ["| data | pipeline | " + " | ".join(cols) + " |",
             "|---|---|" + "---:|" * len(cols)]
    for r in rows:
        lines.append(f"| {r['data']} | {r['pipeline']} | "
                     + " | ".join(fmt(r.get(c), c) for c in cols) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    from jessl.runtime import keep_freed_memory
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", action="append", default=[],
                    help="NAME=PATH of a dataset file (repeatable); default: the ImageNet sample "
                         f"converted to a temporary folder ({ORIGINALS}, {STORED_256})")
    ap.add_argument("--images", type=int, default=1000, help="records per jessl epoch")
    ap.add_argument("--tv-images", type=int, default=1000,
                    help="records per torchvision epoch (issue 17's protocol: 1,000, like jessl's)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2, help="jessl threads = torchvision workers")
    ap.add_argument("--repeats", type=int, default=3, help="runs per figure (median)")
    ap.add_argument("--json", help="also write the rows to this JSON file")
    ap.add_argument("--ffcv-python", help="the Python of a virtual environment with FFCV 1.0.2 "
                    "(bench/loader_ffcv.py says how to make one): FFCV's crops+flip columns are "
                    "then measured in this run on the ImageNet sample, not only quoted")
    args = ap.parse_args(argv)
    keep_freed_memory()  # as training runs set it; forked torchvision workers inherit it
    with tempfile.TemporaryDirectory(prefix="jessl-table-") as tmp:
        files = dict(d.split("=", 1) for d in args.data) if args.data else make_files(Path(tmp))
        rows = [row for name, path in files.items() for row in measure(name, path, args)]
    import torch
    import torchvision

    import jessl
    print(f"pairs of 224 px views per second; medians of {args.repeats} runs; batch "
          f"{args.batch_size}, {args.workers} threads/workers; jessl {jessl.__version__}, torch "
          f"{torch.__version__}, torchvision {torchvision.__version__}; FFCV 1.0.2 and FFCV-SSL: "
          f"issue 17's reference figures; FFCV 1.0.2, this run: measured now"
          f"{'' if args.ffcv_python else ' (not asked: --ffcv-python)'}")
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
