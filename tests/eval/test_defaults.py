"""`jessl eval` and the trainer's evaluation share their defaults: each is written once, in
jessl.config (EvalConfig, and the eval command's FeatureConfig and probe configs beside it), and
eval's modules and flags read it from there."""

import argparse
from dataclasses import fields

import pytest

from jessl.config import (ConfigError, EvalConfig, FeatureConfig, KnnProbeConfig,
                          LinearProbeConfig, MlpProbeConfig, SuiteConfig)
from jessl.eval import augmented, knn, probes, suite
from jessl.eval.command import PROBE_CONFIGS, build_parser, probe_configs

# options that name an input or an output, not a setting: nothing to default, so no dataclass
INPUTS = {"help", "checkpoint", "weights", "random_init", "backbone", "cifar_stem", "label",
          "train", "test", "dataset", "datasets", "split_per_class", "train_per_class",
          "data_root", "cache_dir", "json", "out"}
NET = ["--random-init", "--backbone", "small_cnn"]


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_eval_flags_default_to_the_run_configs_values():
    args = build_parser().parse_args(["knn", *NET, "--train", "x.jessl"])
    assert args.k == knn.KS == (knn.K, EvalConfig.k)
    assert args.temperature == knn.TEMPERATURE == EvalConfig.temperature
    assert args.batch_size == EvalConfig.batch_size
    assert suite.RANKME_SAMPLES == EvalConfig.rankme_samples
    settings = suite.Settings()
    assert settings.ks == knn.KS and settings.temperature == EvalConfig.temperature
    assert (settings.mlp_epochs, settings.mlp_hidden) == (MlpProbeConfig.epochs,
                                                          MlpProbeConfig.hidden)
    assert augmented.AUG_SCALE == LinearProbeConfig.augment_scale


@pytest.mark.parametrize("probe", sorted(PROBE_CONFIGS))
def test_every_setting_flag_is_a_dataclass_field(probe):
    """Each option of `jessl eval PROBE` is an input or a field of the probe's dataclasses,
    with that field's default: a hand-written setting (a second copy of a default) fails."""
    classes = (FeatureConfig, *PROBE_CONFIGS[probe])
    defaults = {f.name: f.default for cls in classes for f in fields(cls)}
    seen = set()
    for action in _subparsers()[probe]._actions:
        if action.dest in INPUTS:
            continue
        assert action.dest in defaults, f"--{action.dest} is neither an input nor a field"
        assert action.default == defaults[action.dest], action.dest
        assert "(default " in action.help  # the help shows the default
        seen.add(action.dest)
    assert seen == set(defaults)


def test_the_linear_help_states_the_protocols_epochs():
    help_ = _subparsers()["linear"].format_help().replace("\n", " ")
    assert f"None = {probes.LINEAR_EPOCHS} on" in " ".join(help_.split())
    assert f"{augmented.AUG_EPOCHS} with --augment" in " ".join(help_.split())


def test_the_users_spellings_still_parse():
    """Flags as README and docs write them: switches, dashed widths, comma lists."""
    p = build_parser()
    a = p.parse_args(["mlp", *NET, "--train", "x", "--hidden", "1024-512", "--epochs", "3",
                      "--no-cache", "--threads", "2", "--views", "eval"])
    assert (a.hidden, a.epochs, a.cache, a.threads, a.views) == ((1024, 512), 3, False, 2, "eval")
    a = p.parse_args(["linear", *NET, "--train", "x", "--augment", "--augment-scale", "0.2,1"])
    assert (a.augment, a.augment_scale, a.epochs) == (True, (0.2, 1.0), None)
    a = p.parse_args(["suite", *NET, "--datasets", "cifar10", "--out", "o", "--k", "10,20",
                      "--probes", "knn,rankme", "--mlp-hidden", "512,512", "--no-projector"])
    assert (a.k, a.probes, a.mlp_hidden, a.projector) == ((10, 20), ("knn", "rankme"),
                                                          (512, 512), False)
    feature, knn_cfg, suite_cfg = probe_configs(a)
    assert isinstance(suite_cfg, SuiteConfig) and knn_cfg == KnnProbeConfig(k=(10, 20))


@pytest.mark.parametrize("argv, message", [
    (["knn", "--k", "0,20"], "--k: give positive integers"),
    (["knn", "--temperature", "0"], "--temperature must be > 0"),
    (["mlp", "--epochs", "0"], "--epochs must be >= 1"),
    (["linear", "--augment-scale", "0.5,0.1"], "--augment-scale must be 0 < LO <= HI <= 1"),
    (["rankme", "--threads", "0"], "--threads must be >= 1"),
    (["rankme", "--views", "nope"], "unknown view preset 'nope'"),
    (["rankme", "--device", "tpu"], "--device"),
])
def test_a_bad_setting_names_its_option(argv, message):
    args = build_parser().parse_args([*argv, *NET, "--train", "x.jessl"])
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        probe_configs(args)


def test_a_suite_probe_list_is_checked():
    args = build_parser().parse_args(["suite", *NET, "--datasets", "c", "--out", "o",
                                      "--probes", "knn,lin"])
    with pytest.raises(ConfigError, match="unknown probe.*lin; known: knn, linear, mlp, rankme"):
        probe_configs(args)


def test_a_value_of_the_wrong_type_is_one_line_and_status_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["mlp", *NET, "--train", "x", "--hidden", "2048-wide"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "argument --hidden: the value must be an integer" in err[0]
