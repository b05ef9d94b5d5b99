"""The trainer's plumbing: metrics.jsonl on resume (the records after the checkpoint go, and so
does a torn last line) and the training loader's settings."""

import json

import pytest

from jessl.train.trainer import RunLog, fresh_start_notice


def test_resume_drops_later_records_and_a_torn_last_line(tmp_path):
    lines = [json.dumps({"kind": "step", "step": s, "loss": 1.0 / s}) for s in (1, 2, 3)]
    # kill -9 in the middle of a write leaves half a JSON object on the last line
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + '\n{"kind": "step", "st')
    log = RunLog(tmp_path, resume_step=2)
    log.write({"kind": "step", "step": 3, "loss": 0.5})
    log.close()
    records = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["loss"]) for r in records] == [(1, 1.0), (2, 0.5), (3, 0.5)]


@pytest.mark.parametrize("exact", [False, True])
def test_data_exact_reaches_the_training_loader(tiny_files, tmp_path, exact):
    """`data.exact` (full-size JPEG decode, torchvision's pixels) is passed to the Loader."""
    from jessl.config import load_config
    from jessl.data.loader import Loader
    from jessl.train.trainer import build_loader
    from tests.train.conftest import tiny_overrides
    train_file, val_file = tiny_files
    cfg = load_config(None, tiny_overrides(train_file, val_file, tmp_path / "run",
                                           {"data.exact": exact})).validate()
    loader = build_loader(cfg, Loader, cfg.view_list(), world=1)
    assert loader.exact is exact


def test_a_stopped_run_without_its_checkpoint_says_it_starts_again(tmp_path):
    """A run stopped in one session and continued from a fresh checkout (no checkpoint: they
    stay out of git) trains from epoch 0, and resume=auto says so instead of looking like a
    resume; an empty folder just starts fresh."""
    assert fresh_start_notice(tmp_path).endswith(", starting fresh")
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (
        {"kind": "step", "epoch": 36, "step": 1400},
        {"kind": "epoch", "epoch": 36, "step": 1404})) + '{"kind": "ep')  # torn last line
    notice = fresh_start_notice(tmp_path)
    assert "stopped after epoch 36, and its checkpoint is gone" in notice
    assert "training it again from epoch 0" in notice
