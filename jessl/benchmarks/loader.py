"""Two-view loading throughput: jessl's loader against torchvision v2, in the same run.

The FFCV-SSL paper's Table 2 on this machine: cumulative pipelines (crops + flip, + blur,
+ grey, + solarize, + jitter = the full SSL pipeline), as pairs of views per second. The
references read the *same JPEG bytes* from the same dataset file, decode them with Pillow and run
torchvision.transforms.v2 twice per image (decode once, as solo-learn does) in a DataLoader
with one worker process per core:
  - torchvision:        as users run it;
  - torchvision tuned:  `torch.set_flush_denormal(True)` in each worker (v2's 23-tap float
                        GaussianBlur runs into denormals and is 10-100x slower without it).
The floor is a bare decode of every image with libjpeg-turbo in as many threads.
"""

from __future__ import annotations

import io
import os
import statistics
import threading
import time
from dataclasses import replace

import numpy as np
import simplejpeg
import torch

from jessl.data.format import RAW
from jessl.data.loader import Loader
from jessl.data.reader import Reader
from jessl.data.views import View, resolve_views

# the columns: each adds one op family to the one before (probabilities of SimCLR/BYOL)
COLUMNS = ("crops+flip", "+blur", "+grey", "+solarize", "+jitter")


def column_views(base: View, column: str) -> list[View]:
    """The two views of a Table 2 column, built from a preset's first view."""
    upto = COLUMNS.index(column)
    v = replace(base, jitter_p=0.0, grey_p=0.0, blur_p=0.0, solarize_p=0.0, noise_p=0.0)
    if upto >= 1 and min(base.hw) > 64:  # no blur at CIFAR size (SimCLR appendix B.9)
        v = replace(v, blur_p=0.5)
    if upto >= 2:
        v = replace(v, grey_p=0.2)
    if upto >= 3:
        v = replace(v, solarize_p=0.2)
    if upto >= 4:
        v = replace(v, jitter_p=0.8, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)
    return [v, v]


def torchvision_transform(view: View, on_tensors: bool = True):
    """torchvision v2 equivalent of one jessl View: on uint8 tensors (ToImage() first, as v2's
    documentation writes it) or on PIL images."""
    from torchvision.transforms import v2
    t = [v2.ToImage()] if on_tensors else []
    t += [v2.RandomResizedCrop(view.hw, scale=view.scale, ratio=view.ratio, antialias=True),
         v2.RandomHorizontalFlip(view.flip_p)]
    if view.jitter_p:
        t.append(v2.RandomApply([v2.ColorJitter(view.brightness, view.contrast,
                                                view.saturation, view.hue)], p=view.jitter_p))
    if view.grey_p:
        t.append(v2.RandomGrayscale(view.grey_p))
    if view.blur_p:
        t.append(v2.RandomApply([v2.GaussianBlur(view.kernel_size, view.blur_sigma)],
                                p=view.blur_p))
    if view.solarize_p:
        t.append(v2.RandomSolarize(view.solarize_threshold, p=view.solarize_p))
    t += [] if on_tensors else [v2.PILToTensor()]
    t += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(view.mean, view.std)]
    return v2.Compose(t)


class TorchvisionPairs(torch.utils.data.Dataset):
    """(view1, view2, label) from the file's stored images via Pillow, as a torchvision user."""

    def __init__(self, path, views: list[View], n: int, on_tensors: bool = True):
        self.path, self.n = str(path), n
        self.transforms = [torchvision_transform(v, on_tensors) for v in views]
        self.reader = None

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        from PIL import Image
        if self.reader is None:
            self.reader = Reader(self.path)
        if int(self.reader.index["image.encoding"][i]) == RAW:
            pixels = self.reader.read_image(i)  # (H, W, C): Pillow takes grey as (H, W)
            image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
        else:
            image = Image.open(io.BytesIO(self.reader.blob(i).tobytes()))
        image = image.convert("RGB")
        return tuple(t(image) for t in self.transforms) + (int(self.reader.labels[i]),)


def _flush_denormal(_):
    torch.set_flush_denormal(True)
    torch.set_num_threads(1)


def _single_thread(_):
    torch.set_num_threads(1)


def torchvision_pairs_per_s(path, views, n: int, batch_size: int, workers: int,
                            tuned: bool, on_tensors: bool = True, warmup: bool = True) -> float:
    """Pairs/s of a DataLoader with `workers` processes over one epoch of `n` images.

    With `warmup` (the default, as jessl's side is timed) the workers persist and a first,
    untimed epoch pays for their start, their imports and the first batches' allocations
    (issue 17's protocol: a warm-up epoch, then timed epochs), so the figure is the
    steady-state throughput of a long training run's loader. Without it the epoch is timed
    from `iter()`, workers' start included (how this module timed before 2026-12-03)."""
    dataset = TorchvisionPairs(path, views, n, on_tensors)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, num_workers=workers, shuffle=True, drop_last=False,
        worker_init_fn=_flush_denormal if tuned else _single_thread,
        persistent_workers=warmup and workers > 0,
        multiprocessing_context="fork" if workers > 0 and "fork" in
        torch.multiprocessing.get_all_start_methods() else None)
    if warmup:
        for _ in loader:
            pass
    start, pairs = time.perf_counter(), 0
    for batch in loader:
        pairs += len(batch[0])
    return pairs / (time.perf_counter() - start)


def jessl_pairs_per_s(path, views, batch_size: int, threads: int, epochs: int = 1) -> float:
    loader = Loader(path, batch_size, views, num_threads=threads, drop_last=False)
    next(iter(loader))  # load the compiled kernels from numba's cache before timing
    start, pairs = time.perf_counter(), 0
    for _ in range(epochs):
        for batch in loader:
            pairs += len(batch.indices)
    return pairs / (time.perf_counter() - start)


def decode_floor_per_s(path, threads: int) -> float:
    """Images/s of a bare libjpeg-turbo decode of every stored image in `threads` threads."""
    reader = Reader(path)
    n = len(reader)
    enc = reader.index["image.encoding"]
    chans = reader.index["image.channels"]

    def work(lo, hi):
        for i in range(lo, hi):
            if enc[i] != RAW:
                simplejpeg.decode_jpeg(reader.blob(i), colorspace="GRAY" if chans[i] == 1
                                       else "RGB", strict=False)
    bounds = np.linspace(0, n, threads + 1).astype(int)
    pool = [threading.Thread(target=work, args=(bounds[k], bounds[k + 1]))
            for k in range(threads)]
    start = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return n / (time.perf_counter() - start)


def run(path, preset: str = "simclr", columns=COLUMNS, batch_size: int = 64,
        baseline_images: int | None = None, repeats: int = 3, workers: int | None = None,
        baseline: str = "torchvision", log=print) -> dict:
    """Median pairs/s of jessl and the references per column, and their ratios.

    The references read `baseline_images` images per run (default: 256 at ImageNet size,
    8192 at 32 px), after a warm-up epoch of the same images (`torchvision_pairs_per_s`).
    """
    from jessl.runtime import keep_freed_memory
    workers = workers or len(os.sched_getaffinity(0))
    # as a training run sets it (jessl.train.trainer.setup_process); forked torchvision workers
    # inherit it too, so both sides get the same allocator
    malloc = keep_freed_memory()
    base = resolve_views(preset)[0]
    n = len(Reader(path))
    if baseline_images is None:
        baseline_images = 256 if min(base.hw) > 64 else 8192
    results = {"file": str(path), "preset": preset, "images": n, "workers": workers,
               "malloc_keeps_freed_memory": malloc,
               "batch_size": batch_size, "repeats": repeats, "columns": {}}
    for column in columns:
        views = column_views(base, column)
        runs = {"jessl": [], "torchvision": [], "torchvision_tuned": [], "torchvision_pil": []}
        for _ in range(repeats):
            runs["jessl"].append(jessl_pairs_per_s(path, views, batch_size, workers,
                                                   epochs=max(1, 2000 // n)))
            if baseline == "torchvision":
                m = min(n, baseline_images)
                runs["torchvision"].append(torchvision_pairs_per_s(
                    path, views, m, batch_size, workers, tuned=False))
                runs["torchvision_tuned"].append(torchvision_pairs_per_s(
                    path, views, m, batch_size, workers, tuned=True))
                runs["torchvision_pil"].append(torchvision_pairs_per_s(
                    path, views, m, batch_size, workers, tuned=False, on_tensors=False))
        row = {k: statistics.median(v) for k, v in runs.items() if v}
        if "torchvision" in row:
            row["ratio"] = row["jessl"] / row["torchvision"]
            row["ratio_tuned"] = row["jessl"] / row["torchvision_tuned"]
            row["ratio_pil"] = row["jessl"] / row["torchvision_pil"]
        results["columns"][column] = row
        log(f"{column}: " + ", ".join(f"{k} {v:,.1f}" for k, v in row.items()))
    floor = statistics.median(decode_floor_per_s(path, workers) for _ in range(repeats))
    results["decode_floor_pairs_per_s"] = floor
    full = results["columns"][columns[-1]]
    results.update(jessl_pairs_per_s=full["jessl"],
                   baseline_pairs_per_s=full.get("torchvision"),
                   ratio=full.get("ratio"), ratio_tuned=full.get("ratio_tuned"),
                   ratio_pil=full.get("ratio_pil"),
                   floor_ratio=floor / full["jessl"])
    return results
