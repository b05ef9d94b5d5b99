"""Super Progressive Learning (Kocyigit et al., WACV 2023, section 3.2): per-epoch view size and
augmentation magnitude, computed once before training like the other schedules.

The run starts at full resolution during the learning-rate warm-up (small images add gradient
noise while the learning rate is still small, which the paper found unstable), then drops to
`min_size` and climbs back to full size as the inverse of the learning rate's decay (the
paper's Fig. 3: "mimicking the inverse of the F1-CLR schedule"): the size goes with
1 - lr/lr_max of the half-cosine that both of jessl's schedules anneal with after warm-up
(eq. 6, eq. 8), rounded to stages `step` px apart, so small images come while the learning rate
is high, and the last epochs train at the size the backbone is evaluated at. The augmentation
magnitude (`View.scaled`: the colour-jitter strength, as the paper scales it) climbs with the
size, from `min_magnitude` at `min_size` to 1 at full size, weak augmentations going with small
images as in EfficientNetV2's progressive learning (Tan & Le 2021), the paper's reference [44].

Both are pure functions of the epoch, so a resumed run recomputes them; the trainer hands
them to the loader (`Loader.set_size`, `Loader.set_magnitude`) before each epoch.
"""

from __future__ import annotations

import math

# the paper discretises ImageNet resolutions by 32 px ("most network architectures have 5
# pooling layers") from 96 to 224; at CIFAR size the same number of stages needs 4 px steps
STEP_LARGE, STEP_SMALL, SMALL_BELOW = 32, 4, 128


def stage_sizes(min_size: int, max_size: int, step: int = 0) -> list[int]:
    """The sizes of the ramp: min_size, min_size + step, ..., max_size (always included)."""
    step = step or (STEP_LARGE if max_size >= SMALL_BELOW else STEP_SMALL)
    if not 0 < min_size <= max_size:
        raise ValueError(f"need 0 < min_size <= max_size, got {min_size}, {max_size}")
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    sizes = list(range(min_size, max_size, step))
    return sizes + [max_size]


def progressive_schedule(epochs: int, max_size: int, min_size: int, warmup_epochs: float = 0.0,
                         step: int = 0, min_magnitude: float = 1.0
                         ) -> tuple[list[int], list[float]]:
    """(size per epoch, magnitude per epoch) for `epochs` epochs.

    Warm-up epochs (rounded up: a partial warm-up epoch runs at full size) train at `max_size`
    and `min_magnitude`. After them, epoch e (at its midpoint u in (0, 1) of the post-warm-up
    run) gets the stage of `stage_sizes` nearest to min_size + (max_size - min_size) d(u), with
    d(u) = (1 - cos(pi u)) / 2 = 1 - lr/lr_max of the cosine decay; the last epoch is always
    full size and full strength. The magnitude is linear in the size: min_magnitude at
    min_size, 1 at max_size. With min_size == max_size and min_magnitude == 1 every epoch is
    (max_size, 1.0).
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if not 0.0 <= min_magnitude <= 1.0:
        raise ValueError(f"min_magnitude must be in [0, 1], got {min_magnitude}")
    sizes = stage_sizes(min_size, max_size, step)
    warm = min(math.ceil(max(warmup_epochs, 0.0)), epochs - 1)
    ramp = epochs - warm

    def magnitude(size: int) -> float:
        if size >= max_size:
            return 1.0
        return min_magnitude + (1.0 - min_magnitude) * (size - min_size) / (max_size - min_size)

    out_sizes = [max_size] * warm
    for j in range(ramp):
        decayed = (1 - math.cos(math.pi * (j + 0.5) / ramp)) / 2  # 1 - lr/lr_max mid-epoch
        target = min_size + (max_size - min_size) * decayed
        out_sizes.append(min(sizes, key=lambda s: (abs(s - target), s)))
    out_sizes[-1] = max_size
    out_mags = [magnitude(min_size)] * warm + [magnitude(s) for s in out_sizes[warm:]]
    return out_sizes, out_mags


def speedup_eq9(sizes: list[int], max_size: int) -> float:
    """The paper's eq. 9, M = (1/L) sum_t (r_max / r_t)^2: the mean of the per-step speed-ups,
    taking a step's cost as proportional to its pixels. (Not the ratio of total costs, which
    is what a run saves: see `relative_cost`.)"""
    return sum((max_size / s) ** 2 for s in sizes) / len(sizes)


def relative_cost(sizes: list[int], max_size: int, step_flops=None) -> dict:
    """What the size schedule costs against full size all along, three ways:

    "eq9_speedup": the paper's eq. 9 (`speedup_eq9`), the mean of per-step speed-ups; it
        overstates the saving, since a mean of ratios is not a ratio of sums;
    "pixel_cost": sum_t r_t^2 / (L r_max^2), total cost over full-size cost when cost goes with
        pixels (1 / pixel_cost is the speed-up of the whole run);
    "flop_cost": the same ratio with each size's cost the measured FLOPs of a training step,
        `step_flops(size)` (e.g. `jessl.train.flops.step_flops_on`); present only when given.
        Heads (projector, predictor) cost the same at every size, so it is above pixel_cost.
    `sizes` is per step or per epoch (equal steps per epoch)."""
    out = {"eq9_speedup": speedup_eq9(sizes, max_size),
           "pixel_cost": sum((s / max_size) ** 2 for s in sizes) / len(sizes)}
    if step_flops is not None:
        flops = {s: float(step_flops(s)) for s in set(sizes) | {max_size}}
        out["flop_cost"] = sum(flops[s] for s in sizes) / (len(sizes) * flops[max_size])
    return out
