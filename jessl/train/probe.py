"""The online linear probe: a classifier trained beside the SSL method on detached features.

It watches training without steering it: its inputs are detached (the gradient is cut, so the
backbone never sees a label), it has its own optimizer, and its accuracy on the validation file
after every epoch tracks the representation much as an offline linear probe would (solo-learn,
lightly). Each head is BatchNorm1d without affine then Linear: the normalisation makes one
learning rate fit features of any scale (MAE's linear probe, He et al. 2022 appendix A.2).

With `projector_layers`, one more head probes the output of every projector block, the
"guillotine" comparison of Bordes et al. 2023: features before the projector usually win.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IGNORE = -1  # label of unlabeled records: left out of the loss and the accuracy


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
    def predict(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Class predictions (N,) of every head, in eval mode (BN running statistics)."""
        was = self.training
        self.eval()
        try:
            return {name: head(inputs[name].float()).argmax(1)
                    for name, head in self.heads.items()}
        finally:
            self.train(was)

    def accuracy(self, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> dict[str, float]:
        """Top-1 % of every head on labelled rows: {"probe/backbone_val_top1": ...}."""
        labels = torch.as_tensor(labels)
        keep = labels != IGNORE
        preds = self.predict(inputs)
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
