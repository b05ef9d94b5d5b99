"""Linear probe trained on freshly augmented views of the training images, backbone frozen.

The precomputed-feature probe (`jessl.eval.probes.linear_probe`) sees each training image one
way; the protocol of SimCLR, DINO (eval_linear.py) and solo-learn instead draws a new
RandomResizedCrop + flip of every image each epoch, which regularises the classifier and adds a
point or two of top-1. Here every epoch runs the frozen backbone (eval mode: BatchNorm keeps its
running statistics) over new views from the Loader, and every point of the lr x weight-decay
grid is one head of a single multi-head fit (`LinearHeads`), so the grid costs one backbone pass
per epoch, not one per point.

Held out, as in the other probes: a stratified VAL_FRACTION of the training records, seen only
through the plain evaluation view, chooses the grid point; the test records are scored once by
the chosen head. Standardisation uses the mean and std of the fit records' evaluation-view
features. The chosen head is not refitted on all training records (the refit of linear_probe):
with augmentation a refit is a second full run of backbone passes, and 10% fewer images cost
little accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from torch import nn

from jessl.config import LinearProbeConfig
from jessl.eval.probes import (BATCH_SIZE, LRS, VAL_FRACTION, WEIGHT_DECAYS, LinearHeads,
                               cosine_schedule, standardizer, topk_accuracy)
from jessl.eval.splits import stratified_split

AUG_SCALE = LinearProbeConfig.augment_scale  # RandomResizedCrop area: (0.08, 1), torchvision's
AUG_EPOCHS = 10  # passes of augmented views; each is a backbone pass, so fewer than LINEAR_EPOCHS


@dataclass(frozen=True)
class AugmentedProbeResult:
    """Test accuracy (%) of the head chosen on the validation records."""
    top1: float
    top5: float | None  # None with fewer than 5 classes
    lr: float
    weight_decay: float
    val_scores: tuple[dict, ...]  # ({"lr", "weight_decay", "val_top1"}, ...) in grid order
    epochs: int
    batch_size: int
    seed: int
    view: str  # the training view, for the record

    def to_dict(self) -> dict:
        return asdict(self)


def augment_view(eval_view, scale: tuple[float, float] = AUG_SCALE):
    """The evaluation view made random: RandomResizedCrop(scale) at its size, flip p=0.5, its
    normalisation kept."""
    return replace(eval_view, crop="random", scale=tuple(scale), flip_p=0.5)


def augmented_linear_probe(backbone: nn.Module, train_path, test_path=None, *, train_idx=None,
                           test_idx=None, views=None, scale: tuple[float, float] = AUG_SCALE,
                           lrs: Sequence[float] = LRS,
                           weight_decays: Sequence[float] = WEIGHT_DECAYS,
                           epochs: int = AUG_EPOCHS, batch_size: int = BATCH_SIZE,
                           val_fraction: float = VAL_FRACTION, seed: int = 0,
                           num_threads: int | None = None, cache_dir=None,
                           channels_last: bool = False) -> AugmentedProbeResult:
    """Frozen backbone over augmented views of train_path[train_idx] -> test top-1/top-5 (%) on
    test_path[test_idx] (test_path None: the train file, e.g. a per-class split of it).

    views: the evaluation view (preset name or [View]); None picks "eval" / "eval_cifar" by
    image size. Its random twin (`augment_view`) is what the heads train on.
    """
    from jessl.data.loader import Loader, output_for
    from jessl.data.reader import Reader
    from jessl.data.views import resolve_views
    from jessl.data.facts import eval_views
    from jessl.eval.features import device_of, extract_features

    test_path = train_path if test_path is None else test_path
    plain = resolve_views(eval_views(train_path) if views is None else views)[:1]
    train_view = augment_view(plain[0], scale)
    with Reader(train_path) as reader:
        labels = np.asarray(reader.labels, np.int64)
    idx = np.arange(len(labels), dtype=np.int64) if train_idx is None else \
        np.asarray(train_idx, np.int64)
    fit_pos, val_pos = stratified_split(labels[idx], fraction=val_fraction, seed=seed)
    if len(val_pos) == 0:
        raise ValueError(f"val_fraction={val_fraction} leaves no validation records")
    fit_idx, val_idx = idx[fit_pos], idx[val_pos]
    num_classes = int(labels[idx].max()) + 1  # from the training labels only

    if channels_last:  # NHWC weights to match the loader's NHWC batches
        backbone = backbone.to(memory_format=torch.channels_last)

    def plain_features(path, rows):
        return extract_features(backbone, path, plain, batch_size, num_threads, indices=rows,
                                cache_dir=cache_dir, channels_last=channels_last)

    fit_f, _ = plain_features(train_path, fit_idx)
    mean, std = standardizer(fit_f)
    grid = [(lr, wd) for lr in lrs for wd in weight_decays]
    heads = LinearHeads(fit_f.shape[1], num_classes, [g[0] for g in grid], [g[1] for g in grid])
    device = device_of(backbone)  # the heads stay on the CPU, beside the features
    loader = Loader(train_path, batch_size, [train_view], order="random", seed=seed,
                    drop_last=False, num_threads=num_threads, indices=fit_idx,
                    channels_last=channels_last, output=output_for(device, [train_view]))
    schedule = cosine_schedule(1.0, epochs * len(loader)).float()
    was_training = backbone.training
    backbone.eval()
    step = 0
    try:
        with torch.no_grad():
            for epoch in range(epochs):  # the loader draws new crops and flips every epoch
                for batch in loader.iter_epoch(epoch):
                    x = loader.on_device(batch.views, device)[0]
                    feats = (backbone(x).float().cpu() - mean) / std  # (B, F)
                    heads.step(feats, batch.labels, float(schedule[step]))
                    step += 1
    finally:
        backbone.train(was_training)

    val_f, val_y = plain_features(train_path, val_idx)
    val_logits = _logits(heads, (val_f - mean) / std, len(grid), num_classes)  # (V, H, C)
    finite = (torch.isfinite(heads.w).all(dim=0) & torch.isfinite(heads.b)) \
        .view(len(grid), num_classes).all(dim=1)  # (H,): a diverged head scores 0
    scores = tuple({"lr": lr, "weight_decay": wd,
                    "val_top1": topk_accuracy(val_logits[:, i], val_y, 1) if finite[i] else 0.0}
                   for i, (lr, wd) in enumerate(grid))
    best = max(range(len(grid)), key=lambda i: (scores[i]["val_top1"], -i))
    # the test records enter here, after the choice, and only to be scored
    test_f, test_y = plain_features(test_path, test_idx)
    logits = _logits(heads, (test_f - mean) / std, len(grid), num_classes)[:, best]  # (M, C)
    return AugmentedProbeResult(
        top1=topk_accuracy(logits, test_y, 1),
        top5=topk_accuracy(logits, test_y, 5) if num_classes >= 5 else None,
        lr=grid[best][0], weight_decay=grid[best][1], val_scores=scores, epochs=epochs,
        batch_size=batch_size, seed=seed,
        view=f"RandomResizedCrop({train_view.hw[0]}, scale={tuple(scale)}) + flip")


def _logits(heads: LinearHeads, x: torch.Tensor, n_heads: int, num_classes: int) -> torch.Tensor:
    """Standardised x (M, D) -> logits (M, H, C) of every head."""
    return (x @ heads.w + heads.b).view(len(x), n_heads, num_classes)
