"""The multi-view loader: dataset file -> batches of V augmented views, decoded once.

For each batch, worker threads take slices (chunks) of its records. For a chunk a thread draws
every view's parameters (`jessl.data.sampler`: NumPy's Philox stream keyed by (seed, epoch) and
counted by (record, view), so the same numbers whatever thread or batch the record lands in),
decodes each image once, at the smallest libjpeg-turbo DCT scale that no view needs more than,
and cuts every view from that one decode with the GIL-free kernels of `jessl.data.render`,
straight into the batch tensors: a few calls per chunk, not a dozen per view.

Threads, not processes: the kernels release the GIL (numba nogil, OpenCV, libjpeg-turbo), so
nothing is pickled or copied between processes. Up to `prefetch` batches are in flight while
the caller trains. A failure in a thread reaches the caller as a `LoaderError` naming the file
and the record, and a loop that stops early shuts its threads down: no hang, no leak.
"""

from __future__ import annotations

import math
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
import simplejpeg
import torch

from jessl.data import warm
from jessl.data.format import RAW
from jessl.data.order import ORDERS, batches, epoch_order, num_batches, shard
from jessl.data.ops import normalize_lut
from jessl.data.ops.normalize import INV255
from jessl.data.reader import Reader
from jessl.data.render import dct_factors, render_view
from jessl.data.sampler import sample_chunk, view_configs
from jessl.data.views import resolve_views
from jessl.errors import UserError

OUTPUTS = ("float", "uint8")
# uint8 levels: with exact=True a crop (+ flip) view is torchvision v2's within this bound (the
# resampling kernel's, jessl.data.ops.crop; measured max 1 on ImageNet photos, mean 0.002)
EXACT_BOUND = 2


def adds_noise(view) -> bool:
    """Whether the view can draw Gaussian noise, which is added to the normalised floats, so
    that only the float output carries it."""
    return view.noise_p > 0 and view.noise_std > 0


def output_for(device, views) -> str:
    """The output a training or evaluation loop on `device` wants: "uint8" on an accelerator
    when no view adds noise (the views cross to the device as bytes, a quarter of the float
    traffic, and `Loader.on_device` normalises them there, bit for bit as the CPU would: the CPU
    is spared the float write, a quarter of the loader's work at 224 px; FFCV normalises on
    the GPU too), else "float"."""
    device = torch.device(device)
    if device.type == "cpu" or any(adds_noise(v) for v in resolve_views(views)):
        return "float"
    return "uint8"


class LoaderError(UserError, RuntimeError):
    """A record could not be turned into views; names the file and the record (a bad input, so
    the CLI prints it as one line, not a traceback)."""


@dataclass
class Batch:
    views: list  # V tensors (B, 3, h_v, w_v): float32 normalised, or uint8
    labels: torch.Tensor  # (B,) int64; -1 for an unlabeled file
    indices: torch.Tensor  # (B,) int64 record numbers in the file
    epoch: int
    step: int  # batch number within the epoch


class Loader:
    """Iterate a dataset file as batches of augmented views. See the module docstring."""

    def __init__(self, path, batch_size: int, views="simclr", *, order: str = "random",
                 seed: int = 0, drop_last: bool = True, num_threads: int | None = None,
                 indices=None, rank: int = 0, world_size: int = 1, prefetch: int = 2,
                 output: str = "float", channels_last: bool = False, pin_memory: bool = False,
                 label_field: str = "label", image_field: str = "image", exact: bool = False):
        self.reader = path if isinstance(path, Reader) else Reader(path)
        self.views = resolve_views(views)
        self._built_sides = [min(v.hw) for v in self.views]  # set_size scales from these
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, not {order!r}")
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, not {output!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if self.reader.fields.get(image_field) != "image":
            raise ValueError(f"{self.reader.path} has no image field {image_field!r}")
        n = len(self.reader)
        self.indices = np.arange(n, dtype=np.int64) if indices is None else \
            np.asarray(indices, dtype=np.int64)
        if self.indices.ndim != 1 or (len(self.indices) and (
                self.indices.min() < 0 or self.indices.max() >= n)):
            raise ValueError(f"indices must be record numbers in [0, {n})")
        self.batch_size, self.order, self.seed = int(batch_size), order, int(seed)
        self.drop_last, self.rank, self.world_size = drop_last, int(rank), int(world_size)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {rank} must be in [0, world_size={world_size})")
        if len(self) == 0:
            raise ValueError(f"{self.reader.path}: {len(self.indices)} records give no batch of "
                             f"{batch_size} per rank ({world_size} ranks, drop_last={drop_last})")
        self.num_threads = max(1, int(num_threads or len(os.sched_getaffinity(0))))
        self.prefetch = max(1, int(prefetch))
        if output == "uint8" and any(adds_noise(v) for v in self.views):
            raise ValueError("output='uint8' cannot carry a view's Gaussian noise (it is added "
                             "to the normalised floats): use output='float'")
        self.output, self.channels_last, self.pin_memory = output, channels_last, pin_memory
        self._norm: dict = {}  # (mean, std, device) -> their (1, 3, 1, 1) tensors, for on_device
        self.image_field = image_field
        # exact: decode every JPEG at full size, as torchvision does, instead of at the DCT
        # scale the views allow; slower, but each crop is then torchvision's to within
        # EXACT_BOUND levels (docs/loader_accuracy.md has both modes' measured differences)
        self.exact = bool(exact)
        labels = self.reader.labels if label_field in self.reader.fields else None
        self.labels = labels if labels is not None else np.full(n, -1, np.int64)
        self.epoch = 0
        self.magnitude, self.magnitude_scales = 1.0, "jitter"
        # a cold numba cache: a second process compiles the passes, then the sampler, while
        # the first batch compiles the crop (data/warm.py)
        warm.start(self.views, self.output)

    # --- the two knobs that may change between epochs -------------------------------------

    def set_view_sizes(self, sizes) -> None:
        """Output size of each view (progressive resolution), from the next epoch on."""
        sizes = list(sizes)
        if len(sizes) != len(self.views):
            raise ValueError(f"need {len(self.views)} sizes, got {len(sizes)}")
        self.views = [replace(v, size=s) for v, s in zip(self.views, sizes)]

    def set_size(self, size: int) -> None:
        """Set the first view's side to `size` and scale the others in proportion (multi-crop),
        from the sizes the loader was built with, so that repeated calls never drift."""
        base = self._built_sides[0]
        self.set_view_sizes([max(1, round(side * size / base)) for side in self._built_sides])

    def set_magnitude(self, magnitude: float, scales: str = "jitter") -> None:
        """Augmentation strength in [0, 1] of what `scales` names (see `View.scaled`), from
        the next epoch on."""
        self.views[0].scaled(magnitude, scales)  # the checks
        self.magnitude, self.magnitude_scales = float(magnitude), scales

    def on_device(self, views: list[torch.Tensor], device) -> list[torch.Tensor]:
        """A batch's views as normalised float32 on `device`. Float output: moved. uint8 output:
        the bytes are moved, then normalised there with each view's mean and std by the float32
        operations of `normalize_lut` ((v * float32(1/255) - mean) / std, one IEEE rounding
        each), so the result equals the float output's bit for bit (tested on the CPU); the
        memory format (channels_last) is kept."""
        device = torch.device(device)
        if self.output == "float":
            return [v.to(device, non_blocking=True) for v in views]
        out = []
        for view, x in zip(self.views, views):
            key = (view.mean, view.std, device)
            if key not in self._norm:
                self._norm[key] = tuple(torch.tensor(t, dtype=torch.float32, device=device)
                                        .reshape(1, 3, 1, 1) for t in (view.mean, view.std))
            mean, std = self._norm[key]
            x = x.to(device, non_blocking=True).to(torch.float32)
            out.append(x.mul_(float(INV255)).sub_(mean).div_(std))
        return out

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next iteration runs (iterating advances it by one)."""
        self.epoch = int(epoch)

    # --- order ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return num_batches(len(self.indices), self.batch_size, self.world_size, self.drop_last)

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """This rank's batches of record numbers for `epoch`."""
        offsets = self.reader.index[f"{self.image_field}.offset"] \
            if self.order == "quasi_random" else None
        order = epoch_order(self.indices, self.order, self.seed, epoch, offsets,
                            min_block=self.batch_size * self.world_size)
        local = shard(order, self.rank, self.world_size, self.drop_last)
        return batches(local, self.batch_size, self.drop_last)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "seed": self.seed, "magnitude": self.magnitude,
                "sizes": [v.size for v in self.views]}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.seed = int(state["epoch"]), int(state["seed"])
        self.magnitude = float(state["magnitude"])
        self.set_view_sizes(state["sizes"])

    # --- iteration ------------------------------------------------------------------------

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1
        return self.iter_epoch(epoch)

    def iter_epoch(self, epoch: int, start: int = 0):
        """Batches of `epoch` from batch number `start` on (a resumed run skips the rest)."""
        plan = _Plan(self, epoch)
        todo = list(enumerate(self.epoch_batches(epoch)))[start:]
        pool = ThreadPoolExecutor(self.num_threads, thread_name_prefix="jessl-loader")
        pending = deque()
        try:
            for step, records in todo:
                pending.append(plan.submit(pool, step, records))
                if len(pending) > self.prefetch:
                    yield plan.finish(pending.popleft())
            while pending:
                yield plan.finish(pending.popleft())
        finally:
            # an early break or an error: drop what has not started, wait for what has (it
            # writes into tensors this frame owns), so no thread outlives the loop
            for job in pending:
                for future in job[2]:
                    future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)

    def replay(self, epoch: int, step: int) -> Batch:
        """Batch `step` of `epoch` again, bit for bit (for inspection and hard-view mining)."""
        for batch in self.iter_epoch(epoch, step):
            return batch
        raise IndexError(f"epoch has {len(self)} batches, no batch {step}")


class _Plan:
    """What one epoch's batches share: the views at their current size and magnitude."""

    def __init__(self, loader: Loader, epoch: int):
        self.loader, self.epoch = loader, epoch
        self.views = [v.scaled(loader.magnitude, loader.magnitude_scales) for v in loader.views]
        self.cfgs = view_configs(self.views)
        self.luts = [normalize_lut(v.mean, v.std) if loader.output == "float" else None
                     for v in self.views]

    def submit(self, pool, step: int, records: np.ndarray):
        loader, n = self.loader, len(records)
        dtype = torch.float32 if loader.output == "float" else torch.uint8
        outs = [torch.empty((n, 3, *v.hw), dtype=dtype) for v in self.views]
        arrays = [o.numpy() for o in outs]
        per_task = max(1, math.ceil(n / (loader.num_threads * 2)))
        futures = [pool.submit(self.render_records, records, lo, min(lo + per_task, n), arrays)
                   for lo in range(0, n, per_task)]
        return step, records, futures, outs

    def finish(self, job) -> Batch:
        step, records, futures, outs = job
        for future in futures:
            future.result()  # re-raises a thread's LoaderError here, in the caller
        loader = self.loader
        if loader.channels_last:
            outs = [o.contiguous(memory_format=torch.channels_last) for o in outs]
        labels = torch.from_numpy(loader.labels[records])
        if loader.pin_memory and torch.cuda.is_available():
            outs = [o.pin_memory() for o in outs]
        return Batch(outs, labels, torch.from_numpy(records.copy()), self.epoch, step)

    # --- in a worker thread ---------------------------------------------------------------

    def render_records(self, records: np.ndarray, lo: int, hi: int, arrays) -> None:
        """Sample, decode once and render records[lo:hi] into rows lo:hi of every view."""
        reader, field = self.loader.reader, self.loader.image_field
        chunk = records[lo:hi]
        rows = reader.index[chunk]
        heights = rows[f"{field}.height"].astype(np.int64)
        widths = rows[f"{field}.width"].astype(np.int64)
        channels = rows[f"{field}.channels"].astype(np.int64)
        # while a cold start's second process compiles the sampler, its plain twin draws
        ints, floats = sample_chunk(self.loader.seed, self.epoch, chunk, heights, widths,
                                    self.cfgs, compiled=not warm.compiling_sampler())
        sources = self.decode(chunk, rows, heights, widths, channels, ints)
        for v, (view, out) in enumerate(zip(self.views, arrays)):
            stage = np.empty((len(chunk), *view.hw, 3), np.uint8)
            bad = render_view(sources, ints[:, v], floats[:, v], view, self.luts[v],
                              out[lo:hi], stage)
            if bad >= 0:
                raise LoaderError(f"{reader.path}: record {chunk[bad]}: view {v}'s crop box "
                                  f"falls outside the decoded image")

    def decode(self, chunk, rows, heights, widths, channels, ints):
        """The kernels' view of the sources: raw records in the map, JPEGs decoded once each,
        at the smallest DCT scale no view needs more than, into one buffer."""
        reader, field = self.loader.reader, self.loader.image_field
        from_raw = rows[f"{field}.encoding"] == RAW
        offsets = rows[f"{field}.offset"].astype(np.int64)
        src_h, src_w = heights.copy(), widths.copy()
        jpegs = np.flatnonzero(~from_raw)
        factors = np.ones(len(chunk), np.int64) if self.loader.exact else \
            dct_factors(ints, self.cfgs)
        todo, sizes = [], []
        # the blobs sliced straight from the map (the rows are already gathered; reader.blob
        # would look each one up again), with Python ints: numpy scalars cost more per image
        data, starts, ends = reader.data, offsets.tolist(), \
            (offsets + rows[f"{field}.nbytes"].astype(np.int64)).tolist()
        hs, ws, cs, fs = heights.tolist(), widths.tolist(), channels.tolist(), factors.tolist()
        for j in jpegs.tolist():
            blob = data[starts[j]:ends[j]]
            # the JPEG's own size must be the index's (the crop boxes were drawn from it), and
            # is checked before anything is allocated for the decode
            try:
                h, w, _, _ = simplejpeg.decode_jpeg_header(blob)
            except ValueError as err:
                raise LoaderError(f"{reader.path}: record {chunk[j]}: corrupt JPEG header: "
                                  f"{err}") from None
            if h != hs[j] or w != ws[j]:
                raise LoaderError(f"{reader.path}: record {chunk[j]}: JPEG is {w}x{h} but the "
                                  f"index says {ws[j]}x{hs[j]}")
            # at DCT scale 1/f libjpeg-turbo gives ceil(h / f) x ceil(w / f) (jdiv_round_up),
            # and asked for at least that, the decode picks exactly that scale
            h, w = -(-h // fs[j]), -(-w // fs[j])
            todo.append((j, blob, h, w))
            src_h[j], src_w[j] = h, w
            sizes.append(h * w * cs[j])
        decoded = np.empty(max(1, sum(sizes)), np.uint8)
        at = 0
        for (j, blob, h, w), size in zip(todo, sizes):
            try:
                simplejpeg.decode_jpeg(blob, colorspace="GRAY" if cs[j] == 1 else "RGB",
                                       strict=False, min_height=h, min_width=w,
                                       buffer=decoded[at:at + size])
            except ValueError as err:
                raise LoaderError(f"{reader.path}: record {chunk[j]}: corrupt JPEG: {err}") \
                    from None
            offsets[j] = at
            at += size
        return (reader.data, decoded, from_raw, offsets, heights, widths, channels, src_h,
                src_w)
