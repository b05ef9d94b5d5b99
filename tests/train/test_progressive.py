"""Super Progressive Learning: the per-epoch size and magnitude schedule, and the trainer
handing it to the loader."""

import pytest

from jessl.config import ConfigError, load_config
from jessl.data.loader import Loader
from jessl.train.progressive import progressive_schedule, relative_cost, stage_sizes
from jessl.train.trainer import train

from .conftest import tiny_overrides


def test_stage_sizes_follow_the_papers_steps():
    assert stage_sizes(96, 224) == [96, 128, 160, 192, 224]  # 32 px steps at ImageNet size
    assert stage_sizes(16, 32) == [16, 20, 24, 28, 32]  # 4 px below 128 px
    assert stage_sizes(20, 30, step=4) == [20, 24, 28, 30]  # full size always last
    with pytest.raises(ValueError, match="min_size"):
        stage_sizes(40, 32)


def test_schedule_warms_up_at_full_size_then_climbs_in_stages():
    sizes, mags = progressive_schedule(13, 32, 16, warmup_epochs=1, min_magnitude=0.5)
    assert sizes == [32, 16, 16, 20, 20, 24, 24, 24, 28, 28, 32, 32, 32]
    assert all(a <= b for a, b in zip(sizes[1:], sizes[2:]))  # never shrinks after warm-up
    assert mags[0] == 0.5 and mags[1] == 0.5 and mags[-1] == 1.0
    assert all(a <= b for a, b in zip(mags, mags[1:]))
    # each size's magnitude: linear in the stage number, 0.5 -> 1 over 5 stages
    assert {s: m for s, m in zip(sizes[1:], mags[1:])} == {16: 0.5, 20: 0.625, 24: 0.75,
                                                           28: 0.875, 32: 1.0}
    # cost: pixels against full size all along (the inverse of the paper's eq. 9)
    assert relative_cost(sizes, 32) == pytest.approx(
        sum((s / 32) ** 2 for s in sizes) / 13)


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
            cfg.validate()
