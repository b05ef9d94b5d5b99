"""RunConfig: typed overrides, YAML round trip, and validation that names what is wrong."""

import pytest

from jessl.config import ConfigError, RunConfig, load_config, parse_overrides
from jessl.train.command import main as train_main
from jessl.train.command import method_help
from jessl.train.inputs import check_inputs


def valid(train, val, *more):
    return load_config(None, ["--data.train", str(train), "--data.val", str(val),
                              "--data.batch_size", "16", "--model.backbone", "small_cnn",
                              *more])


def checked(cfg):
    """The checks `train(cfg)` starts with: the values, then the files they name."""
    check_inputs(cfg.validate())
    return cfg


def test_defaults_validate(tiny_files, tmp_path):
    train, val = tiny_files
    cfg = valid(train, val, "--train.out", str(tmp_path / "run"))
    assert cfg.validate() is cfg and checked(cfg) is cfg


@pytest.mark.parametrize("override, message", [
    (["--method.name", "simclrr"], "unknown method 'simclrr'; known: "),
    (["--optim.lr", "0"], "optim.lr must be > 0"),
    (["--optim.lr", "-0.5"], "optim.lr must be > 0"),
    (["--model.projector", "2048-x-128"], "model.projector: bad head spec"),
    (["--model.projector", "2048--128"], "model.projector: bad head spec"),
    (["--data.batch_size", "65"], "data.batch_size 65 is larger than the 64 images"),
    (["--data.train", "/nonexistent/train.jessl"], "data.train: dataset file "
                                                   "/nonexistent/train.jessl does not exist"),
    (["--data.val", "/nonexistent/val.jessl"], "data.val: dataset file"),
    (["--model.backbone", "resnet19"], "unknown backbone 'resnet19'; known: "),
    (["--optim.optimizer", "adam"], "unknown optimizer 'adam'; known: sgd, adamw, lars"),
    (["--train.precision", "fp16"], "unknown precision 'fp16'; known: fp32, bf16"),
    (["--train.device", "gpu"], "train.device: 'gpu' is not auto, cpu, cuda or cuda:N"),
    (["--optim.schedule", "step"], "unknown schedule 'step'"),
    (["--optim.scaling", "cubic"], "unknown rule 'cubic'"),
    (["--train.epochs", "0"], "train.epochs must be >= 1"),
    (["--probe.recalibrate", "1"], "probe.recalibrate must be 0 (off) or >= 2"),
    (["--probe.recalibrate", "-5"], "probe.recalibrate must be 0 (off) or >= 2"),
    (["--data.views", "simclr_tiny"], "unknown view preset 'simclr_tiny'"),
    (["--train.resume", "/nonexistent/ckpt.pt"], "checkpoint /nonexistent/ckpt.pt does not exist"),
])
def test_validation_names_the_problem(tiny_files, tmp_path, override, message):
    train, val = tiny_files
    with pytest.raises(ConfigError) as err:
        checked(valid(train, val, "--train.out", str(tmp_path / "run"), *override))
    assert message in str(err.value)
    if "unknown method" in message:
        assert "simclr" in str(err.value) and "byol" in str(err.value)  # lists the known ones


def test_validation_refuses_to_overwrite_a_run(tiny_files, tmp_path):
    train, val = tiny_files
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "epoch-0001.pt").write_bytes(b"x")
    with pytest.raises(ConfigError, match="already holds a run"):
        checked(valid(train, val, "--train.out", str(tmp_path / "run")))
    checked(valid(train, val, "--train.out", str(tmp_path / "run"), "--train.resume", "auto"))


def test_validate_reads_no_file_and_each_section_checks_itself(tmp_path, monkeypatch):
    """validate() passes a config whose files are all missing (a sweep's grid, a SLURM submit
    host); check_inputs then names the first; each section refuses its own bad values alone."""
    import builtins
    import os

    from jessl.config import DataConfig, EvalConfig, OptimConfig, SECTIONS, TrainConfig
    missing = str(tmp_path / "nowhere.jessl")
    cfg = load_config(None, ["--data.train", missing, "--data.val", missing,
                             "--train.out", str(tmp_path / "run"), "--train.resume",
                             str(tmp_path / "none.pt")])
    opened = []
    real_open, real_stat = builtins.open, os.stat
    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: opened.append(f) or
                        real_open(f, *a, **k))
    monkeypatch.setattr(os, "stat", lambda f, *a, **k: opened.append(f) or real_stat(f, *a, **k))
    cfg.validate()
    assert not [f for f in opened if str(tmp_path) in str(f)]
    with pytest.raises(ConfigError, match="checkpoint .*none.pt does not exist"):
        check_inputs(cfg)
    assert all(hasattr(cls, "validate") for cls in SECTIONS.values())
    for section, message in ((DataConfig(train="x", batch_size=0), "data.batch_size must be"),
                             (DataConfig(train="x", output="half"), "data.output: unknown"),
                             (OptimConfig(lr=0), "optim.lr must be > 0"),
                             (TrainConfig(log_every=0), "train.log_every must be >= 1"),
                             (EvalConfig(k=0), "eval.k, eval.temperature")):
        with pytest.raises(ConfigError, match=message):
            section.validate()


def test_overrides_are_typed_in_every_form():
    assert parse_overrides(["--optim.lr", "0.5", "--train.epochs=3", "data.order=sequential"]) \
        == [("optim.lr", "0.5"), ("train.epochs", "3"), ("data.order", "sequential")]
    cfg = load_config(None, ["--optim.lr", "1e-3", "--train.epochs=3", "model.cifar_stem=none",
                             "train.channels_last=true", "--model.projector", "512-128",
                             "--optim.warmup_epochs", "2"])
    assert cfg.optim.lr == 0.001 and isinstance(cfg.optim.lr, float)
    assert cfg.train.epochs == 3 and isinstance(cfg.train.epochs, int)
    assert cfg.model.cifar_stem is None and cfg.train.channels_last is True
    assert cfg.model.projector == "512-128" and cfg.optim.warmup_epochs == 2.0
    with pytest.raises(ConfigError, match="train.epochs must be an integer"):
        load_config(None, ["--train.epochs", "two"])
    with pytest.raises(ConfigError, match="must be true or false"):
        load_config(None, ["--train.compile", "maybe"])
    with pytest.raises(ConfigError, match="did you mean 'lr'"):
        load_config(None, ["--optim.lrr", "0.1"])
    with pytest.raises(ConfigError, match="unknown section 'optimizer'"):
        load_config(None, ["--optimizer.lr", "0.1"])


def test_method_options_follow_the_method():
    cfg = load_config(None, ["--method.momentum", "0.99", "--method.name", "byol"])  # any order
    assert cfg.method.name == "byol" and cfg.method.resolved_options().momentum == 0.99
    assert cfg.to_dict()["method"] == {"name": "byol", "predictor_hidden": "4096",
                                       "momentum": 0.99, "momentum_end": 1.0}
    with pytest.raises(ConfigError, match="method 'simclr' has no option 'momentum'; its "
                                          "options: temperature"):
        load_config(None, ["--method.momentum", "0.99"])
    cfg.set("method.name", "simclr")  # another method: its own options at their defaults
    assert cfg.to_dict()["method"] == {"name": "simclr", "temperature": 0.1,
                                       "decoupled": False}


def test_yaml_round_trip_with_overrides(tmp_path):
    cfg = load_config(None, ["--method.name", "byol", "--method.momentum", "0.99",
                             "--optim.lr", "0.25", "--model.cifar_stem", "false",
                             "--train.precision", "bf16", "--probe.projector_layers", "true"])
    path = tmp_path / "x.yaml"
    cfg.to_yaml(path)
    back = RunConfig.from_yaml(path)
    assert back.to_dict() == cfg.to_dict()
    assert back.method.resolved_options().momentum == 0.99 and back.model.cifar_stem is False
    # a file then overrides: the command line wins
    again = load_config(path, ["--optim.lr", "0.5", "method.momentum=0.98"])
    assert again.optim.lr == 0.5 and again.method.resolved_options().momentum == 0.98
    assert again.train.precision == "bf16"
    assert RunConfig.from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()
    path.write_text("optim:\n  lr: 0.1\n  bogus: 1\n")
    with pytest.raises(ConfigError, match="unknown field of optim 'bogus'"):
        RunConfig.from_yaml(path)


def test_command_bad_config_is_one_line_and_exit_2(tiny_files, tmp_path, capsys):
    train, _ = tiny_files
    rc = train_main(["--train", str(train), "--method", "nope", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("jessl: error: method.name: unknown")
    rc = train_main(["--train", str(train), "--model.backbone", "small_cnn",
                     "--out", str(tmp_path / "r"), "optim.lr=-1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == ["jessl: error: optim.lr must be > 0 (per 256 images), got -1.0"]
    assert not (tmp_path / "r").exists()  # nothing was started


def test_command_help_lists_the_method_options(capsys):
    assert train_main(["--method", "byol", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--optim.lr" in text and "per 256 images" in text  # common options, with sources
    assert "--method.momentum FLOAT  (default 0.996)" in text and "BYOL section 3.2" in text
    assert "temperature" in method_help("simclr") and "--method.momentum" not in method_help("simclr")


def test_a_cuda_device_without_a_gpu_is_refused_and_auto_falls_back(tiny_files, tmp_path,
                                                                    monkeypatch):
    import torch

    from jessl.train.trainer import pick_device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    train, val = tiny_files
    with pytest.raises(ConfigError, match="train.device cuda:1: torch sees no CUDA GPU"):
        valid(train, val, "--train.out", str(tmp_path / "run"), "--train.device",
              "cuda:1").validate()
    assert pick_device("auto") == torch.device("cpu") == pick_device("cpu")


def test_recipes_in_docs_load(tiny_files, tmp_path):
    """Every recipe the docs tell users to run parses and validates (a renamed field would
    otherwise break it silently); the data files are swapped for tiny ones, which CI has."""
    from pathlib import Path
    train, val = tiny_files
    recipes = sorted((Path(__file__).parents[2] / "docs" / "recipes").glob("*.yaml"))
    assert recipes, "no recipes found"
    for path in recipes:
        cfg = load_config(path, [f"data.train={train}", f"data.val={val}",
                                 "data.batch_size=16", f"train.out={tmp_path / path.stem}"])
        assert cfg.validate() is cfg and cfg.train.epochs >= 1, path


def test_local_views_give_the_multicrop_views(tiny_files, tmp_path):
    """data.local_views k: 2 global + k local views of the multicrop preset for a method that
    takes multi-crop; None keeps each method's own; a method without multi-crop refuses k > 0."""
    train, val = tiny_files
    out = ["--train.out", str(tmp_path / "run")]
    cfg = valid(train, val, *out, "--method.name", "simclr", "--data.local_views", "3").validate()
    views = cfg.view_list()
    assert cfg.views_preset() == "multicrop_cifar"
    assert [min(v.hw) for v in views] == [32, 32, 16, 16, 16]
    assert [min(v.hw) for v in valid(train, val, *out).view_list()] == [32, 32]  # simclr's own
    dino = valid(train, val, *out, "--method.name", "dino")
    assert len(dino.view_list()) == 8  # DINO's own: 2 global + 6 local
    dino.set("data.local_views", 2)
    assert len(dino.view_list()) == 4
    dino.set("data.local_views", 0)
    assert len(dino.view_list()) == 2
    with pytest.raises(ConfigError, match="method 'simsiam' takes no local views"):
        valid(train, val, *out, "--method.name", "simsiam", "--data.local_views", "2").validate()
    with pytest.raises(ConfigError, match="has no local view to repeat"):
        valid(train, val, *out, "--data.views", "simclr_cifar", "--data.local_views",
              "2").validate()
    with pytest.raises(ConfigError, match="data.local_views must be >= 0"):
        valid(train, val, *out, "--data.local_views", "-1").validate()


def test_a_multicrop_preset_alone_makes_a_method_take_local_views(tiny_files, tmp_path,
                                                                    monkeypatch):
    """A method registered later with a multi-crop preset (num_views None) but without the
    multicrop flag still gets data.local_views."""
    from jessl.methods import METHODS
    monkeypatch.setattr(METHODS["dino"], "multicrop", False)
    train, val = tiny_files
    cfg = valid(train, val, "--train.out", str(tmp_path / "run"), "--method.name", "dino",
                "--data.local_views", "2").validate()
    assert len(cfg.view_list()) == 4
