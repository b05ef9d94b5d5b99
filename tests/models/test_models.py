"""Backbones (feature dims, the CIFAR stem, channels-last, timm stays optional) and mlp heads."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

from jessl.models import BACKBONES, Prototypes, build_backbone, mlp, parse_dims, predictor


def _layer4_size(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Features and the spatial size of the last stage's map."""
    sizes = []
    model.layer4.register_forward_hook(lambda m, i, o: sizes.append(o.shape[-1]))
    with torch.no_grad():
        return model(x), sizes[0]


@pytest.mark.parametrize("name,dim", [("resnet18", 512), ("resnet50", 2048)])
@pytest.mark.parametrize("cifar_stem", [False, True])
def test_resnet_feature_dims_and_stem(name, dim, cifar_stem):
    torch.manual_seed(0)
    model = build_backbone(name, cifar_stem=cifar_stem).eval()
    feats, size = _layer4_size(model, torch.randn(1, 3, 32, 32))
    assert model.feature_dim == dim and feats.shape == (1, dim)
    # 32 px: the CIFAR stem (3x3/1 conv, no max-pool) keeps a 4x4 final map, ImageNet's stem 1x1
    assert size == (4 if cifar_stem else 1)
    assert model.conv1.kernel_size == ((3, 3) if cifar_stem else (7, 7))


@pytest.mark.parametrize("name", ["small_cnn", "small_cnn_fast"])
def test_small_cnn_is_small_and_channels_last_safe(name):
    torch.manual_seed(0)
    model = build_backbone(name, cifar_stem=True).eval()
    assert model.feature_dim == 256
    assert 300_000 <= sum(p.numel() for p in model.parameters()) <= 1_000_000
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = model(x)
        model = model.to(memory_format=torch.channels_last)
        out_cl = model(x.to(memory_format=torch.channels_last))
    assert out.shape == (2, 256)
    torch.testing.assert_close(out_cl, out, rtol=1e-4, atol=1e-5)


def _convs_at(model: nn.Module, px: int) -> dict[int, int]:
    """How many convolutions run on each map size for a px x px input."""
    sizes: dict[int, int] = {}
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(
                lambda m, i, o: sizes.__setitem__(o.shape[-1], sizes.get(o.shape[-1], 0) + 1))
    with torch.no_grad():
        model(torch.randn(1, 3, px, px))
    return sizes


def test_small_cnn_fast_drops_only_the_full_resolution_residual():
    # small_cnn: stem + residual at 32 px, widen + residual at 16 and 8, widen at 4;
    # small_cnn_fast: the same without the 32 px residual (a third of the step's time)
    assert _convs_at(build_backbone("small_cnn", cifar_stem=True), 32) == {32: 2, 16: 2, 8: 2, 4: 1}
    assert _convs_at(build_backbone("small_cnn_fast", cifar_stem=True), 32) == {
        32: 1, 16: 2, 8: 2, 4: 1}


def test_small_cnn_residual_must_name_every_stage():
    from jessl.models.backbones import SmallCNN
    with pytest.raises(ValueError, match="residual names 3 stages, widths 4"):
        SmallCNN(residual=(True, True, False))
    # by default every stage but the last has one, whatever the number of stages
    assert _convs_at(SmallCNN(widths=(4, 8)), 32) == {32: 2, 16: 1}


def test_small_cnn_stem_downsamples_without_cifar_stem():
    model = build_backbone("small_cnn", cifar_stem=False).eval()
    stem = []
    model.features[0].register_forward_hook(lambda m, i, o: stem.append(o.shape[-1]))
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 256)
    assert stem == [16]  # 64 px / 4, like ResNet's stem


def test_registry_and_unknown_names():
    assert {"resnet18", "resnet34", "resnet50", "small_cnn", "small_cnn_fast"} <= set(BACKBONES)
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone("resnet19")


@pytest.mark.skipif(importlib.util.find_spec("timm") is not None, reason="timm is installed")
def test_timm_is_optional_with_a_clear_error():
    with pytest.raises(ImportError, match="pip install timm"):
        build_backbone("timm:resnet18")


@pytest.mark.skipif(importlib.util.find_spec("timm") is None, reason="timm is not installed")
def test_timm_backbone_has_no_head():
    model = build_backbone("timm:resnet18").eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, model.feature_dim)


@pytest.mark.parametrize("spec,dims", [("2048-2048-256", [2048, 2048, 256]), ("128", [128]),
                                       (" 64-32 ", [64, 32])])
def test_parse_dims(spec, dims):
    assert parse_dims(spec) == dims


@pytest.mark.parametrize("spec", ["2048--256", "abc", "0", "", "64-", "-64", "64-0", "1.5",
                                  "64,32"])
def test_parse_dims_rejects_bad_specs(spec):
    with pytest.raises(ValueError, match="spec"):
        parse_dims(spec)


def test_mlp_layout():
    head = mlp([16, 8, 4])  # Linear-BN-ReLU-Linear
    assert [type(m) for m in head] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert head[0].bias is None  # BN follows: the bias would be dead
    assert head[3].bias is not None and head[3].out_features == 4
    assert mlp([16, 8, 4], last_bias=False)[3].bias is None
    last_bn = mlp([16, 8, 4], last_norm="bn_noaffine", last_bias=True)
    assert isinstance(last_bn[-1], nn.BatchNorm1d) and not last_bn[-1].affine
    assert last_bn[3].bias is None
    assert mlp([16, 8, 4], last_norm="bn")[-1].affine
    plain = mlp([16, 8, 4], norm=None, act="gelu")
    assert [type(m) for m in plain] == [nn.Linear, nn.GELU, nn.Linear] and plain[0].bias is not None
    assert head(torch.randn(5, 16)).shape == (5, 4)
    with pytest.raises(ValueError, match="norm"):
        mlp([16, 4], norm="ln")


def test_predictor_maps_back_to_its_input_width():
    pred = predictor(32, "64")
    assert [m.out_features for m in pred if isinstance(m, nn.Linear)] == [64, 32]
    assert pred(torch.randn(3, 32)).shape == (3, 32)


def test_prototypes_have_unit_norm():
    torch.manual_seed(0)
    proto = Prototypes(8, 5)
    with torch.no_grad():
        proto.weight.mul_(torch.arange(1.0, 6.0)[:, None])  # rows of different norms
    x = torch.randn(3, 8)
    expected = x @ (proto.weight / proto.weight.norm(dim=1, keepdim=True)).T
    torch.testing.assert_close(proto(x), expected)
