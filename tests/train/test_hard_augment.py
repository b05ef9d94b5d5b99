"""Hard Augment: the pair it picks, no gradient or statistics from the selection pass, eq. 11's
overhead, every registered method, and the trainer mining end to end."""

import itertools
import json

import pytest
import torch
from torch import nn

from jessl.config import ConfigError, load_config
from jessl.data.views import resolve_views
from jessl.methods import METHODS, build_method
from jessl.models import build_backbone
from jessl.train.flops import FlopMeter, hard_augment_overhead_eq11, step_flops_on
from jessl.train.hard_augment import (HardAugment, candidate_views, eligible_pairs,
                                      hardest_pairs, pair_scores, selection_mode)
from jessl.train.inputs import check_inputs
from jessl.train.trainer import train

from .conftest import tiny_overrides

TINY_OPTS = {"moco": {"queue_size": 32}, "nnclr": {"queue_size": 32},
             "dino": {"num_prototypes": 64}}


def _reference_hardest(z, allowed):
    """Per image, the allowed pair (i, j) of largest -cos(z_i, z_j), by a plain loop."""
    out = []
    for b in range(z.shape[1]):
        scores = {(i, j): -torch.nn.functional.cosine_similarity(z[i, b], z[j, b], dim=0).item()
                  for i, j in allowed}
        out.append(max(scores, key=scores.get))
    return out


@pytest.mark.parametrize("m", [2, 4, 5])
def test_picks_the_highest_scoring_pair_of_constructed_embeddings(m):
    g = torch.Generator().manual_seed(m)
    b, d = 6, 8
    axes = torch.eye(d)
    z = axes[0].expand(m, b, d) + 0.05 * torch.randn(m, b, d, generator=g)  # all alike ...
    pairs = list(itertools.combinations(range(m), 2))
    planted = [pairs[k % len(pairs)] for k in range(b)]
    for k, (i, j) in enumerate(planted):  # ... but one pair per image points apart, at right
        z[i, k] = axes[1] + 0.05 * torch.randn(d, generator=g)  # angles to the others
        z[j, k] = -axes[1] + 0.05 * torch.randn(d, generator=g)
    first, second = eligible_pairs(m, symmetric=True)
    assert len(first) == m * (m - 1) // 2
    i, j = hardest_pairs(pair_scores(z, first, second), first, second)
    assert list(zip(i.tolist(), j.tolist())) == planted == _reference_hardest(z, pairs)


def test_asymmetric_recipes_pair_one_view_of_each_kind_in_order():
    byol = resolve_views("byol_cifar")
    views = candidate_views(byol, 4)
    assert views == [byol[0], byol[1], byol[0], byol[1]]
    first, second = eligible_pairs(4, symmetric=False)
    assert sorted(zip(first.tolist(), second.tolist())) == [(0, 1), (0, 3), (2, 1), (2, 3)]
    multicrop = resolve_views("multicrop_cifar")
    assert candidate_views(multicrop, 3)[3:] == multicrop[2:]  # local crops pass through


def _method(name="simclr"):
    torch.manual_seed(0)
    return build_method(name, build_backbone("small_cnn", cifar_stem=True), "64-32",
                        TINY_OPTS.get(name, {}))


def _candidates(m=4, b=4, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, 3, size, size, generator=g) for _ in range(m)]


@pytest.mark.parametrize("bn", ["batch", "eval"])
def test_selection_leaves_no_gradient_and_no_statistics(bn):
    method = _method()
    method.train()
    buffers = {k: v.clone() for k, v in method.state_dict().items() if "running" in k
               or "num_batches" in k}
    cands = _candidates()
    hard = HardAugment(4, 8, bn=bn)
    chosen = hard.select(method, cands)
    assert all(p.grad is None for p in method.parameters())
    assert not any(v.requires_grad for v in chosen)
    for k, v in method.state_dict().items():
        if k in buffers:
            assert torch.equal(v, buffers[k]), k  # running statistics untouched
    assert all(m.training for m in method.modules())  # train mode restored
    assert all(m.track_running_stats for m in method.modules()
               if isinstance(m, nn.modules.batchnorm._BatchNorm))
    # each chosen view is one image's candidate, row for row
    stack = torch.stack(cands)
    for view in chosen:
        assert all(any(torch.equal(view[r], stack[c, r]) for c in range(4)) for r in range(4))
    # the method's gradient is that of its own loss on the chosen pair, nothing more
    method(chosen).loss.backward()
    grads = [p.grad.clone() for p in method.parameters_to_optimize()]
    method.zero_grad(set_to_none=True)
    method([v.clone() for v in chosen]).loss.backward()
    assert all(torch.equal(a, p.grad) for a, p in zip(grads, method.parameters_to_optimize()))


def _first_bn(module):
    return next(m for m in module.modules() if isinstance(m, nn.BatchNorm2d))


def test_a_selection_pass_that_tracked_statistics_would_move_them():
    """The other side of the test above: train mode with tracking on does move the buffers, so
    the test can fail."""
    method = _method()
    before = _first_bn(method).running_mean.clone()
    with torch.no_grad():
        method.embed(torch.cat(_candidates()))
    assert not torch.equal(before, _first_bn(method).running_mean)
    with torch.no_grad(), selection_mode(method, "batch"):
        before = _first_bn(method).running_mean.clone()
        method.embed(torch.cat(_candidates()))
    assert torch.equal(before, _first_bn(method).running_mean)


def test_selection_overhead_matches_eq11_in_flops():
    """The measured FLOPs of the selection pass over those of a training step, against the
    paper's eq. 11 (C = 6), on small_cnn at 32 px with selection at 16 px and m = 4."""
    method, m, size, sel = _method(), 4, 32, 16
    step = step_flops_on(method, _candidates(2, size=size))
    meter = FlopMeter()
    HardAugment(m, sel).select(method, _candidates(m, size=size), meter)
    measured = meter.by_part["selection"] / (step["forward"] + step["backward"])
    predicted = hard_augment_overhead_eq11(size, sel, m)
    assert predicted == pytest.approx(4 * 16 ** 2 / (32 ** 2 * 6))
    assert abs(measured / predicted - 1) < 0.2, (measured, predicted)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_registered_method_trains_on_the_mined_pair(name):
    """The Method contract is all Hard Augment needs: embed (the teacher's where there is one)
    and the method's own forward on the pair, plus any extra views passed through."""
    method = _method(name)
    n_views = method.num_views or 4  # multi-crop: the pair + 2 local crops
    extra = [torch.randn(4, 3, 8 if method.num_views is None else 16,
                         8 if method.num_views is None else 16) for _ in range(n_views - 2)]
    scorer = "teacher" if getattr(method, "teacher", None) is not None else "student"
    chosen = HardAugment(3, 8, scorer=scorer).select(method, _candidates(3, b=4, size=16) + extra)
    assert len(chosen) == n_views and chosen[2:] == extra
    assert torch.isfinite(method(chosen).loss)


def test_trainer_mines_pairs_and_logs_the_overhead(tiny_files, tmp_path, monkeypatch):
    from jessl.methods import SimCLR
    seen = []
    forward = SimCLR.forward

    def spy(self, views):
        seen.append(len(views))
        return forward(self, views)

    monkeypatch.setattr(SimCLR, "forward", spy)
    train_file, val_file = tiny_files
    out = tmp_path / "ha"
    train(load_config(None, tiny_overrides(train_file, val_file, out, {
        "train.epochs": 1, "eval.knn": False, "hard_augment.enabled": True,
        "hard_augment.candidates": 3, "hard_augment.size": 8})))
    assert seen == [2] * 4  # the method always gets its pair
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epoch = [r for r in records if r["kind"] == "epoch"][0]
    # 32 px views, 8 px selection of 3 candidates: eq. 11 says 3 x 64 / (1024 x 6)
    assert epoch["hard_augment/overhead_eq11"] == pytest.approx(0.03125)
    assert 0.02 < epoch["hard_augment/overhead_flops"] < 0.06
    assert epoch["hard_augment/score_hardest"] >= epoch["hard_augment/score_mean"]


def test_bad_hard_augment_settings_fail_early(tiny_files, tmp_path):
    train_file, val_file = tiny_files
    for key, value, match in (("hard_augment.candidates", 1, "candidates must be >= 2"),
                              ("hard_augment.bn", "frozen", "unknown mode"),
                              ("hard_augment.scorer", "ema", "unknown network"),
                              ("hard_augment.start_epoch", -1, "start_epoch must be >= 0"),
                              ("hard_augment.start_epoch", 99, "past the last epoch"),
                              ("data.views", "instance_cifar", None)):
        cfg = load_config(None, tiny_overrides(train_file, val_file, tmp_path / "b",
                                               {"hard_augment.enabled": True, key: value}))
        if match is None:
            check_inputs(cfg.validate())  # a third view (the negative patch) passes through
            continue
        with pytest.raises(ConfigError, match=match):
            check_inputs(cfg.validate())


@pytest.fixture
def selections(monkeypatch):
    """The candidate size of every selection pass the trainer runs (HardAugment.select spied)."""
    calls = []
    select = HardAugment.select

    def spy(self, method, views, meter=None):
        calls.append(views[0].shape[-1])
        return select(self, method, views, meter)

    monkeypatch.setattr(HardAugment, "select", spy)
    return calls


def test_skip_small_mines_only_above_the_selection_size(tiny_files, tmp_path, selections):
    """SPL's small stages with skip_small: the method gets candidates 0 and 1, no selection
    runs and no overhead is logged; the full-size epochs mine as before."""
    hard = HardAugment(3, 16, skip_small=True)
    assert not hard.mines(16, 0) and hard.mines(24, 0) and HardAugment(3, 16).mines(16, 0)
    views = _candidates(3, b=4, size=16) + [torch.zeros(4, 3, 8, 8)]
    unmined = hard.unmined(views)
    assert len(unmined) == 3 and unmined[0] is views[0] and unmined[1] is views[1] \
        and unmined[2] is views[3]

    calls = selections
    train_file, val_file = tiny_files
    out = tmp_path / "skip"
    # 3 epochs: 32 px warm-up, then SPL's 16 px and 32 px stages
    train(load_config(None, tiny_overrides(train_file, val_file, out, {
        "train.epochs": 3, "eval.knn": False, "progressive.min_size": 16,
        "progressive.step": 16, "hard_augment.enabled": True, "hard_augment.candidates": 3,
        "hard_augment.size": 16, "hard_augment.skip_small": True})))
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in epochs if r["kind"] == "epoch"]
    sizes = [r["view_size"] for r in epochs]
    assert 16 in sizes and 32 in sizes
    for r in epochs:
        assert ("hard_augment/overhead_flops" in r) == (r["view_size"] > 16)
    assert set(calls) == {32}  # the selection never ran on 16 px candidates


def test_start_epoch_mines_from_that_epoch_on(tiny_files, tmp_path, selections):
    """hard_augment.start_epoch: the epochs before it train on candidates 0 and 1 with no
    selection pass and no overhead logged; from it on the selection runs every step."""
    hard = HardAugment(3, 16, start_epoch=2)
    assert [hard.mines(32, e) for e in range(4)] == [False, False, True, True]
    assert not HardAugment(3, 16, skip_small=True, start_epoch=1).mines(16, 3)

    calls = selections
    train_file, val_file = tiny_files
    out = tmp_path / "late"
    train(load_config(None, tiny_overrides(train_file, val_file, out, {
        "train.epochs": 2, "eval.knn": False, "hard_augment.enabled": True,
        "hard_augment.candidates": 3, "hard_augment.size": 16,
        "hard_augment.start_epoch": 1})))
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert ["hard_augment/overhead_flops" in r for r in epochs] == [False, True]
    assert len(calls) == epochs[1]["step"] - epochs[0]["step"] > 0  # each step of epoch 2 only
