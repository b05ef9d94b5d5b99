"""One contract test over every registered method (timm-style), with and without multi-crop
where a method takes it, then multi-crop's pairs, then each method's own state: BYOL's momentum
schedule, DINO's teacher temperature, MoCo v2's queue."""

from __future__ import annotations

import dataclasses
import importlib

import pytest
import torch
import torch.nn.functional as F

from jessl.methods import METHODS, build_method
from jessl.methods.base import N_GLOBAL, crop_pairs, takes_local_views
from jessl.models import build_backbone
from jessl.schedules import cosine

TOTAL_STEPS = 10
BATCH = 8
# shrink the state that is sized for ImageNet, so the contract test stays tiny
TINY_OPTS = {"moco": {"queue_size": 32}, "nnclr": {"queue_size": 32},
             "dino": {"num_prototypes": 64}, "swav": {"num_prototypes": 64, "queue_length": 16,
                                                     "queue_start": 0.0}}
# (name, options, local views): every method as its preset gives its views (None: two views, or
# 2 global + 2 local for a multi-crop preset), then the other case of every method that takes
# multi-crop: 3 local views for a two-view method, none for a multi-crop one
CASES = [(name, TINY_OPTS.get(name, {}), None) for name in METHODS]
CASES.append(("moco", {"queue_size": 32, "version": "v3"}, None))
CASES += [(name, TINY_OPTS.get(name, {}), 3 if cls.num_views == 2 else 0)
          for name, cls in METHODS.items() if takes_local_views(cls)]
WITH_TEACHER = {"byol", "moco", "dino"}


def _case_id(case) -> str:
    name, opts, local = case
    return name + ("-" + opts["version"] if "version" in opts else "") + \
        ("" if local is None else f"-local{local}")


def _method(name: str, opts: dict | None = None, projector: str = "64-32"):
    torch.manual_seed(0)
    return build_method(name, build_backbone("small_cnn", cifar_stem=True), projector,
                        dict(opts if opts is not None else TINY_OPTS.get(name, {})))


def _views(method, seed: int = 0, local: int | None = None) -> list[torch.Tensor]:
    """Random views: the method's own layout (2 global 32 px + 2 local 16 px for multi-crop
    methods whose preset is multi-crop), or 2 global + `local` local views."""
    g = torch.Generator().manual_seed(seed)
    if local is not None:
        sizes = [32] * N_GLOBAL + [16] * local
    else:
        sizes = [32, 32, 16, 16] if method.num_views is None else [32] * method.num_views
    return [torch.randn(BATCH, 3, s, s, generator=g) for s in sizes]


def _first_conv(module: torch.nn.Module) -> torch.nn.Conv2d:
    return next(m for m in module.modules() if isinstance(m, torch.nn.Conv2d))


def _step(method, opt, step: int, local: int | None = None):
    """Forward and backward on the views of `step`; the optimizer step is the caller's."""
    opt.zero_grad(set_to_none=True)
    out = method(_views(method, seed=step, local=local))
    out.loss.backward()
    return out


def _two_losses(method, local: int | None = None) -> list[float]:
    opt = torch.optim.SGD(method.parameters_to_optimize(), lr=0.1, momentum=0.9)
    losses = []
    for step in range(2):
        losses.append(_step(method, opt, step, local).loss.item())
        opt.step()
        method.after_step(step, TOTAL_STEPS)
    return losses


@pytest.mark.parametrize("name,opts,local", CASES, ids=[_case_id(c) for c in CASES])
def test_method_contract(name, opts, local):
    method = _method(name, opts)
    cls = METHODS[name]
    assert cls.name == name and method.views
    assert all(f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
               for f in dataclasses.fields(cls.options)), "every option needs a default"
    cls.options()  # builds bare

    teacher = getattr(method, "teacher", None)
    assert (teacher is not None) == (name in WITH_TEACHER)
    optimized = {id(p) for p in method.parameters_to_optimize()}
    assert all(id(p) in optimized for p in method.backbone.parameters())
    assert all(id(p) in optimized for p in method.projector.parameters())
    if teacher is not None:
        assert not any(id(p) in optimized for p in teacher.parameters())
        before = [p.detach().clone() for p in teacher.parameters()]

    opt = torch.optim.SGD(method.parameters_to_optimize(), lr=0.1, momentum=0.9)
    out = _step(method, opt, 0, local)
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    conv = _first_conv(method.backbone).weight
    assert conv.grad is not None and conv.grad.abs().sum() > 0, "no gradient reaches the backbone"
    assert out.features.shape == (BATCH, method.backbone.feature_dim)
    assert out.embeddings.shape == (BATCH, 32)  # the "64-32" projector's output
    assert not out.features.requires_grad and not out.embeddings.requires_grad
    assert all(isinstance(v, float) for v in out.logs.values())
    opt.step()
    method.after_step(0, TOTAL_STEPS)
    if teacher is not None:
        assert all(p.grad is None for p in teacher.parameters())
        moved = [not torch.equal(b, p) for b, p in zip(before, teacher.parameters())]
        assert any(moved), "the EMA teacher did not move after after_step"
    second = _step(method, opt, 1, local)
    assert torch.isfinite(second.loss)

    assert _two_losses(_method(name, opts), local) == [out.loss.item(), second.loss.item()], \
        "same seed, different losses"


def test_wrong_number_of_views_is_a_clear_error():
    with pytest.raises(ValueError, match="takes 2 views"):
        _method("simsiam")([torch.randn(2, 3, 32, 32)] * 3)  # no multi-crop
    with pytest.raises(ValueError, match="takes >= 2 views"):
        _method("simclr")([torch.randn(2, 3, 32, 32)])


# --- multi-crop: which pairs each loss sees --------------------------------------------------

# the loss each multi-crop method calls once per pair, and whether its pairs are symmetric
PAIR_LOSS = {"simclr": ("info_nce", True), "vicreg": ("vicreg", True),
             "barlowtwins": ("barlow_twins", True), "byol": ("neg_cosine", False),
             "nnclr": ("nnclr_one_way", False)}


def test_every_multicrop_method_has_its_pairs_tested():
    assert {n for n, c in METHODS.items() if c.multicrop and c.num_views == 2} == set(PAIR_LOSS)


def test_crop_pairs():
    assert crop_pairs(2, True) == [(0, 1)] and crop_pairs(2, False) == [(0, 1), (1, 0)]
    assert crop_pairs(5, True) == [(0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (0, 4), (1, 4)]
    assert crop_pairs(4, False) == [(0, 1), (0, 2), (0, 3), (1, 0), (1, 2), (1, 3)]


def _outputs_by_view(module, n_views: int, store: list):
    """Forward hook: the module's (V*B, D) output, split into its V views, into store."""
    module.register_forward_hook(lambda m, i, o: store.append(list(o.detach().chunk(n_views))))


def _view_of(x: torch.Tensor, chunks: list) -> int:
    return next(i for i, c in enumerate(chunks) if torch.equal(x.detach(), c))


@pytest.mark.parametrize("local", [0, 3])
@pytest.mark.parametrize("name", sorted(PAIR_LOSS))
def test_multicrop_pairs_and_targets(name, local, monkeypatch):
    """The loss runs once per pair of `crop_pairs`, locals meet only globals, and the target
    side of a directed pair (BYOL's teacher output, NNCLR's neighbour query) is a global view."""
    loss_name, symmetric = PAIR_LOSS[name]
    module = importlib.import_module(METHODS[name].__module__)
    real, calls = getattr(module, loss_name), []
    monkeypatch.setattr(module, loss_name, lambda *a, **k: calls.append(a[:2]) or real(*a, **k))
    method = _method(name)
    n = N_GLOBAL + local
    z, p, t = [], [], []
    _outputs_by_view(method.projector, n, z)
    if hasattr(method, "predictor"):
        _outputs_by_view(method.predictor, n, p)
    if name == "byol":
        _outputs_by_view(method.teacher["projector"], N_GLOBAL, t)  # only 2 views reach it
    out = method(_views(method, local=local))
    assert torch.isfinite(out.loss)
    if name == "byol":  # neg_cosine(prediction of v, target of g)
        seen = [(_view_of(b, t[0]), _view_of(a, p[0])) for a, b in calls]
    elif name == "nnclr":  # nnclr_one_way(projection of g: its neighbour, prediction of v)
        seen = [(_view_of(a, z[0]), _view_of(b, p[0])) for a, b in calls]
    else:
        seen = [(_view_of(a, z[0]), _view_of(b, z[0])) for a, b in calls]
    assert seen == crop_pairs(n, symmetric)
    assert len(seen) == (1 + 2 * local if symmetric else 2 + 2 * local)
    assert all(g < N_GLOBAL for g, _ in seen), "a local view acted as a target"


@pytest.mark.parametrize("name", sorted(PAIR_LOSS))
def test_two_views_keep_the_papers_loss(name):
    """Without local views each method's loss is its two-view loss, written out here."""
    from jessl import losses as L
    method = _method(name)
    z, p, t = [], [], []
    _outputs_by_view(method.projector, 2, z)
    if hasattr(method, "predictor"):
        _outputs_by_view(method.predictor, 2, p)
    if name == "byol":
        _outputs_by_view(method.teacher["projector"], 2, t)
    support = method.queue.clone() if name == "nnclr" else None  # before the forward's push
    loss = method(_views(method)).loss.detach()
    (z1, z2), o = z[0], method.opts
    want = {"simclr": lambda: L.info_nce(z1, z2, o.temperature),
            "vicreg": lambda: L.vicreg(z1, z2, o.sim_weight, o.var_weight, o.cov_weight).loss,
            "barlowtwins": lambda: L.barlow_twins(z1, z2, o.lambd),
            "byol": lambda: L.neg_cosine(p[0][0], t[0][1]) + L.neg_cosine(p[0][1], t[0][0]),
            "nnclr": lambda: L.nnclr(z1, z2, support, o.temperature, p1=p[0][0],
                                     p2=p[0][1])}[name]()
    torch.testing.assert_close(loss, want, rtol=1e-6, atol=1e-6)


def test_byol_teacher_never_sees_local_views():
    byol = _method("byol")
    seen = []
    byol.teacher["backbone"].register_forward_hook(lambda m, i, o: seen.append(i[0].shape[-1]))
    byol(_views(byol, local=4))
    assert seen == [32]  # one call on the two global views


def test_unknown_method_and_wrong_options():
    backbone = build_backbone("small_cnn", cifar_stem=True)
    with pytest.raises(ValueError, match="unknown method"):
        build_method("simclr2", backbone, "64-32")
    with pytest.raises(TypeError, match="SimCLROptions"):
        build_method("simclr", backbone, "64-32", METHODS["vicreg"].options())
    with pytest.raises(ValueError, match="version"):
        build_method("moco", backbone, "64-32", {"version": "v4", "queue_size": 8})


def test_projector_spec_overrides_the_default():
    backbone = build_backbone("small_cnn", cifar_stem=True)
    given = build_method("simclr", backbone, "64-48")
    default = build_method("simclr", backbone, "")  # "" means SimCLR's 2048-2048-128
    assert [m.out_features for m in given.projector if isinstance(m, torch.nn.Linear)] == [64, 48]
    assert [m.out_features for m in default.projector
            if isinstance(m, torch.nn.Linear)] == [2048, 2048, 128]


def test_byol_momentum_follows_the_cosine_schedule():
    total = 50
    byol = _method("byol")
    sched = cosine(0.996, 1.0, total)
    student = [p.detach() for p in byol.backbone.parameters()]
    with torch.no_grad():  # make the student differ from the teacher
        for p in byol.backbone.parameters():
            p.add_(torch.randn_like(p))
    teacher = list(byol.teacher["backbone"].parameters())
    old = [p.detach().clone() for p in teacher]
    byol.after_step(0, total)
    assert byol.momentum == pytest.approx(0.996)
    for t, o, s in zip(teacher, old, student):
        torch.testing.assert_close(t, 0.996 * o + 0.004 * s)
    byol.after_step(20, total)
    assert byol.momentum == pytest.approx(sched[20]) and 0.996 < byol.momentum < 1.0
    frozen = [p.detach().clone() for p in teacher]
    byol.after_step(total - 1, total)
    assert byol.momentum == 1.0  # BYOL section 3.2: tau ends at exactly 1, the target stops
    assert all(torch.equal(t, f) for t, f in zip(teacher, frozen))


def test_dino_teacher_temperature_warms_up():
    dino = _method("dino")
    total = 100
    sched = dino.teacher_temp_schedule(total)
    assert sched.shape == (total,)
    assert sched[0] == pytest.approx(0.04) and sched[29] == pytest.approx(0.07)
    assert (sched[30:] == 0.07).all() and (sched[1:30] > sched[:29]).all()  # 30% of the steps
    out = dino(_views(dino))
    assert out.logs["teacher_temp"] == pytest.approx(0.04)  # step 0, before any after_step
    dino.after_step(9, total)  # the next forward is step 10
    out = dino(_views(dino))
    assert out.logs["teacher_temp"] == pytest.approx(sched[10], rel=1e-6)
    dino.after_step(total - 1, total)
    assert float(dino.teacher_temp) == pytest.approx(0.07)


def test_dino_teacher_sees_only_the_global_views():
    dino = _method("dino")
    seen = []
    dino.teacher["backbone"].register_forward_hook(lambda m, i, o: seen.append(i[0].shape[-1]))
    dino(_views(dino))  # 2 global 32 px + 2 local 16 px
    assert seen == [32]  # one call on the two global views, none on the locals


def test_dino_center_moves_towards_the_teacher_mean():
    dino = _method("dino")
    assert float(dino.center.abs().sum()) == 0
    dino(_views(dino))
    assert float(dino.center.abs().sum()) > 0
    dino.eval()
    center = dino.center.clone()
    dino(_views(dino))
    assert torch.equal(dino.center, center), "evaluation must not move the centre"


def test_moco_v2_queue_fills_and_wraps():
    moco = _method("moco", {"queue_size": 12})
    assert moco.queue.shape == (12, 32) and int(moco.queue_ptr) == 0

    def keys(views):
        with torch.no_grad():
            t = moco.teacher
            return F.normalize(t["projector"](t["backbone"](views[1])), dim=1)  # (B, D)

    first = _views(moco, seed=0)
    k1 = keys(first)
    moco(first)
    assert int(moco.queue_ptr) == 8
    torch.testing.assert_close(moco.queue[:8], k1)
    second = _views(moco, seed=1)
    k2 = keys(second)
    old_tail = moco.queue[8:].clone()
    moco(second)
    assert int(moco.queue_ptr) == 4  # 8 + 8 wraps around 12
    torch.testing.assert_close(moco.queue[8:], k2[:4])
    torch.testing.assert_close(moco.queue[:4], k2[4:])
    torch.testing.assert_close(moco.queue[4:8], k1[4:])  # not yet overwritten
    assert not torch.allclose(old_tail, moco.queue[8:])


def test_nnclr_support_set_takes_view_0():
    nnclr = _method("nnclr", {"queue_size": 16})
    out = nnclr(_views(nnclr))
    assert int(nnclr.queue_ptr) == 8
    torch.testing.assert_close(nnclr.queue[:8], F.normalize(out.embeddings, dim=1))


def test_dino_prototypes_frozen_for_the_first_steps():
    """main_dino.py --freeze_last_layer: the prototype layer gets no update early on; the rest
    of the network trains from the first step."""
    dino = _method("dino", {"num_prototypes": 64, "freeze_last_layer": 0.2})  # 2 of 10 steps
    opt = torch.optim.SGD(dino.parameters_to_optimize(), lr=0.1)
    frozen = dino.prototypes.weight.detach().clone()
    conv = _first_conv(dino.backbone).weight.detach().clone()
    for step in range(TOTAL_STEPS):
        _step(dino, opt, step)
        dino.before_optimizer_step(step, TOTAL_STEPS)
        opt.step()
        dino.after_step(step, TOTAL_STEPS)
        if step == 1:
            assert torch.equal(dino.prototypes.weight, frozen)
            assert not torch.equal(_first_conv(dino.backbone).weight, conv)
    assert not torch.equal(dino.prototypes.weight, frozen)
