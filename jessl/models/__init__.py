"""Backbones (features out, head removed) and the mlp heads that methods put on them."""

from .backbones import BACKBONES, SmallCNN, build_backbone
from .heads import Prototypes, mlp, parse_dims, predictor, projector

__all__ = ["BACKBONES", "SmallCNN", "build_backbone", "Prototypes", "mlp", "parse_dims",
           "predictor", "projector"]
