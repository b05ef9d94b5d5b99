"""Super Progressive Learning: the per-epoch size and magnitude schedule, and the trainer
handing it to the loader."""

from dataclasses import fields, replace

import pytest
import torch

from jessl.config import ConfigError, load_config
from jessl.data.loader import Loader
from jessl.data.views import View, resolve_views
from jessl.methods import build_method
from jessl.models import build_backbone
from jessl.schedules import warmup_cosine
from jessl.train.flops import step_flops_on
from jessl.train.progressive import progressive_schedule, relative_cost, stage_sizes
from jessl.train.inputs import check_inputs
from jessl.train.trainer import train

from .conftest import tiny_overrides


def test_stage_sizes_follow_the_papers_steps():
    assert stage_sizes(96, 224) == [96, 128, 160, 192, 224]  # 32 px steps at ImageNet size
    assert stage_sizes(16, 32) == [16, 20, 24, 28, 32]  # 4 px below 128 px
    assert stage_sizes(20, 30, step=4) == [20, 24, 28, 30]  # full size always last
    with pytest.raises(ValueError, match="min_size"):
        stage_sizes(40, 32)


def test_schedule_has_the_papers_shape():
    """Full size through the warm-up, then the inverse of the learning rate's cosine decay
    (read off the trainer's own lr array), rounded to the stages; magnitude follows size."""
    epochs, warm, per_epoch = 13, 2, 100
    sizes, mags = progressive_schedule(epochs, 32, 16, warmup_epochs=warm, min_magnitude=0.5)
    assert sizes[:warm] == [32, 32] and mags[:warm] == [0.5, 0.5]
    lr = warmup_cosine(1.0, 0.0, epochs * per_epoch, warm * per_epoch)
    stages = stage_sizes(16, 32)
    for e in range(warm, epochs - 1):
        target = 16 + 16 * (1 - lr[e * per_epoch + per_epoch // 2])  # 1 - lr/lr_max
        assert sizes[e] == min(stages, key=lambda s: abs(s - target)), e
    assert sizes[-1] == 32 and mags[-1] == 1.0
    assert sizes[warm] == 16 and all(a <= b for a, b in zip(sizes[warm:], sizes[warm + 1:]))
    # longer at the ends than in the middle, as a cosine is: not equal stages
    counts = [sizes[warm:].count(s) for s in stages]
    assert counts[0] > counts[2] and counts[-1] > counts[2]
    assert {s: m for s, m in zip(sizes, mags) if s < 32} == {
        s: 0.5 + 0.5 * (s - 16) / 16 for s in sizes if s < 32}


def test_relative_cost_reports_eq9_pixels_and_flops():
    sizes = [32, 16, 16, 24, 32]
    cost = relative_cost(sizes, 32)
    assert cost["eq9_speedup"] == pytest.approx((1 + 4 + 4 + (32 / 24) ** 2 + 1) / 5)  # eq. 9
    assert cost["pixel_cost"] == pytest.approx((1 + 0.25 + 0.25 + 0.5625 + 1) / 5)
    assert cost["eq9_speedup"] > 1 / cost["pixel_cost"]  # a mean of ratios overstates it
    assert "flop_cost" not in cost
    # measured: a head that costs the same at every size puts the FLOP ratio above the pixels'
    torch.manual_seed(0)
    method = build_method("simclr", build_backbone("small_cnn", True), "64-32")

    def flops(size):
        step = step_flops_on(method, [torch.randn(4, 3, size, size) for _ in range(2)])
        return step["forward"] + step["backward"]

    measured = relative_cost(sizes, 32, flops)["flop_cost"]
    assert cost["pixel_cost"] < measured < cost["pixel_cost"] * 1.1


def test_magnitude_scales_colour_jitter_strength_only():
    view = resolve_views("simclr_cifar")[0]
    view = replace(view, blur_p=0.5, solarize_p=0.2, noise_p=0.3)
    half = view.scaled(0.5)
    changed = {f.name for f in fields(View) if getattr(half, f.name) != getattr(view, f.name)}
    assert changed == {"brightness", "contrast", "saturation", "hue"}
    assert half.brightness == view.brightness / 2 and half.hue == view.hue / 2
    broad = view.scaled(0.5, scales="photometric")  # the earlier variant, on request only
    assert broad.grey_p == view.grey_p / 2 and broad.jitter_p == view.jitter_p / 2
    with pytest.raises(ValueError, match="scales"):
        view.scaled(0.5, scales="geometry")


def test_schedule_edge_cases():
    assert progressive_schedule(5, 32, 32, 1) == ([32] * 5, [1.0] * 5)  # off in effect
    sizes, mags = progressive_schedule(2, 224, 96, warmup_epochs=10)  # warm-up capped
    assert sizes[-1] == 224 and mags[-1] == 1.0
    sizes, _ = progressive_schedule(3, 224, 96, warmup_epochs=0.5)  # partial warm-up epoch
    assert sizes[0] == 224 and sizes[-1] == 224 and len(sizes) == 3
    with pytest.raises(ValueError, match="min_magnitude"):
        progressive_schedule(3, 32, 16, min_magnitude=1.5)


def test_set_size_scales_every_view_from_the_built_sizes(tiny_files):
    loader = Loader(tiny_files[0], 8, "multicrop", seed=0)
    built = [v.size for v in loader.views]
    for size in (160, 97, 131, 224):  # rounding must not drift over repeated calls
        loader.set_size(size)
    assert [v.size for v in loader.views] == built
    loader.set_size(112)
    assert [v.size for v in loader.views][:2] == [112, 112]
    assert [v.size for v in loader.views][2:] == [48] * 6  # 96 x 112/224


def test_trainer_feeds_the_schedule_to_the_loader(tiny_files, tmp_path, monkeypatch):
    from jessl.methods import SimCLR
    seen = []
    forward = SimCLR.forward

    def spy(self, views):
        seen.append(views[0].shape[-1])
        return forward(self, views)

    monkeypatch.setattr(SimCLR, "forward", spy)
    train_file, val_file = tiny_files
    metrics = train(load_config(None, tiny_overrides(train_file, val_file, tmp_path / "p", {
        "train.epochs": 3, "progressive.min_size": 16, "progressive.step": 16,
        "progressive.min_magnitude": 0.5, "eval.knn": False})))
    steps = len(seen) // 3
    assert seen == [32] * steps + [16] * steps + [32] * steps
    assert metrics["view_size"] == 32 and metrics["magnitude"] == 1.0


def test_bad_progressive_settings_fail_early(tiny_files, tmp_path):
    train_file, val_file = tiny_files
    for key, value, match in (("progressive.min_size", 64, "larger than the views"),
                              ("progressive.min_magnitude", 2.0, "min_magnitude")):
        cfg = load_config(None, tiny_overrides(train_file, val_file, tmp_path / "b",
                                               {key: value}))
        with pytest.raises(ConfigError, match=match):
            check_inputs(cfg.validate())
