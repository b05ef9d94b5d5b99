"""Super Progressive Learning (Kocyigit et al., WACV 2023, section 3.2): per-epoch view size and
augmentation magnitude, computed once before training like the other schedules.

The run starts at full resolution during the learning-rate warm-up (small images add gradient
noise while the learning rate is still small, which the paper found unstable), then drops to
`min_size` and climbs back to full size in equal stages of `step` pixels, so the last stage
trains at the size the backbone is evaluated at. The augmentation magnitude (`View.scaled`:
colour-jitter strength and the photometric probabilities) climbs linearly over the same stages
from `min_magnitude` to 1, weak augmentations going with small images as in EfficientNetV2's
progressive learning (Tan & Le 2021), the paper's reference [44].

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
    and `min_magnitude`; the remaining epochs are split into equal stages, one per size of
    `stage_sizes`, in increasing order (the later stages get the longer share when the split is
    uneven: full size last and longest). With min_size == max_size and min_magnitude == 1 every epoch is (max_size, 1.0).
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if not 0.0 <= min_magnitude <= 1.0:
        raise ValueError(f"min_magnitude must be in [0, 1], got {min_magnitude}")
    sizes = stage_sizes(min_size, max_size, step)
    warm = min(math.ceil(max(warmup_epochs, 0.0)), epochs - 1)
    ramp = epochs - warm
    stages = len(sizes)

    def magnitude(stage: int) -> float:
        return 1.0 if stages == 1 else min_magnitude + (1.0 - min_magnitude) * stage / (stages - 1)

    out_sizes, out_mags = [max_size] * warm, [magnitude(0)] * warm
    for j in range(ramp):
        stage = stages - 1 - ((ramp - 1 - j) * stages) // ramp  # the longer shares go last
        out_sizes.append(sizes[stage])
        out_mags.append(magnitude(stage))
    if ramp < stages:  # too few epochs for every stage: end at full size and strength anyway
        out_sizes[-1], out_mags[-1] = max_size, 1.0
    return out_sizes, out_mags


def relative_cost(sizes: list[int], max_size: int) -> float:
    """Training cost against full size all along, taking cost as proportional to pixels (the
    paper's eq. 9 is its inverse, the speed-up M)."""
    return sum((s / max_size) ** 2 for s in sizes) / len(sizes)
