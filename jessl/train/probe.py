"""The online linear probe: a classifier trained beside the SSL method on detached features.

It watches training without steering it: its inputs are detached (the gradient is cut, so the
backbone never sees a label), it has its own optimizer, and its accuracy on the validation file
after every epoch tracks the representation much as an offline linear probe would (solo-learn,
lightly). Each head is BatchNorm1d without affine then Linear: the normalisation makes one
learning rate fit features of any scale (MAE's linear probe, He et al. 2022 appendix A.2).

With `projector_layers`, one more head probes the output of every projector block, the
"guillotine" comparison of Bordes et al. 2023: features before the projector usually win.

Recalibration (`probe.recalibrate`): the heads learn on the training views' features, but are
tested on whole images at the evaluation size. Where the views are smaller than the test
images (the CIFAR-10 recipe trains at 24 px, tests at 32), the features' statistics shift with
the resolution, and the BatchNorm's running statistics, taken from the views, misplace the test
features: the probe then reads several points low while kNN, which normalises nothing, does
not (FixRes, Touvron et al. 2019, fixes the same shift by re-fitting the normalisation at the
test resolution). `statistics` re-estimates it from training images seen as the test images
are (no labels, no test data); `accuracy(..., stats)` uses those, leaving the heads as they are.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

IGNORE = -1  # label of unlabeled records: left out of the loss and the accuracy
# second word of the recalibration sample's seed, so that its draw is a stream of its own
RECAL_STREAM = 0x9E37


class OnlineProbe(nn.Module):
    """Linear heads {name: BN(no affine) + Linear(dim, num_classes)} with their own SGD."""

    def __init__(self, dims: dict[str, int], num_classes: int, lr: float = 0.1,
                 momentum: float = 0.9, weight_decay: float = 0.0):
        super().__init__()
        self.heads = nn.ModuleDict({
            name: nn.Sequential(nn.BatchNorm1d(dim, affine=False), nn.Linear(dim, num_classes))
            for name, dim in dims.items()})
        self.num_classes = num_classes
        self.optimizer = torch.optim.SGD(self.parameters(), lr=lr, momentum=momentum,
                                         weight_decay=weight_decay)

    def step(self, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> dict[str, float]:
        """One SGD step of every head on (B, dim) inputs (detached here); train loss and top-1 %."""
        keep = labels != IGNORE
        if not bool(keep.any()):
            return {}
        self.train()
        logs, total = {}, 0.0
        for name, head in self.heads.items():
            x = inputs[name].detach().float()[keep]  # (B', dim): no gradient reaches the model
            logits = head(x)  # (B', C)
            loss = F.cross_entropy(logits, labels[keep])
            total = total + loss
            logs[f"probe/{name}_loss"] = loss.detach().item()
            logs[f"probe/{name}_top1"] = 100.0 * float((logits.argmax(1) == labels[keep])
                                                       .float().mean())
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        return logs

    @torch.no_grad()
    def predict(self, inputs: dict[str, torch.Tensor],
                stats: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
                ) -> dict[str, torch.Tensor]:
        """Class predictions (N,) of every head as in eval mode: BN running statistics, or the
        (mean, var) of `stats[name]` in their place (see `statistics`)."""
        out = {}
        for name, (norm, linear) in self.heads.items():
            # BatchNorm's own eval-mode op, with the running or the given statistics
            mean, var = stats[name] if stats is not None else (norm.running_mean, norm.running_var)
            x = F.batch_norm(inputs[name].float(), mean, var, norm.weight, norm.bias,
                             training=False, eps=norm.eps)
            out[name] = linear(x).argmax(1)
        return out

    @staticmethod
    @torch.no_grad()
    def statistics(inputs: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per head, the (mean, unbiased var) over the rows of `inputs`: what BatchNorm's running
        statistics estimate, taken from features of another resolution or view."""
        out = {}
        for name, x in inputs.items():
            x = x.float()
            if len(x) < 2:
                raise ValueError(f"probe statistics need >= 2 rows, got {len(x)} for {name}")
            out[name] = (x.mean(0), x.var(0, unbiased=True))
        return out

    def accuracy(self, inputs: dict[str, torch.Tensor], labels: torch.Tensor,
                 stats: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
                 ) -> dict[str, float]:
        """Top-1 % of every head on labelled rows: {"probe/backbone_val_top1": ...}; `stats`
        replaces the heads' BN running statistics (recalibration, above)."""
        labels = torch.as_tensor(labels)
        keep = labels != IGNORE
        preds = self.predict(inputs, stats)
        n = max(int(keep.sum()), 1)
        return {f"probe/{name}_val_top1": 100.0 * float((p[keep] == labels[keep]).sum()) / n
                for name, p in preds.items()}


def projector_blocks(projector: nn.Module | None) -> list[nn.Sequential]:
    """Split an mlp projector (Linear, [Norm], [Act], Linear, ...) into one block per Linear,
    so block i's output is the representation after projector layer i + 1."""
    if not isinstance(projector, nn.Sequential):
        return []
    blocks: list[list[nn.Module]] = []
    for module in projector:
        if isinstance(module, nn.Linear) or not blocks:
            blocks.append([])
        blocks[-1].append(module)
    return [nn.Sequential(*b) for b in blocks]


def probe_inputs(features: torch.Tensor, blocks: list[nn.Module]) -> dict[str, torch.Tensor]:
    """{"backbone": features, "proj1": ..., "projN": ...} from (B, F) detached features.

    The projector blocks run in eval mode under no_grad: batch-norm layers then use their
    running statistics and, above all, do not update them, so probing leaves the model as
    it was."""
    out = {"backbone": features.detach()}
    if not blocks:
        return out
    modes = [b.training for b in blocks]
    x = features.detach().float()
    try:
        with torch.no_grad():
            for i, block in enumerate(blocks):
                block.eval()
                x = block(x)
                out[f"proj{i + 1}"] = x
    finally:
        for block, mode in zip(blocks, modes):
            block.train(mode)
    return out


def probe_dims(feature_dim: int, blocks: list[nn.Module]) -> dict[str, int]:
    """Input width of every head, matching `probe_inputs`."""
    dims = {"backbone": feature_dim}
    for i, block in enumerate(blocks):
        linear = [m for m in block if isinstance(m, nn.Linear)][0]
        dims[f"proj{i + 1}"] = linear.out_features
    return dims


def recalibration_sample(indices: np.ndarray, count: int, seed: int) -> np.ndarray | None:
    """`count` of the training records (all, if fewer), drawn once from `seed` and sorted for a
    sequential read, whose features re-estimate the probe's statistics; None when count is 0."""
    if count <= 0:
        return None
    indices = np.asarray(indices)
    if count >= len(indices):
        return np.sort(indices)
    rng = np.random.default_rng([seed, RECAL_STREAM])  # the training draws stay untouched
    return np.sort(rng.choice(indices, size=count, replace=False))
