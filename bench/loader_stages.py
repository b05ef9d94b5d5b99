"""Where the loader's time goes, stage by stage, for one view preset on one dataset file.

The stages of `jessl.data.loader._Plan.render_records`, run one after another in this thread
over every batch of an epoch (with the loader's chunking) and timed separately:

    index        the index rows of the chunk, and their height / width / channel columns
    sample       every view's parameters (`jessl.data.sampler.sample_chunk`)
    decode       header checks and the JPEG decode, once per record, at its DCT scale
    crop+flip    crop box -> antialiased resize, flip fused into the same pass
    each registered op's pass, by its torchvision name (jessl.data.ops.registry.PIPELINE):
                 ColorJitter (+ grey, fused), GaussianBlur, RandomSolarize, only on the records
                 that drew them
    write        (noise +) normalise / transpose into the batch tensor (layout)
    alloc        the batch tensors (torch.empty), once per batch

then the real loader over the same epoch in 1 thread and in `--threads` threads: what the
loader adds to the sum of the stages (thread pool, futures, hand-off to the caller) is the
1-thread loader's time minus that sum.

    python bench/loader_stages.py --data imagenet256.jessl --views crop --batch-size 64
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jessl.data.render import PASSES  # noqa: E402 (after the path insert)

STAGES = ("index", "sample", "decode", "crop+flip", *(spec.name for spec in PASSES), "write",
          "alloc")


def stage_times(loader, epoch: int = 0) -> dict[str, float]:
    """CPU seconds per stage over one epoch, one thread (the loader's own chunking): this
    thread's CPU time, so other processes on a busy machine inflate it far less than wall time."""
    import torch

    from jessl.data import render as R
    from jessl.data import sampler as S
    from jessl.data.loader import _Plan
    plan = _Plan(loader, epoch)
    reader, field = loader.reader, loader.image_field
    t = dict.fromkeys(STAGES, 0.0)

    def timed(stage, fn, *args):
        start = time.thread_time()
        result = fn(*args)
        t[stage] += time.thread_time() - start
        return result

    for records in loader.epoch_batches(epoch):
        n = len(records)
        dtype = torch.float32 if loader.output == "float" else torch.uint8
        outs = timed("alloc", lambda: [torch.empty((n, 3, *v.hw), dtype=dtype).numpy()
                                       for v in plan.views])
        per_task = max(1, -(-n // (loader.num_threads * 2)))
        for lo in range(0, n, per_task):
            chunk = records[lo:lo + per_task]
            rows, heights, widths, channels = timed("index", lambda: (
                lambda r: (r, r[f"{field}.height"].astype(np.int64),
                           r[f"{field}.width"].astype(np.int64),
                           r[f"{field}.channels"].astype(np.int64)))(reader.index[chunk]))
            ints, floats = timed("sample", S.sample_chunk, loader.seed, epoch, chunk, heights,
                                 widths, plan.cfgs)
            sources = timed("decode", plan.decode, chunk, rows, heights, widths, channels, ints)
            for v, view in enumerate(plan.views):
                iv, fv, out = ints[:, v], floats[:, v], outs[v][lo:lo + len(chunk)]
                stage = np.empty((len(chunk), *view.hw, 3), np.uint8)
                timed("crop+flip", R.crop_pass, sources, iv, view, stage)
                params = R.Params(iv, fv)
                for spec in PASSES:
                    timed(spec.name, spec.render, stage, params, view)
                timed("write", R.write_pass, stage, params, view, plan.luts[v], out)
    return t


def loader_seconds(loader, epoch: int = 0) -> tuple[float, float]:
    """(wall, process CPU) seconds for the real loader to hand over every batch of `epoch`."""
    start, cpu = time.perf_counter(), time.process_time()
    for _ in loader.iter_epoch(epoch):
        pass
    return time.perf_counter() - start, time.process_time() - cpu


def main(argv=None) -> int:
    from jessl.data.loader import Loader
    from jessl.runtime import keep_freed_memory
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="dataset file")
    ap.add_argument("--views", default="crop", help="view preset (default crop: crops + flip)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="epochs timed (median reported)")
    args = ap.parse_args(argv)
    keep_freed_memory()  # as training runs and `jessl bench loader` do
    one = Loader(args.data, args.batch_size, args.views, num_threads=1, drop_last=False)
    many = Loader(args.data, args.batch_size, args.views, num_threads=args.threads,
                  drop_last=False)
    images = sum(len(b) for b in one.epoch_batches(0))
    stage_times(one)  # warm-up: compiled kernels loaded, page cache, allocator
    runs = [stage_times(one) for _ in range(args.repeats)]
    t = {s: statistics.median(r[s] for r in runs) for s in STAGES}
    ones = [loader_seconds(one) for _ in range(args.repeats)]
    manys = [loader_seconds(many) for _ in range(args.repeats)]
    loader_one = statistics.median(cpu for _, cpu in ones)
    loader_one_wall = statistics.median(wall for wall, _ in ones)
    loader_many = statistics.median(wall for wall, _ in manys)
    total = sum(t.values())
    print(f"{args.data}: {images} images, views {args.views}, batch {args.batch_size}; "
          f"median of {args.repeats} epochs, CPU microseconds per image (share of the stages' sum)")
    for s in STAGES:
        print(f"  {s:<14} {1e6 * t[s] / images:8.1f} us  {100 * t[s] / total:5.1f}%")
    print(f"  {'sum':<14} {1e6 * total / images:8.1f} us  = {images / total:,.0f} images/s "
          f"in one thread")
    print(f"  loader, 1 thread: {1e6 * loader_one / images:8.1f} CPU us/image; beyond the "
          f"stages' sum: {1e6 * (loader_one - total) / images:+.1f} us/image (threads, futures, "
          f"hand-off, the caller)")
    print(f"  loader, 1 thread: {1e6 * loader_one_wall / images:8.1f} wall us/image (wall above "
          f"CPU: time the worker thread or the caller waited)")
    print(f"  loader, {args.threads} threads: {images / loader_many:,.0f} images/s wall "
          f"(depends on what else runs on the machine)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
