"""`jessl eval` and the trainer's evaluation share their defaults: each is written once, in
jessl.config's EvalConfig, and eval's modules and flags read it from there."""

from jessl.config import EvalConfig
from jessl.eval import knn, suite
from jessl.eval.command import build_parser


def test_eval_flags_default_to_the_run_configs_values():
    args = build_parser().parse_args(["knn", "--random-init", "--backbone", "small_cnn",
                                      "--train", "x.jessl"])
    assert args.k == knn.KS == (knn.K, EvalConfig.k)
    assert args.temperature == knn.TEMPERATURE == EvalConfig.temperature
    assert args.batch_size == EvalConfig.batch_size
    assert suite.RANKME_SAMPLES == EvalConfig.rankme_samples
    settings = suite.Settings()
    assert settings.ks == knn.KS and settings.temperature == EvalConfig.temperature
