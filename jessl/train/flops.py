"""Compute accounting: the FLOPs of every training step, measured, not estimated by hand.

`torch.utils.flop_counter.FlopCounterMode` counts the floating-point operations of the matrix
products and convolutions that run under it (2 per multiply-add; element-wise ops such as
BatchNorm, ReLU and the EMA update are not counted, a few percent of a conv net's cost). A
step is measured once per distinct shape (the view sizes change with Super Progressive
Learning; Hard Augment adds a selection pass at its own size) and the counts are cached, so
after the first step of each shape the accounting costs a dictionary lookup.

The backward pass is measured too, not taken as twice the forward: the first layer computes no
gradient for its input (the images), so a conv net's backward is a little under 2x its forward,
and a method whose forward includes an EMA teacher (BYOL, MoCo, DINO) has a forward that the
backward never revisits. The efficient-training paper (Kocyigit et al. 2023, section 4) reports
training cost the same way: FLOPs per step times steps, in petaFLOPs.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Hashable

import torch
from torch.utils.flop_counter import FlopCounterMode

PETA = 1e15


def count_flops(fn: Callable, *args, **kwargs) -> tuple[float, object]:
    """(FLOPs of `fn(*args, **kwargs)`, its result): everything that runs inside the call,
    forward or backward, on any device."""
    counter = FlopCounterMode(display=False)
    with counter:
        result = fn(*args, **kwargs)
    return float(counter.get_total_flops()), result


class FlopMeter:
    """FLOPs per part of a step ("forward", "backward", "selection"), measured on the first call
    for each key (shapes) and cached; `total` accumulates what the steps used.

        meter = FlopMeter()
        with meter.measure("forward", key):   # counted only if key is new for "forward"
            out = model(views)
        meter.add("forward", key)             # adds the cached count to meter.total
    """

    def __init__(self, total: float = 0.0, scale: int = 1):
        self.cache: dict[tuple[str, Hashable], float] = {}  # one process's FLOPs, one call
        self.total = float(total)  # FLOPs of every step so far (restored on resume)
        self.by_part: dict[str, float] = {}  # the same total split by part
        self.scale = scale  # processes running the same step (DDP ranks): the run's total

    def known(self, part: str, key: Hashable) -> bool:
        return (part, key) in self.cache

    @contextlib.contextmanager
    def measure(self, part: str, key: Hashable):
        """Count what runs inside the block when (part, key) is new; otherwise do nothing."""
        if self.known(part, key):
            yield
            return
        counter = FlopCounterMode(display=False)
        with counter:
            yield
        self.cache[(part, key)] = float(counter.get_total_flops())

    def add(self, part: str, key: Hashable) -> float:
        """Add the cached count of (part, key), times `scale`, to the totals; returns it."""
        flops = self.cache[(part, key)] * self.scale
        self.total += flops
        self.by_part[part] = self.by_part.get(part, 0.0) + flops
        return flops


def shape_key(tensors) -> tuple:
    """A hashable key of a list of tensors' shapes: what a step's FLOPs depend on."""
    return tuple(tuple(t.shape) for t in tensors)


def hard_augment_overhead_eq11(size: int, sel_size: int, candidates: int,
                               cost_ratio: float = 6.0) -> float:
    """The selection pass's cost over the training step's, from the paper's eq. 11
    (M_ha = r^2 C / (r^2 C + m r_sel^2), overhead = 1/M_ha - 1 = m r_sel^2 / (r^2 C)), with
    C the cost of a training step in forward passes of one view at full size (6: two views,
    forward + a backward of twice the forward). At r = 224, r_sel = 64, m = 4: 5.4%."""
    return candidates * sel_size ** 2 / (size ** 2 * cost_ratio)


def step_flops_on(model: torch.nn.Module, views: list[torch.Tensor]) -> dict:
    """{"forward", "backward"} FLOPs of one training step of a method on `views`, its
    parameters' gradients left as they were (a measurement helper for tests and benches)."""
    saved = [p.grad for p in model.parameters()]
    fwd, out = count_flops(model, views)
    bwd, _ = count_flops(out.loss.backward)
    for p, g in zip(model.parameters(), saved):
        p.grad = g
    return {"forward": fwd, "backward": bwd}
