"""SSL methods, one file each, registered by their CLI name; see base.py for the contract."""

from __future__ import annotations

from typing import Callable

from torch import nn

from .barlowtwins import BarlowTwins
from .base import Method, StepOutput
from .byol import BYOL
from .dino import DINO
from .instance_simclr import InstanceSimCLR
from .moco import MoCo
from .nnclr import NNCLR
from .simclr import SimCLR
from .simsiam import SimSiam
from .swav import SwAV
from .vicreg import VICReg

METHODS: dict[str, type[Method]] = {
    cls.name: cls
    for cls in (SimCLR, VICReg, BarlowTwins, BYOL, SimSiam, MoCo, DINO, NNCLR, InstanceSimCLR,
                SwAV)
}


def build_method(name: str, backbone: nn.Module, projector: str | None = None, opts=None,
                 gather: Callable | None = None) -> Method:
    """METHODS[name] around `backbone`: projector spec ("" / None: the method's default),
    opts (its options dataclass, a dict of its fields, or None for the defaults), gather (None
    in one process; `jessl.distributed.gather_with_grad` under DDP)."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known: {sorted(METHODS)}")
    return METHODS[name](backbone, projector, opts, gather)


__all__ = ["METHODS", "Method", "StepOutput", "build_method", "BarlowTwins", "BYOL", "DINO",
           "InstanceSimCLR", "MoCo", "NNCLR", "SimCLR", "SimSiam", "SwAV", "VICReg"]
