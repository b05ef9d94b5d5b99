"""Backbones under the timm contract: images (B, 3, H, W) -> features (B, feature_dim), no head.

`build_backbone(name)` takes a name from `BACKBONES` or `timm:<model name>` (timm is optional).
Everything reshapes with `flatten`, never `.view`, so channels-last inputs and weights work.
"""

from __future__ import annotations

from typing import Callable

import torch
import torchvision
from torch import nn


def _resnet(arch: str) -> Callable[[bool], nn.Module]:
    def build(cifar_stem: bool) -> nn.Module:
        model = getattr(torchvision.models, arch)(weights=None)
        if cifar_stem:
            # 32 px images: a 3x3 stride-1 first conv and no max-pool keep the 4x4 final map that
            # the 7x7/2 + pool stem would shrink to 1x1 (SimCLR appendix B.9, He et al. 2016 4.2)
            model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
            model.maxpool = nn.Identity()
        model.feature_dim = model.fc.in_features  # 512 (resnet18/34) or 2048 (resnet50)
        model.fc = nn.Identity()
        return model

    return build


def _conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class _Residual(nn.Module):
    """x + conv-BN-ReLU(x): one 3x3 conv of extra depth at the cost of no extra width."""

    def __init__(self, c: int):
        super().__init__()
        self.body = _conv_bn_relu(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SmallCNN(nn.Module):
    """A ResNet-ish 4-stage CNN for CPU runs (~0.58M parameters, ~43M multiply-adds per 32 px
    image, about 1/13 of a CIFAR-stem ResNet-18's 556M).

    Stages of widths (32, 64, 128, 256), each a conv-BN-ReLU that widens (after a 2x2 max-pool,
    from the second stage on) plus, in the first three stages, a residual conv-BN-ReLU; global
    average pooling gives (B, 256). Max-pool before the widening conv (rather than a strided conv
    after it, as in airbench's conv-pool order) keeps every conv on the smaller map. The stem is a
    3x3 stride-1 conv with `cifar_stem` (32-64 px images); without it a 3x3 stride-2 conv and a
    max-pool divide the resolution by 4 first, as ResNet's stem does, for ImageNet-sized inputs.
    `residual` says which stages get the residual conv (by default all but the last, whose
    residual would hold half the parameters).

    `small_cnn_fast` drops the first stage's residual: at 32 px it is the one conv on the full-
    resolution map, 9.4M of the 43M multiply-adds but about a third of a training step's time on
    the CPU (its activations are the largest: batch norm and ReLU there are memory-bound). On
    the CIFAR-10 proxy (docs/recipes/cifar10.md, 5 epochs, 10k images) it reaches the same kNN
    (47.99% against 48.12%) in 0.77x the time; spent on two more epochs of the CIFAR-10 recipe
    it gave 61.41% kNN against 61.25% (docs/benchmarks.md), so the recipe keeps `small_cnn`.
    """

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 256), cifar_stem: bool = True,
                 residual: tuple[bool, ...] | None = None):
        super().__init__()
        if residual is None:
            residual = (True,) * (len(widths) - 1) + (False,)
        if len(residual) != len(widths):
            raise ValueError(f"residual names {len(residual)} stages, widths {len(widths)}")
        stem = [_conv_bn_relu(3, widths[0], stride=1 if cifar_stem else 2)]
        if not cifar_stem:
            stem.append(nn.MaxPool2d(2))
        layers: list[nn.Module] = [nn.Sequential(*stem)]
        c_in = widths[0]
        for i, w in enumerate(widths):
            stage: list[nn.Module] = []
            if i > 0:
                stage += [nn.MaxPool2d(2), _conv_bn_relu(c_in, w)]
            if residual[i]:
                stage.append(_Residual(w))
            layers.append(nn.Sequential(*stage))
            c_in = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, feature_dim)
        return self.pool(self.features(x)).flatten(1)


BACKBONES: dict[str, Callable[[bool], nn.Module]] = {
    "resnet18": _resnet("resnet18"),
    "resnet34": _resnet("resnet34"),
    "resnet50": _resnet("resnet50"),
    "small_cnn": lambda cifar_stem: SmallCNN(cifar_stem=cifar_stem),
    "small_cnn_fast": lambda cifar_stem: SmallCNN(cifar_stem=cifar_stem,
                                                  residual=(False, True, True, False)),
}


def _timm(name: str, cifar_stem: bool) -> nn.Module:
    try:
        import timm
    except ImportError as e:
        raise ImportError(f"backbone 'timm:{name}' needs timm, which is optional: "
                          f"pip install timm") from e
    if cifar_stem:
        raise ValueError("cifar_stem applies to the torchvision ResNets and small_cnn; for a timm "
                         "model pick a variant made for small images instead")
    model = timm.create_model(name, pretrained=False, num_classes=0)  # num_classes=0: no head
    model.feature_dim = model.num_features
    return model


def build_backbone(name: str, cifar_stem: bool = False) -> nn.Module:
    """A backbone by name (`BACKBONES` or `timm:<name>`), randomly initialised, with `.feature_dim`
    set: forward (B, 3, H, W) -> (B, feature_dim)."""
    if name.startswith("timm:"):
        return _timm(name[len("timm:"):], cifar_stem)
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {sorted(BACKBONES)} or "
                         f"'timm:<model name>' with timm installed")
    return BACKBONES[name](cifar_stem)
