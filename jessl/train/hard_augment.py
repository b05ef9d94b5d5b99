"""Hard Augment (Kocyigit, Hospedales & Bilen, WACV 2023, section 3.3, Algorithm 1).

The loader draws m candidate views per image instead of the pair (one decode, as always); a
no-grad selection pass runs all m, downsampled to `size` px, through the backbone and the
projector; every pair of candidates is scored by the negative cosine similarity of its two
embeddings (Algorithm 1's `arg_max_loss_pair`), and the hardest pair of each image goes
through the method's own forward and loss at full size. So the method never knows: it gets
the two views it always gets (`Method.forward(views)`), which is what makes this work for
every method of the registry, contrastive or not.

What the paper leaves open, decided here (measurements: `bench/hard_augment_choices.py`,
docs/benchmarks.md "Hard Augment: choices"):
  * batch-norm during selection: `bn="batch"` normalises with the selection batch's own
    statistics (the network as it trains, what the loss will see), without touching the
    running statistics; `bn="eval"` uses the running statistics. Neither ever updates them:
    the eval-time network must not learn the statistics of downsampled images.
  * the scoring network of EMA-teacher methods (BYOL, MoCo, DINO): `scorer="student"` (the
    paper's `f`, the network the gradient trains) or `"teacher"`.
  * asymmetric view recipes (BYOL's pair: blur 1.0 / 0.1, solarize 0 / 0.2): candidates
    alternate between the two recipes, and only pairs of one of each are eligible, ordered
    as the recipe is, so the method's view 0 and view 1 keep their distributions.
  * views after the pair (multi-crop's local crops, instance SimCLR's negative patch) are
    passed through unchanged.

The cost: the paper's eq. 11, overhead m r_sel^2 / (r^2 C) with C = 6 forward passes per
training step, 5% at m = 4, r_sel = 64, r = 224 (`jessl.train.flops.hard_augment_overhead_eq11`);
the trainer logs the measured FLOP and time overheads per epoch.
"""

from __future__ import annotations

import contextlib
import time

import torch
import torch.nn.functional as F
from torch import nn

from jessl.config import BN_MODES, SCORERS  # the config checks them before any work
from jessl.data.views import View
from jessl.train.flops import FlopMeter, hard_augment_overhead_eq11, shape_key


def candidate_views(views: list[View], m: int) -> list[View]:
    """The loader's views for m candidates: the recipe's pair alternated (view 0, view 1,
    view 0, ...) m times, then the recipe's other views (local crops) unchanged."""
    if m < 2:
        raise ValueError(f"Hard Augment needs >= 2 candidates, got {m}")
    if len(views) < 2:
        raise ValueError(f"Hard Augment picks a pair: the view recipe has {len(views)} view")
    return [views[k % 2] for k in range(m)] + list(views[2:])


def eligible_pairs(m: int, symmetric: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(first, second) candidate numbers of the pairs to score, (P,) each: all m(m-1)/2 pairs
    i < j when the recipe's two views are the same; else one of each recipe (even, odd)."""
    pairs = [(i, j) for i in range(m) for j in range(i + 1, m)]
    if not symmetric:
        pairs = [(i, j) if i % 2 == 0 else (j, i) for i, j in pairs if i % 2 != j % 2]
    first, second = zip(*pairs)
    return torch.tensor(first), torch.tensor(second)


def pair_scores(z: torch.Tensor, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Negative cosine similarity of every eligible pair of every image: z (m, B, D) -> (P, B)
    (Algorithm 1's loss of a pair; higher is harder)."""
    z = F.normalize(z.float(), dim=-1)
    return -(z[first] * z[second]).sum(-1)


def hardest_pairs(scores: torch.Tensor, first: torch.Tensor, second: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """The candidate numbers (B,), (B,) of each image's highest-scoring pair."""
    best = scores.argmax(0)
    return first[best], second[best]


def take(candidates: list[torch.Tensor], which: torch.Tensor) -> torch.Tensor:
    """Row b of candidates[which[b]]: (B, 3, H, W) from m tensors of that shape."""
    out = torch.stack(candidates)[which.to(candidates[0].device),
                                  torch.arange(len(which), device=candidates[0].device)]
    if candidates[0].is_contiguous(memory_format=torch.channels_last):
        out = out.contiguous(memory_format=torch.channels_last)
    return out


def downsample(x: torch.Tensor, size: int) -> torch.Tensor:
    """x (B, 3, H, W) with its shorter side at `size` px (antialiased bilinear, as a resize of
    the image would be); unchanged when it is no larger already."""
    h, w = x.shape[-2:]
    if min(h, w) <= size:
        return x
    return F.interpolate(x, size=(round(h * size / min(h, w)), round(w * size / min(h, w))),
                         mode="bilinear", antialias=True, align_corners=False)


@contextlib.contextmanager
def selection_mode(module: nn.Module, bn: str):
    """Batch-norm for the selection pass, running statistics never updated: "batch" keeps
    train mode (the batch's own statistics) with tracking off for the call; "eval" puts the
    module in eval mode (the running statistics). Every flag is restored afterwards."""
    if bn not in BN_MODES:
        raise ValueError(f"bn must be one of {BN_MODES}, got {bn!r}")
    modules = list(module.modules())
    training = [m.training for m in modules]
    norms = [m for m in modules if isinstance(m, nn.modules.batchnorm._BatchNorm)
             and m.track_running_stats]
    try:
        if bn == "eval":
            module.eval()
        else:  # _BatchNorm.forward passes no running buffers when not tracking: nothing moves
            for m in norms:
                m.track_running_stats = False
        yield
    finally:
        for m, flag in zip(modules, training):
            m.training = flag
        for m in norms:
            m.track_running_stats = True


class HardAugment:
    """Pick each image's hardest pair of views among m candidates (see the module docstring).

    `select(method, views)` takes the loader's views (m candidates, then any others) and
    returns the views the method trains on (the pair, then the others)."""

    def __init__(self, candidates: int = 4, size: int = 16, bn: str = "batch",
                 scorer: str = "student", symmetric: bool = True, skip_small: bool = False,
                 start_epoch: int = 0):
        if scorer not in SCORERS:
            raise ValueError(f"scorer must be one of {SCORERS}, got {scorer!r}")
        if bn not in BN_MODES:
            raise ValueError(f"bn must be one of {BN_MODES}, got {bn!r}")
        self.m, self.size, self.bn, self.scorer = candidates, size, bn, scorer
        self.skip_small, self.start_epoch = skip_small, start_epoch
        self.first, self.second = eligible_pairs(candidates, symmetric)
        self.reset_stats()

    def reset_stats(self) -> None:
        """Zero the per-epoch sums `summary` reports."""
        self.stats = {"flops": 0.0, "seconds": 0.0, "hardest": 0.0, "mean": 0.0, "steps": 0}

    @torch.no_grad()
    def embed(self, method: nn.Module, candidates: list[torch.Tensor]) -> torch.Tensor:
        """(m, B, D) projector outputs of the candidates at the selection size, one call."""
        small = torch.cat([downsample(c, self.size) for c in candidates])
        network = method.teacher if self.scorer == "teacher" and \
            getattr(method, "teacher", None) is not None else method
        with selection_mode(network, self.bn):
            z = method.embed(small, teacher=network is not method)
        return z.reshape(self.m, len(candidates[0]), -1)

    def mines(self, view_size: int, epoch: int) -> bool:
        """Whether epoch `epoch` (0-based), of `view_size` px views, mines: from `start_epoch`
        on, and with `skip_small` only where the views are larger than `size`."""
        return epoch >= self.start_epoch and not (self.skip_small and view_size <= self.size)

    def unmined(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        """The first candidate pair + others: what the method trains on where nothing is mined
        (candidates 0 and 1 are one draw of the recipe's own pair, in its order)."""
        return [views[0], views[1], *views[self.m:]]

    def select(self, method: nn.Module, views: list[torch.Tensor],
               meter: FlopMeter | None = None) -> list[torch.Tensor]:
        """The loader's m candidates (+ others) -> the method's views: hardest pair + others."""
        start = time.perf_counter()
        candidates, others = views[:self.m], views[self.m:]
        if meter is None:
            z = self.embed(method, candidates)
        else:
            key = (shape_key(candidates), self.size, self.scorer)
            with meter.measure("selection", key):
                z = self.embed(method, candidates)
            self.stats["flops"] += meter.add("selection", key)
        scores = pair_scores(z, self.first, self.second)
        i, j = hardest_pairs(scores, self.first, self.second)
        chosen = [take(candidates, i), take(candidates, j), *others]
        self.stats["seconds"] += time.perf_counter() - start
        self.stats["hardest"] += float(scores.max(0).values.mean())
        self.stats["mean"] += float(scores.mean())
        self.stats["steps"] += 1
        return chosen

    def summary(self, train_flops: float, train_seconds: float, view_size: int) -> dict:
        """Per-epoch log: the selection's FLOPs and seconds over the rest of the training
        steps' (forward + backward, data wait excluded), eq. 11's prediction for this view
        size, and the mean score of the chosen and of all pairs; then the sums start again."""
        s, n = self.stats, max(self.stats["steps"], 1)
        eq11 = hard_augment_overhead_eq11(view_size, min(self.size, view_size), self.m)
        out = {"hard_augment/overhead_flops": s["flops"] / max(train_flops, 1e-9),
               "hard_augment/overhead_eq11": eq11,
               "hard_augment/overhead_time": s["seconds"] / max(train_seconds - s["seconds"],
                                                                1e-9),
               "hard_augment/score_hardest": s["hardest"] / n,
               "hard_augment/score_mean": s["mean"] / n}
        self.reset_stats()
        return out


def from_config(h, views: list[View]) -> tuple[HardAugment | None, list[View]]:
    """(HardAugment or None, the loader's views) for a `hard_augment` config section and the
    run's view recipe."""
    if not h.active:
        return None, list(views)
    hard = HardAugment(h.candidates, h.size, h.bn, h.scorer, symmetric=views[0] == views[1],
                       skip_small=h.skip_small, start_epoch=h.start_epoch)
    return hard, candidate_views(views, h.candidates)
