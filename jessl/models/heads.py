"""Projector and predictor heads: one `mlp(dims, ...)` builds all of them.

A head spec is a dash-separated string of layer widths after the backbone ("2048-2048-128": three
Linear layers ending in 128 dimensions), the FFCV-SSL / VICReg `--mlp` convention; the input width
is the backbone's `feature_dim`, prepended by the method.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NORMS = (None, "bn", "bn_noaffine")
ACTS = {"relu": nn.ReLU, "gelu": nn.GELU}


def parse_dims(spec: str) -> list[int]:
    """"2048-2048-256" -> [2048, 2048, 256]; ValueError on empty parts, non-integers, widths < 1."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"head spec must be a non-empty string like '2048-2048-256', got {spec!r}")
    dims = []
    for part in spec.strip().split("-"):
        part = part.strip()
        if not (part.isascii() and part.isdigit()) or int(part) < 1:
            raise ValueError(f"bad head spec {spec!r}: every dash-separated width must be a "
                             f"positive integer, like '2048-2048-256' (got {part!r})")
        dims.append(int(part))
    return dims


def _norm(kind: str | None, dim: int) -> nn.Module | None:
    if kind == "bn":
        return nn.BatchNorm1d(dim)
    if kind == "bn_noaffine":
        return nn.BatchNorm1d(dim, affine=False)
    return None


def mlp(dims: list[int], norm: str | None = "bn", last_norm: str | bool | None = False,
        last_bias: bool = True, act: str = "relu") -> nn.Sequential:
    """MLP (B, dims[0]) -> (B, dims[-1]): Linear-Norm-Act between layers, a bare Linear last
    (VICReg / FFCV-SSL projector), optionally followed by `last_norm` ("bn", "bn_noaffine": SimSiam
    and MoCo v3 end on BatchNorm1d(affine=False)). A Linear followed by BatchNorm has no bias: BN
    subtracts the batch mean, so the bias would be a dead parameter. `act`: "relu" or "gelu"
    (DINO's head)."""
    dims = [int(d) for d in dims]
    if len(dims) < 2 or min(dims) < 1:
        raise ValueError(f"mlp needs at least an input and an output width >= 1, got {dims}")
    if act not in ACTS:
        raise ValueError(f"act must be one of {sorted(ACTS)}, got {act!r}")
    norm, last_norm = norm or None, last_norm or None
    for kind in (norm, last_norm):
        if kind not in NORMS:
            raise ValueError(f"norm and last_norm must be one of {NORMS}, got {kind!r}")
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        last = i == len(dims) - 2
        n = _norm(last_norm if last else norm, d_out)
        layers.append(nn.Linear(d_in, d_out, bias=(last_bias if last else True) and n is None))
        if n is not None:
            layers.append(n)
        if not last:
            layers.append(ACTS[act]())
    return nn.Sequential(*layers)


def projector(in_dim: int, spec: str, **kwargs) -> nn.Sequential:
    """The projector of a method: mlp([in_dim] + parse_dims(spec), **kwargs)."""
    return mlp([in_dim] + parse_dims(spec), **kwargs)


def predictor(dim: int, hidden: str, **kwargs) -> nn.Sequential:
    """BYOL / SimSiam / MoCo v3 / NNCLR predictor: dim -> hidden widths -> dim (the output must
    match the projector's, which it regresses onto). hidden: a spec such as "4096"."""
    return mlp([dim] + parse_dims(hidden) + [dim], **kwargs)


class Prototypes(nn.Module):
    """DINO's last layer: (B, D) -> (B, K) with every prototype row of unit norm, i.e. weight_norm
    with the gain fixed to 1 (DINO's default norm_last_layer=True), written out so it deep-copies
    and channels-last/compiles without parametrizations."""

    def __init__(self, dim: int, k: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(k, dim))  # (K, D) direction of each prototype
        nn.init.trunc_normal_(self.weight, std=0.02)  # DINO's DINOHead._init_weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, F.normalize(self.weight, dim=1))  # (B, K)
