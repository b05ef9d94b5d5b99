"""The online probe learns without touching the model; features are extracted once, cached."""

import torch
from torch import nn

from jessl.eval import features as features_mod
from jessl.eval.features import cache_key, extract_features
from jessl.models import build_backbone
from jessl.train.probe import OnlineProbe, probe_dims, probe_inputs, projector_blocks


def test_probe_beats_chance_on_colour_classes(tiny_files):
    """4 colour classes, chance 25%: the probe on a random small_cnn's features must learn."""
    train_file, val_file = tiny_files
    torch.manual_seed(0)
    backbone = build_backbone("small_cnn", cifar_stem=True)
    feats, labels = extract_features(backbone, train_file, num_threads=1)
    val_feats, val_labels = extract_features(backbone, val_file, num_threads=1)
    probe = OnlineProbe({"backbone": backbone.feature_dim}, num_classes=4, lr=0.1)
    before = probe.accuracy({"backbone": val_feats}, val_labels)["probe/backbone_val_top1"]
    for _ in range(5):
        for i in range(0, len(feats), 16):
            logs = probe.step({"backbone": feats[i:i + 16]}, labels[i:i + 16])
    after = probe.accuracy({"backbone": val_feats}, val_labels)["probe/backbone_val_top1"]
    assert after > 75 and after > before, (before, after)
    assert set(logs) == {"probe/backbone_loss", "probe/backbone_top1"}


def test_probe_cuts_the_gradient_and_ignores_unlabeled():
    torch.manual_seed(0)
    net = nn.Linear(8, 6)
    feats = net(torch.randn(10, 8))  # requires grad
    probe = OnlineProbe({"backbone": 6}, num_classes=3)
    head_before = probe.heads["backbone"][1].weight.clone()
    probe.step({"backbone": feats}, torch.tensor([0, 1, 2, -1, 0, 1, 2, 0, 1, 2]))
    assert net.weight.grad is None  # no label reached the network
    assert not torch.equal(head_before, probe.heads["backbone"][1].weight)  # the probe moved
    assert probe.step({"backbone": feats}, torch.full((10,), -1)) == {}  # nothing labelled


def test_projector_blocks_and_probe_inputs_leave_the_model_alone():
    from jessl.models.heads import projector
    head = projector(6, "16-8-4")
    blocks = projector_blocks(head)
    assert len(blocks) == 3 and probe_dims(6, blocks) == {"backbone": 6, "proj1": 16,
                                                           "proj2": 8, "proj3": 4}
    stats = head[1].running_mean.clone()
    head.train()
    x = torch.randn(5, 6)
    out = probe_inputs(x, blocks)
    assert torch.equal(head[1].running_mean, stats) and head.training  # BN untouched, mode kept
    head.eval()
    with torch.no_grad():
        torch.testing.assert_close(out["proj3"], head(x))  # the blocks compose to the head


def test_features_cache_hit_and_miss(tiny_files, tmp_path, monkeypatch):
    train_file, _ = tiny_files
    torch.manual_seed(0)
    backbone = build_backbone("small_cnn", cifar_stem=True)
    backbone.train()
    feats, labels = extract_features(backbone, train_file, num_threads=1, cache_dir=tmp_path)
    assert feats.shape == (64, backbone.feature_dim) and feats.dtype == torch.float32
    assert labels.tolist() == [0, 1, 2, 3] * 16 and backbone.training  # file order, mode kept
    assert len(list(tmp_path.glob("features-*.pt"))) == 1

    class NoLoader:  # a cache hit must not read the dataset or run the network
        def __init__(self, *a, **k):
            raise AssertionError("cache miss: the loader was built")
    import jessl.data.loader
    monkeypatch.setattr(jessl.data.loader, "Loader", NoLoader)
    again, labels2 = extract_features(backbone, train_file, num_threads=1, cache_dir=tmp_path)
    assert torch.equal(again, feats) and torch.equal(labels2, labels)
    monkeypatch.undo()

    key = cache_key(backbone, train_file, features_mod.eval_views(train_file))
    with torch.no_grad():
        next(backbone.parameters()).add_(1.0)  # other weights: another key, a fresh pass
    assert cache_key(backbone, train_file, "eval_cifar") != key
    changed, _ = extract_features(backbone, train_file, num_threads=1, cache_dir=tmp_path)
    assert not torch.equal(changed, feats)
    assert len(list(tmp_path.glob("features-*.pt"))) == 2
    assert cache_key(backbone, train_file, "eval") != cache_key(backbone, train_file,
                                                                "eval_cifar")


def test_atomic_checkpoint_and_rng_round_trip(tmp_path):
    import random

    import numpy as np

    from jessl.checkpoint import (atomic_save, checkpoint_path, latest_checkpoint,
                                        load_checkpoint, prune_checkpoints, rng_state,
                                        set_rng_state)
    state = rng_state()
    draws = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(state)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(draws[0], again[0]) and np.array_equal(draws[1], again[1])
    assert draws[2] == again[2]
    for epoch in (1, 2, 10):
        atomic_save({"epoch": epoch, "rng": rng_state()}, checkpoint_path(tmp_path, epoch))
    assert latest_checkpoint(tmp_path).name == "epoch-0010.pt"  # by number, not by text
    assert load_checkpoint(latest_checkpoint(tmp_path))["epoch"] == 10
    assert not list((tmp_path / "checkpoints").glob(".*tmp"))  # no temporary file left
    prune_checkpoints(tmp_path, keep=2)
    assert [p.name for p in (tmp_path / "checkpoints").glob("*.pt")] != []
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("*.pt")) == \
        ["epoch-0002.pt", "epoch-0010.pt"]


def test_probe_statistics_and_recalibrated_accuracy():
    """A resolution shift moves the features (here x -> 2x + 8); the running statistics of the
    views then misplace them and the probe reads low, statistics of the shifted training
    features put them back (the FixRes correction); the heads' own state is left alone."""
    torch.manual_seed(0)
    labels = torch.arange(400) % 2
    views = torch.randn(400, 4) + labels[:, None] * torch.tensor([3.0, 0, 0, 0])  # class in x0
    probe = OnlineProbe({"backbone": 4}, num_classes=2, lr=0.1)
    for _ in range(30):
        for i in range(0, 400, 50):
            probe.step({"backbone": views[i:i + 50]}, labels[i:i + 50])
    state = {k: v.clone() for k, v in probe.state_dict().items()}
    assert probe.accuracy({"backbone": views}, labels)["probe/backbone_val_top1"] > 90

    shifted = {"backbone": 2 * views + 8}
    plain = probe.accuracy(shifted, labels)["probe/backbone_val_top1"]
    stats = OnlineProbe.statistics(shifted)
    mean, var = stats["backbone"]
    torch.testing.assert_close(mean, shifted["backbone"].mean(0))
    torch.testing.assert_close(var, shifted["backbone"].var(0, unbiased=True))
    fixed = probe.accuracy(shifted, labels, stats)["probe/backbone_val_top1"]
    assert plain < 55 and fixed > 90, (plain, fixed)
    assert all(torch.equal(v, state[k]) for k, v in probe.state_dict().items())

    bn = probe.heads["backbone"][0]  # the running statistics passed as stats: the plain reading
    same = {"backbone": (bn.running_mean, bn.running_var)}
    assert probe.accuracy(shifted, labels, same) == probe.accuracy(shifted, labels)
    try:
        OnlineProbe.statistics({"backbone": views[:1]})
    except ValueError as err:
        assert ">= 2 rows" in str(err)
    else:
        raise AssertionError("one row gave statistics")


def test_recalibration_sample_is_seeded_sorted_and_bounded():
    import numpy as np
    from jessl.train.probe import recalibration_sample
    records = np.arange(100, 1100)
    a = recalibration_sample(records, 64, seed=3)
    assert len(a) == 64 and len(set(a.tolist())) == 64 and np.all(np.diff(a) > 0)
    assert set(a.tolist()) <= set(records.tolist())
    assert np.array_equal(a, recalibration_sample(records, 64, seed=3))  # the same every epoch
    assert not np.array_equal(a, recalibration_sample(records, 64, seed=4))
    assert np.array_equal(recalibration_sample(records[::-1], 5000, seed=0), records)  # all
    assert recalibration_sample(records, 0, seed=0) is None
