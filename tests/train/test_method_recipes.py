"""Each method's recipe (its paper's optimizer settings) fills the config keys the user left
unset; explicit values win in any order; the saved config and `--help` say where each came from."""

from pathlib import Path

import numpy as np
import pytest

from jessl.config import SECTIONS, USER, RunConfig, load_config
from jessl.methods import METHODS
from jessl.train.command import main as train_main
from jessl.train.trainer import build_schedules

RECIPE = Path(__file__).parents[2] / "docs" / "recipes" / "cifar10_simclr_v1.yaml"
# docs/recipes/cifar10_simclr_v1.yaml (then named cifar10_simclr.yaml) resolved by the code
# before recipes existed (commit 5410d2f)
CIFAR10_SIMCLR_BEFORE = {
    "data": {"train": "cifar10_train.jessl", "val": "cifar10_test.jessl", "views": "",
             "batch_size": 256, "threads": 1, "order": "random", "prefetch": 2},
    "model": {"backbone": "small_cnn", "cifar_stem": None, "projector": ""},
    "method": {"name": "simclr", "temperature": 0.2},
    "optim": {"optimizer": "lars", "lr": 1.2, "scaling": "sqrt", "final_lr": 0.0,
              "weight_decay": 1e-05, "momentum": 0.9, "schedule": "warmup_cosine",
              "warmup_epochs": 1.0, "clip_grad": 0.0},
    "train": {"epochs": 10, "stop_after": 0, "seed": 0, "device": "auto", "precision": "fp32",
              "channels_last": True, "compile": False, "sync_bn": False, "threads": 0,
              "jit": True, "out": "runs/cifar10_simclr_v1", "checkpoint_every": 1,
              "keep_checkpoints": 2, "resume": "", "log_every": 10, "progress": True},
    "progressive": {"min_size": 16, "step": 8, "warmup_epochs": -1.0, "min_magnitude": 1.0},
    "probe": {"enabled": True, "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0,
              "projector_layers": False},
    "eval": {"knn": True, "k": 200, "temperature": 0.07, "baseline": True, "batch_size": 256,
             "rankme": True, "rankme_samples": 25600, "cache": True},
}
# keys added since, at the values that leave a run as it was
NEUTRAL = {("data", "local_views"): None, ("optim", "weight_decay_end"): None}

RECIPES = [(name, None) for name in METHODS] + [("moco", "v3")]


@pytest.mark.parametrize("name,version", RECIPES, ids=[n + (f"-{v}" if v else "")
                                                       for n, v in RECIPES])
def test_every_recipe_entry_is_a_config_key_with_a_source(name, version):
    cls = METHODS[name]
    opts = cls.options(version=version) if version else cls.options()
    recipe = cls.recipe_for(opts)
    for key, (value, source) in recipe.items():
        section, field = key.split(".")
        assert section in SECTIONS and section != "method", key
        assert hasattr(SECTIONS[section](), field), key
        assert isinstance(source, str) and len(source) > 8, f"{name} {key}: no source"
    cfg = load_config(None, ["--method.name", name] + (["--method.version", version]
                                                       if version else []))
    for key, (value, source) in recipe.items():
        assert cfg.get(key) == value, key
        assert cfg.sources[key] == f"{name} recipe: {source}"


def test_a_bare_method_trains_with_its_papers_settings():
    dino = load_config(None, ["--method.name", "dino"])
    o = dino.optim
    assert (o.optimizer, o.lr, o.weight_decay, o.weight_decay_end, o.clip_grad) == \
        ("adamw", 0.0005, 0.04, 0.4, 3.0)
    simsiam = load_config(None, ["--method.name", "simsiam"]).optim
    assert (simsiam.optimizer, simsiam.lr, simsiam.weight_decay) == ("sgd", 0.05, 1e-4)
    moco = load_config(None, ["--method.name", "moco"])
    assert moco.optim.optimizer == "sgd"
    moco.set("method.version", "v3")  # the recipe follows the version
    assert moco.optim.optimizer == "lars" and moco.optim.lr == 0.6


def test_explicit_values_win_whatever_the_order(tmp_path):
    for args in (["--optim.lr", "0.1", "--method.name", "dino"],
                 ["--method.name", "dino", "--optim.lr", "0.1"]):
        cfg = load_config(None, args)
        assert cfg.optim.lr == 0.1 and cfg.sources["optim.lr"] == USER
        assert cfg.optim.optimizer == "adamw"  # the rest still the recipe's
    path = tmp_path / "x.yaml"
    path.write_text("method:\n  name: byol\noptim:\n  optimizer: sgd\n")
    cfg = load_config(path, ["--method.name", "dino"])  # the file's optimizer stays
    assert cfg.optim.optimizer == "sgd" and cfg.optim.weight_decay_end == 0.4
    cfg = RunConfig()
    cfg.set("method.name", "dino")
    cfg.set("method.name", "simclr")  # DINO's values go; SimCLR's are RunConfig's defaults
    assert cfg.optim == RunConfig().optim == SECTIONS["optim"]()


def test_saved_config_names_each_recipe_value_and_reloads_the_same(tmp_path):
    cfg = load_config(None, ["--method.name", "byol", "--optim.lr", "0.5"])
    text = cfg.to_yaml(tmp_path / "config.yaml")
    assert "  weight_decay: 1.5e-06  # byol recipe: BYOL section 3.3" in text
    assert "  lr: 0.5\n" in text  # the user's: no comment
    back = RunConfig.from_yaml(tmp_path / "config.yaml")
    assert back.to_dict() == cfg.to_dict()
    assert all(origin == USER for key, origin in back.sources.items())


def test_cifar10_simclr_recipe_resolves_as_before():
    got = load_config(RECIPE).to_dict()
    for section, values in CIFAR10_SIMCLR_BEFORE.items():
        for key, value in values.items():
            assert got[section][key] == value, f"{section}.{key}"
    for (section, key), value in NEUTRAL.items():
        assert got[section][key] == value


def test_dino_weight_decay_follows_a_cosine_to_its_end():
    cfg = load_config(None, ["--method.name", "dino", "--train.epochs", "4"])
    wd = build_schedules(cfg, steps_per_epoch=5)["weight_decay"]
    assert wd.shape == (20,) and wd[0] == pytest.approx(0.04) and wd[-1] == pytest.approx(0.4)
    assert (np.diff(wd) > 0).all()
    flat = build_schedules(load_config(None, ["--train.epochs", "4"]), 5)["weight_decay"]
    assert (flat == 1e-6).all()


def test_help_prints_the_recipe_with_sources(capsys):
    assert train_main(["--method", "dino", "--help"]) == 0
    text = capsys.readouterr().out
    assert "dino recipe" in text
    assert "--optim.optimizer 'adamw'  DINO section 4.1" in text
    assert "--optim.weight_decay_end 0.4  cosine from 0.04 to 0.4" in text


@pytest.mark.parametrize("name", sorted(METHODS))
def test_help_of_every_method_sources_every_default(name):
    """`jessl train --method NAME --help`: each option with the comment that sources it, and
    each recipe value with its source."""
    from dataclasses import fields

    from jessl.flags import field_docs
    from jessl.train.command import method_help
    cls = METHODS[name]
    text = method_help(name)
    docs = field_docs(cls.options)
    for f in fields(cls.options):
        assert docs.get(f.name), f"{name}: option {f.name} has no source comment"
        assert f"--method.{f.name} " in text
    for key, (value, source) in cls.recipe_for(cls.options()).items():
        assert f"--{key} {value!r}  {source}" in text


@pytest.mark.parametrize("recipe, run", [("cifar10_simclr.yaml", "cifar10_simclr_r24e12"),
                                         ("cifar10_simclr_v1.yaml", "cifar10_simclr_v1")])
def test_recipe_files_are_the_runs_their_docs_report(recipe, run):
    """docs/benchmarks.md reports each recipe's kNN and minutes from a run kept in
    runs/recipes: the recipe file must still resolve to that run's config (folder, the
    evaluation's random-init switch and the probe's recalibration aside: neither trains
    differently, and the kNN and minutes reported do not read them), or the figures describe
    another recipe."""
    import yaml

    from jessl.studies.sweep import same_run
    root = Path(__file__).parents[2]
    ran = yaml.safe_load((root / "runs" / "recipes" / run / "config.yaml").read_text())
    now = load_config(root / "docs" / "recipes" / recipe).to_dict()
    assert set(same_run(now, ran)) <= {"train.out", "eval.baseline", "probe.recalibrate"}
