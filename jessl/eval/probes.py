"""Linear and MLP probes on frozen features (SSL Cookbook section 3.7.1), plain torch on CPU.

Hyper-parameters are chosen on a validation split carved out of the TRAINING set; the test set is
touched once, after every choice is made. The code is shaped so that this holds by construction:
`sweep_linear` and `train_mlp` have no test arguments, and the public probes pass them only the
training arrays, then score the test arrays with the finished classifier.

Features are standardised with the mean and standard deviation of the rows a classifier is fitted
on, so one learning-rate grid suits features of any scale (SSL features range from ~1e-2 to ~1e2).
Results are deterministic given the seed and torch's thread count (which changes float sums).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from jessl.config import MlpProbeConfig
from jessl.eval.knn import as_tensor
from jessl.eval.splits import stratified_split

# Linear probe. SGD with momentum and a cosine schedule, no augmentation, as DINO's
# eval_linear.py; the grid is a coarse version of the learning-rate sweep of DINOv2's
# eval/linear.py (1e-5 .. 0.1), narrowed by us to the decades that train standardised features
# in LINEAR_EPOCHS, crossed with weight decays from none to moderate.
LRS = (0.001, 0.01, 0.1)  # SGD step at batch_size 256, standardised features
WEIGHT_DECAYS = (0.0, 1e-4, 1e-3)  # L2 coefficient added to the gradient (not on the bias)
LINEAR_EPOCHS = 30  # passes over the training rows; the Cookbook's "around 100", cut for CPU
BATCH_SIZE = 256  # images per step, the batch the lr grid is stated at
MOMENTUM = 0.9  # SGD momentum, DINO eval_linear.py
VAL_FRACTION = 0.1  # of each training class held out to choose hyper-parameters
EVAL_CHUNK = 4096  # rows per forward pass when scoring, bounds the activation memory

# Cost, measured on this project's shared 2-core CPU (load ~3, one run each), 45k x 512 features,
# 100 classes: a linear head-epoch 0.2-0.8 s, so the default sweep (9 heads x 30 epochs) plus the
# refit takes 1-4 min (10 classes: ~10x less); an MLP epoch at 2048-2048 takes ~48 s, at 512-512
# ~10x less.

# MLP probe: FFCV-SSL (Bordes et al. 2023) section 4 uses "a two layers MLP of size 2048-2048".
MLP_HIDDEN = MlpProbeConfig.hidden  # 2048-2048, FFCV-SSL paper (jessl eval mlp --hidden)
MLP_LR = 1e-3  # AdamW step, the torch.optim.AdamW default (Adam paper's 1e-3)
MLP_WEIGHT_DECAY = 0.01  # decoupled decay, the torch.optim.AdamW default
MLP_EPOCHS = MlpProbeConfig.epochs  # 10, few: the MLP probe peaks early (Cookbook fig. 13)


@dataclass(frozen=True)
class SweepResult:
    """The grid point chosen on the validation split and every point's validation top-1 (%)."""
    lr: float
    weight_decay: float
    scores: tuple[dict, ...]  # ({"lr", "weight_decay", "val_top1"}, ...) in grid order


@dataclass(frozen=True)
class LinearProbeResult:
    """Test accuracy (%) of the linear probe retrained on all training rows with the chosen values."""
    top1: float
    top5: float | None  # None with fewer than 5 classes
    lr: float
    weight_decay: float
    val_scores: tuple[dict, ...]  # the sweep, see SweepResult.scores
    epochs: int
    batch_size: int
    seed: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class MLPProbeResult:
    """Test accuracy (%) of the MLP at its best validation epoch and at its last epoch."""
    top1_best: float
    top1_last: float
    top5_best: float | None
    top5_last: float | None
    best_epoch: int  # 0-based index into val_top1
    val_top1: tuple[float, ...]  # validation top-1 (%) after each epoch
    hidden: tuple[int, ...]
    optimizer: str
    lr: float
    weight_decay: float
    epochs: int
    batch_size: int
    seed: int

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------- shared pieces

def cosine_schedule(base: float, total_steps: int) -> torch.Tensor:
    """One learning rate per step, cosine from base to 0 (SGDR without restarts), (total_steps,)."""
    t = torch.arange(total_steps, dtype=torch.float64)
    return base * 0.5 * (1.0 + torch.cos(math.pi * t / max(total_steps, 1)))


def standardizer(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, D) -> mean (D,), std (D,); constant features get std 1 so they map to 0, not NaN."""
    mean = x.mean(dim=0)
    std = x.std(dim=0)
    return mean, torch.where(std > 1e-12, std, torch.ones_like(std))


def num_batches(n: int, batch_size: int) -> int:
    """Batches per epoch: a last batch of one row is dropped, as BatchNorm cannot train on it."""
    count = -(-n // batch_size)
    return count - 1 if count > 1 and n % batch_size == 1 else count


def batches(n: int, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    """One shuffled epoch of index batches (num_batches of them), order drawn from gen."""
    return list(torch.randperm(n, generator=gen).split(batch_size))[:num_batches(n, batch_size)]


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """logits (M, C), labels (M,) -> % of rows whose label is among the k largest logits."""
    if len(labels) == 0:
        return 0.0
    hit = (logits.topk(k, dim=1).indices == labels[:, None]).any(dim=1)
    return 100.0 * float(hit.double().mean())


def _hold_out(train_x, train_y, val_fraction: float, seed: int, num_classes):
    """Training rows split per class into fit / validation, and the fit rows' statistics."""
    x, y = _prepare(train_x, train_y)
    num_classes = _num_classes(y, num_classes)
    fit_idx, val_idx = stratified_split(y.numpy(), fraction=val_fraction, seed=seed)
    if len(val_idx) == 0:
        raise ValueError(f"val_fraction={val_fraction} leaves no validation rows")
    fit_idx, val_idx = torch.from_numpy(fit_idx), torch.from_numpy(val_idx)
    mean, std = standardizer(x[fit_idx])
    return x, y, num_classes, fit_idx, val_idx, mean, std


def _prepare(x, y) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = as_tensor(x, torch.float32), as_tensor(y, torch.int64)
    if x.ndim != 2 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(f"need features (N, D) and labels (N,), got {tuple(x.shape)}, {tuple(y.shape)}")
    return x, y


def _num_classes(train_y: torch.Tensor, num_classes: int | None) -> int:
    # From the training labels only: reading the test labels here would let them shape the probe.
    return int(train_y.max()) + 1 if num_classes is None else num_classes


# ---------------------------------------------------------------- linear probe

def train_linear_heads(x: torch.Tensor, y: torch.Tensor, num_classes: int, lrs: Sequence[float],
                       weight_decays: Sequence[float], epochs: int, batch_size: int, seed: int
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit H softmax regressions at once, head h with (lrs[h], weight_decays[h]) -> W (D, H*C), b (H*C,).

    x (N, D) is already standardised. The heads share every batch and one matmul per step (the
    multi-head trick of BEiT's linear probe, Cookbook 3.7.1); their columns never mix, so a head
    that diverges leaves the others untouched. Zero init makes the fit depend only on the seed's
    batch order.
    """
    n = x.shape[0]
    heads = LinearHeads(x.shape[1], num_classes, lrs, weight_decays)
    gen = torch.Generator().manual_seed(seed)
    schedule = cosine_schedule(1.0, epochs * num_batches(n, batch_size)).float()
    step = 0
    for _ in range(epochs):
        for idx in batches(n, batch_size, gen):
            heads.step(x[idx], y[idx], float(schedule[step]))
            step += 1
    return heads.w, heads.b


class LinearHeads:
    """H softmax regressions trained by SGD with momentum, one shared matmul per step.

    State only (weights and momentum buffers); the caller owns the batches and the schedule, so
    the same step serves precomputed features (`train_linear_heads`) and features of freshly
    augmented views (`jessl.eval.augmented`). The cross-entropy gradient is written out
    (softmax - one-hot) to skip autograd.
    """

    def __init__(self, dim: int, num_classes: int, lrs: Sequence[float],
                 weight_decays: Sequence[float]):
        h, c = len(lrs), num_classes
        self.num_classes = c
        self.w, self.b = torch.zeros(dim, h * c), torch.zeros(h * c)
        self.w_buf, self.b_buf = torch.zeros_like(self.w), torch.zeros_like(self.b)
        self.lr = torch.tensor(lrs, dtype=torch.float32).repeat_interleave(c)  # (H*C,)
        self.wd = torch.tensor(weight_decays, dtype=torch.float32).repeat_interleave(c)  # (H*C,)
        self.onehot = torch.eye(c)[:, None, :]  # (C, 1, C): row y broadcasts over the heads

    def step(self, xb: torch.Tensor, yb: torch.Tensor, lr_scale: float) -> None:
        """One SGD step on standardised xb (B, D), labels yb (B,), every head's lr x lr_scale."""
        b, hc, c = len(xb), self.w.shape[1], self.num_classes
        probs = torch.softmax((xb @ self.w + self.b).view(b, hc // c, c), dim=2)  # (B, H, C)
        g = (probs - self.onehot[yb]).view(b, hc) / b  # d(mean CE)/d(logits)
        self.w_buf.mul_(MOMENTUM).add_(xb.T @ g + self.wd * self.w)
        self.b_buf.mul_(MOMENTUM).add_(g.sum(dim=0))
        self.w.sub_(self.lr * lr_scale * self.w_buf)
        self.b.sub_(self.lr * lr_scale * self.b_buf)


def _head_logits(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Standardised x (M, D) -> logits (M, H, C) of every head."""
    parts = [(x[i:i + EVAL_CHUNK] @ w + b) for i in range(0, len(x), EVAL_CHUNK)]
    out = torch.cat(parts) if parts else torch.zeros(0, w.shape[1])
    return out.view(len(x), -1, num_classes)


def sweep_linear(train_x, train_y, *, lrs: Sequence[float] = LRS,
                 weight_decays: Sequence[float] = WEIGHT_DECAYS, epochs: int = LINEAR_EPOCHS,
                 batch_size: int = BATCH_SIZE, val_fraction: float = VAL_FRACTION, seed: int = 0,
                 num_classes: int | None = None) -> SweepResult:
    """Choose (lr, weight_decay) on a stratified val split of train (N, D), (N,); sees no test data.

    Every point of lrs x weight_decays is trained as one head of a single multi-head fit on the
    other rows; the best validation top-1 wins, ties going to the earlier point in grid order.
    A head whose weights overflow scores 0.
    """
    x, y, num_classes, fit_idx, val_idx, mean, std = _hold_out(
        train_x, train_y, val_fraction, seed, num_classes)
    grid = [(lr, wd) for lr in lrs for wd in weight_decays]
    w, b = train_linear_heads((x[fit_idx] - mean) / std, y[fit_idx], num_classes,
                              [g[0] for g in grid], [g[1] for g in grid], epochs, batch_size, seed)
    logits = _head_logits(w, b, (x[val_idx] - mean) / std, num_classes)  # (V, H, C)
    finite = torch.isfinite(w.view(w.shape[0], len(grid), num_classes)).all(dim=2).all(dim=0)
    finite &= torch.isfinite(b.view(len(grid), num_classes)).all(dim=1)
    scores = tuple({"lr": lr, "weight_decay": wd,
                    "val_top1": topk_accuracy(logits[:, i], y[val_idx], 1) if finite[i] else 0.0}
                   for i, (lr, wd) in enumerate(grid))
    best = max(range(len(grid)), key=lambda i: (scores[i]["val_top1"], -i))
    return SweepResult(lr=grid[best][0], weight_decay=grid[best][1], scores=scores)


def linear_probe(train_x, train_y, test_x, test_y, *, lrs: Sequence[float] = LRS,
                 weight_decays: Sequence[float] = WEIGHT_DECAYS, epochs: int = LINEAR_EPOCHS,
                 batch_size: int = BATCH_SIZE, val_fraction: float = VAL_FRACTION, seed: int = 0,
                 num_classes: int | None = None) -> LinearProbeResult:
    """train (N, D), (N,), test (M, D), (M,) -> test top-1/top-5 (%) of a softmax regression.

    Chooses (lr, weight_decay) with `sweep_linear` on the training rows alone, retrains on all
    training rows with the chosen pair, then scores the test rows once.
    """
    x, y = _prepare(train_x, train_y)
    num_classes = _num_classes(y, num_classes)
    sweep = sweep_linear(x, y, lrs=lrs, weight_decays=weight_decays, epochs=epochs,
                         batch_size=batch_size, val_fraction=val_fraction, seed=seed,
                         num_classes=num_classes)
    mean, std = standardizer(x)
    w, b = train_linear_heads((x - mean) / std, y, num_classes, [sweep.lr], [sweep.weight_decay],
                              epochs, batch_size, seed)
    # The test arrays enter here, after every choice is made, and only to be scored.
    tx, ty = _prepare(test_x, test_y)
    logits = _head_logits(w, b, (tx - mean) / std, num_classes)[:, 0]  # (M, C)
    return LinearProbeResult(
        top1=topk_accuracy(logits, ty, 1),
        top5=topk_accuracy(logits, ty, 5) if num_classes >= 5 else None,
        lr=sweep.lr, weight_decay=sweep.weight_decay, val_scores=sweep.scores,
        epochs=epochs, batch_size=batch_size, seed=seed)


# ---------------------------------------------------------------- MLP probe

def mlp(dims: Sequence[int]) -> nn.Sequential:
    """dims (D, h1, ..., C) -> Linear-BN-ReLU blocks for each hidden width, then a Linear."""
    layers: list[nn.Module] = []
    for d_in, d_out in zip(dims[:-2], dims[1:-1]):
        # no bias before BN: BN's own shift replaces it
        layers += [nn.Linear(d_in, d_out, bias=False), nn.BatchNorm1d(d_out), nn.ReLU(inplace=True)]
    layers.append(nn.Linear(dims[-2], dims[-1]))
    return nn.Sequential(*layers)


@torch.no_grad()
def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    parts = [model(x[i:i + EVAL_CHUNK]) for i in range(0, len(x), EVAL_CHUNK)]
    return torch.cat(parts) if parts else torch.zeros(0, model[-1].out_features)


def train_mlp(fit_x: torch.Tensor, fit_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor,
              num_classes: int, *, hidden: Sequence[int], optimizer: str, lr: float,
              weight_decay: float, epochs: int, batch_size: int, seed: int
              ) -> tuple[nn.Module, nn.Module, list[float]]:
    """Train on (standardised) fit rows, score val after each epoch -> (best model, last model, val top-1 per epoch).

    Receives only training-set rows (fit and val are both splits of it). The best model is the
    first epoch with the highest validation top-1.
    """
    # fork_rng: the seed decides the init here without resetting the caller's global RNG
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = mlp([fit_x.shape[1], *hidden, num_classes])
    if optimizer == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=MOMENTUM, weight_decay=weight_decay)
    else:
        raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {optimizer!r}")
    gen = torch.Generator().manual_seed(seed)
    schedule = cosine_schedule(lr, epochs * num_batches(len(fit_x), batch_size))
    curve: list[float] = []
    best_state, step = None, 0
    for _ in range(epochs):
        model.train()
        for idx in batches(len(fit_x), batch_size, gen):
            for group in opt.param_groups:
                group["lr"] = float(schedule[step])
            loss = F.cross_entropy(model(fit_x[idx]), fit_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        curve.append(topk_accuracy(_logits(model, val_x), val_y, 1))
        if best_state is None or curve[-1] > max(curve[:-1]):
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    best = copy.deepcopy(model)  # a copy, not a new mlp(): no draw from the global RNG
    if best_state is not None:
        best.load_state_dict(best_state)
    return best.eval(), model.eval(), curve


def mlp_probe(train_x, train_y, test_x, test_y, *, hidden: Sequence[int] = MLP_HIDDEN,
              optimizer: str = "adamw", lr: float = MLP_LR, weight_decay: float = MLP_WEIGHT_DECAY,
              epochs: int = MLP_EPOCHS, batch_size: int = BATCH_SIZE,
              val_fraction: float = VAL_FRACTION, seed: int = 0,
              num_classes: int | None = None) -> MLPProbeResult:
    """train (N, D), (N,), test (M, D), (M,) -> test top-1/top-5 (%) at the best-val and last epochs.

    Trains on the training rows minus a stratified validation split, keeps the weights of the best
    validation epoch (the MLP probe's best epoch is rarely its last, FFCV-SSL fig. 8), and scores
    both those and the last epoch's weights on the test rows once. No retraining on the full
    training set: the best epoch count of a 90% fit need not carry over.
    """
    x, y, num_classes, fit_idx, val_idx, mean, std = _hold_out(
        train_x, train_y, val_fraction, seed, num_classes)
    best, last, curve = train_mlp(
        (x[fit_idx] - mean) / std, y[fit_idx], (x[val_idx] - mean) / std, y[val_idx], num_classes,
        hidden=hidden, optimizer=optimizer, lr=lr, weight_decay=weight_decay, epochs=epochs,
        batch_size=batch_size, seed=seed)
    tx, ty = _prepare(test_x, test_y)
    tx = (tx - mean) / std
    best_logits, last_logits = _logits(best, tx), _logits(last, tx)
    return MLPProbeResult(
        top1_best=topk_accuracy(best_logits, ty, 1), top1_last=topk_accuracy(last_logits, ty, 1),
        top5_best=topk_accuracy(best_logits, ty, 5) if num_classes >= 5 else None,
        top5_last=topk_accuracy(last_logits, ty, 5) if num_classes >= 5 else None,
        best_epoch=max(range(len(curve)), key=lambda i: (curve[i], -i)) if curve else -1,
        val_top1=tuple(curve), hidden=tuple(hidden), optimizer=optimizer, lr=lr,
        weight_decay=weight_decay, epochs=epochs, batch_size=batch_size, seed=seed)
