"""`data.view_set`: one field of a preset's views changed from the config (jessl.data.views)."""

import pytest

from jessl.config import ConfigError, load_config
from jessl.data.views import resolve_views, set_fields


def test_set_fields_changes_the_named_views_only():
    views = resolve_views("instance_cifar")  # [noise, noise, patch]
    out = set_fields(views, "2.scale=0.02:0.08; all.noise_std=0.2;1.size=16:24")
    assert out[2].scale == (0.02, 0.08) and views[2].scale == (0.05, 0.25)  # a new list
    assert [v.noise_std for v in out] == [0.2, 0.2, 0.2]
    assert out[1].hw == (16, 24) and out[0].hw == (32, 32)
    assert set_fields(views, "") == views
    assert set_fields(views, "0.resize=none;0.crop=center")[0].crop == "center"


@pytest.mark.parametrize("spec, message", [
    ("3.scale=0.1:0.2", "not one of 0..2"),
    ("2.bogus=1", "no view field 'bogus'"),
    ("2.scale=0.1", "scale takes 2 numbers a:b"),
    ("0.flip_p=0.1:0.2", "flip_p takes one number"),
    ("0.flip_p=2", "flip_p must be a probability"),
    ("0.crop=middle", "crop must be one of"),
    ("scale=1", "VIEW.FIELD=VALUE"),
    ("local.scale=0.1:0.2", None),  # instance_cifar has a view 2: local names it
])
def test_set_fields_names_what_cannot_apply(spec, message):
    if message is None:
        assert set_fields(resolve_views("instance_cifar"), spec)[2].scale == (0.1, 0.2)
        return
    with pytest.raises(ValueError, match=message):
        set_fields(resolve_views("instance_cifar"), spec)


def test_global_and_local_name_multi_crops_views_however_many():
    """`local` reaches every local crop that data.local_views made (an index names one only)."""
    cfg = load_config(None, ["method.name=simclr", "data.views=multicrop_cifar",
                             "data.local_views=3",
                             "data.view_set=global.scale=0.2:1;local.scale=0.05:0.2;3.hue=0"])
    views = cfg.view_list()
    assert [v.scale for v in views] == [(0.2, 1)] * 2 + [(0.05, 0.2)] * 3
    assert [v.size for v in views] == [32, 32, 16, 16, 16]
    assert [v.hue for v in views] == [0.1, 0.1, 0.1, 0, 0.1]
    with pytest.raises(ValueError, match="'local' .*2 views"):
        set_fields(resolve_views("simclr_cifar"), "local.scale=0.1:0.2")


def test_the_config_applies_view_set_after_the_preset(tmp_path):
    cfg = load_config(None, ["method.name=instance_simclr", "data.views=instance_cifar",
                             "data.view_set=2.scale=0.02:0.08"])
    assert cfg.view_list()[2].scale == (0.02, 0.08)
    cfg = load_config(None, ["method.name=instance_simclr", "data.views=instance_cifar",
                             "data.view_set=5.scale=0.02:0.08"])
    with pytest.raises(ConfigError, match=r"^data.view_set: '5.scale"):
        cfg.checked_views()
