"""The contract every SSL method keeps, so the trainer treats them all alike.

A method is an `nn.Module` that owns the backbone, its heads and any state (EMA teacher, queue,
DINO's centre). The trainer's loop is, for every batch:

    out = method(batch.views)          # views: list of V tensors (B, 3, h_v, w_v), float
    out.loss.backward()
    method.before_optimizer_step(step, total_steps)  # gradient edits (DINO's frozen last layer)
    optimizer.step()
    method.after_step(step, total_steps)  # EMA updates and other per-step state
    probe(out.features)                # (B, F) backbone features of view 0, detached

Losses that need the whole batch get `gather` (None in one process; the trainer passes
`jessl.distributed.gather_with_grad` under DDP). Each method's own options are a dataclass
whose fields carry their default, unit and source, so `jessl train --method NAME --help`
can list them.

Shared conventions (the helpers below):
  * every backbone call takes all consecutive views of one shape at once (`encode`, DINO's
    MultiCropWrapper), so BatchNorm sees (views x B) images, as in SimCLR's and DINO's code;
    heads run once over every view (`apply_head`);
  * EMA teachers are deep copies with requires_grad False (`ema_copy`), moved in `after_step`
    with teacher <- m teacher + (1 - m) student (`ema_update_`), m from a cosine schedule array
    (`cosine_at`); they stay in train mode, so their BatchNorm uses batch statistics, as in BYOL;
  * state that must survive a checkpoint (queues, pointers, DINO's centre and temperature) is a
    registered buffer;
  * multi-crop (SwAV, Caron et al. 2020): views[:N_GLOBAL] are the global crops, the rest local
    ones; a method with `multicrop = True` sums its two-view loss over `crop_pairs`, in which a
    local view only ever meets a global one and is never a target (teacher output, neighbour);
    features and embeddings (probe, kNN, RankMe) are view 0's, a global view;
  * `recipe` holds the paper's training settings (optimizer, lr and its scaling, weight decay ...)
    as {config key: (value, source)}; `jessl.config` applies them to the keys a user did not set.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..schedules import cosine

N_GLOBAL = 2  # multi-crop's global crops, always the first views (SwAV section 3.2, DINO)


@dataclass
class StepOutput:
    loss: torch.Tensor  # scalar, what the optimizer minimises
    features: torch.Tensor  # (B, F) backbone features of view 0, detached (online probe, kNN)
    embeddings: torch.Tensor  # (B, D) projector output of view 0, detached (RankMe)
    logs: dict = field(default_factory=dict)  # floats to log: loss terms, temperatures ...


class Method(nn.Module):
    """Base class: subclasses set `name`, `options` (a dataclass type), `views` (a preset)."""

    name: str = ""
    options: type = None  # dataclass of the method's own hyper-parameters
    views: str = "simclr"  # the view preset its paper uses (CIFAR runs add "_cifar")
    num_views: int | None = 2  # views its preset gives; None: 2 global + any local (multi-crop)
    # takes local views after the N_GLOBAL global ones (data.local_views); a multi-crop preset
    # (num_views None) implies it, see `takes_local_views`
    multicrop: bool = False
    default_projector: str = ""  # head spec used when build_method is given none (see heads.py)
    # {config key: (value, source)}: the paper's settings for the RunConfig keys the user leaves
    # unset; keys absent here keep RunConfig's defaults (SimCLR's, appendix B.1)
    recipe: dict = {}

    @classmethod
    def recipe_for(cls, opts) -> dict:
        """The recipe for these options (MoCo's depends on its version); `recipe` by default."""
        return cls.recipe

    def __init__(self, backbone: nn.Module, projector: str | None = None, opts=None,
                 gather: Callable | None = None):
        super().__init__()
        self.backbone = backbone  # images (B, 3, H, W) -> features (B, backbone.feature_dim)
        if isinstance(opts, dict):  # from a config file or the CLI
            opts = self.options(**opts)
        if opts is not None and not isinstance(opts, self.options):
            raise TypeError(f"{self.name} takes {self.options.__name__} options, got "
                            f"{type(opts).__name__}")
        self.opts = opts if opts is not None else self.options()
        self.gather = gather

    def head_spec(self, projector: str | None) -> str:
        """The projector spec to build: the one given, or the method's default for "" / None."""
        return projector or self.default_projector

    def check_views(self, views: list[torch.Tensor]) -> None:
        """ValueError unless views has the count this method expects."""
        n = len(views)
        want_any = takes_local_views(type(self))
        if (want_any and n < N_GLOBAL) or (not want_any and n != self.num_views):
            want = f">= {N_GLOBAL}" if want_any else str(self.num_views)
            raise ValueError(f"{self.name} takes {want} views per batch, got {n} (view preset "
                             f"{self.views!r})")

    def forward(self, views: list[torch.Tensor]) -> StepOutput:
        raise NotImplementedError

    def embed(self, images: torch.Tensor, teacher: bool = False) -> torch.Tensor:
        """Projector output (B, D) of images (B, 3, H, W), predictor excluded: the embedding
        Hard Augment scores candidate views by (jessl.train.hard_augment). teacher=True: the
        EMA teacher's, for methods that keep one as `self.teacher` (backbone + projector)."""
        if teacher:
            return self.teacher["projector"](self.teacher["backbone"](images))
        return self.projector(self.backbone(images))

    def before_optimizer_step(self, step: int, total_steps: int) -> None:
        """Edit gradients after backward (and clipping), before the update; nothing by default."""

    def after_step(self, step: int, total_steps: int) -> None:
        """Per-step state after the optimizer step (EMA teachers); nothing by default."""

    def parameters_to_optimize(self):
        """Parameters the optimizer updates (EMA teachers excluded)."""
        return [p for p in self.parameters() if p.requires_grad]

    def fixed_lr_parameters(self) -> list[nn.Parameter]:
        """Parameters (a subset of `parameters_to_optimize`) whose learning rate stays at the
        peak instead of following the schedule; none by default (SimSiam: its predictor)."""
        return []


def takes_local_views(cls: type[Method]) -> bool:
    """Whether method class `cls` takes local views: `multicrop`, or a multi-crop preset."""
    return cls.multicrop or cls.num_views is None


def encode(backbone: nn.Module, views: list[torch.Tensor]) -> list[torch.Tensor]:
    """Backbone features of every view, (B, F) each, with one call per run of consecutive
    same-shape views (DINO's MultiCropWrapper), which is faster than one call per view."""
    out: list[torch.Tensor] = []
    start = 0
    while start < len(views):
        end = start + 1
        while end < len(views) and views[end].shape == views[start].shape:
            end += 1
        feats = backbone(torch.cat(views[start:end]) if end - start > 1 else views[start])
        out.extend(feats.chunk(end - start))
        start = end
    return out


def crop_pairs(n_views: int, symmetric: bool) -> list[tuple[int, int]]:
    """(global view g, other view v) index pairs a multi-crop loss averages over; a local view
    only ever meets a global one. symmetric (a loss with L(a, b) = L(b, a): SimCLR, VICReg,
    Barlow Twins): each unordered pair once, (0, 1) then (0, l), (1, l) for every local l: 1 + 2k
    pairs. Directed (the g side is the target, BYOL's teacher, NNCLR's neighbour): (g, v) for
    every v != g, as solo-learn's BYOL: 2 + 2k pairs. Two views give [(0, 1)] and [(0, 1), (1, 0)]."""
    if symmetric:
        return [(0, 1)] + [(g, v) for v in range(N_GLOBAL, n_views) for g in range(N_GLOBAL)]
    return [(g, v) for g in range(N_GLOBAL) for v in range(n_views) if v != g]


def mean_over_pairs(loss: Callable, pairs: list[tuple[int, int]]) -> torch.Tensor:
    """Mean of loss(g, v) over the pairs (the losses' mean over their pairs, SwAV and DINO)."""
    total = sum(loss(g, v) for g, v in pairs)
    return total / len(pairs)


def apply_head(head: nn.Module, xs: list[torch.Tensor]) -> list[torch.Tensor]:
    """head over every (B_v, D) tensor of xs in one call; returns the outputs in order."""
    out = head(torch.cat(xs)) if len(xs) > 1 else head(xs[0])
    return list(out.split([x.shape[0] for x in xs]))


def ema_copy(module: nn.Module) -> nn.Module:
    """A frozen deep copy: the EMA teacher / momentum encoder, never touched by the optimizer."""
    teacher = copy.deepcopy(module)
    teacher.requires_grad_(False)
    return teacher


@torch.no_grad()
def ema_update_(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """teacher <- momentum * teacher + (1 - momentum) * student, parameter by parameter
    (BYOL eq. 1; MoCo eq. 2). Buffers (BatchNorm statistics) are the teacher's own."""
    if momentum >= 1.0:  # BYOL's schedule ends at exactly 1: the target stops moving
        return
    for t, s in zip(teacher.parameters(), student.parameters()):
        t.lerp_(s.detach(), 1.0 - momentum)


@functools.lru_cache(maxsize=16)
def _cosine(start: float, end: float, total_steps: int) -> np.ndarray:
    return cosine(start, end, total_steps)


def cosine_at(start: float, end: float, step: int, total_steps: int) -> float:
    """Value at `step` of `jessl.schedules.cosine(start, end, total_steps)` (cached array)."""
    return float(_cosine(float(start), float(end), int(total_steps))[min(step, total_steps - 1)])

