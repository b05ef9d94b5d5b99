"""One contract test over every registered method (timm-style), then each method's own state:
BYOL's momentum schedule, DINO's teacher temperature, MoCo v2's queue."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from jessl.methods import METHODS, build_method
from jessl.models import build_backbone
from jessl.train.schedules import cosine

TOTAL_STEPS = 10
BATCH = 8
# shrink the state that is sized for ImageNet, so the contract test stays tiny
TINY_OPTS = {"moco": {"queue_size": 32}, "nnclr": {"queue_size": 32},
             "dino": {"num_prototypes": 64}, "swav": {"num_prototypes": 64, "queue_length": 16,
                                                     "queue_start": 0.0}}
CASES = [(name, TINY_OPTS.get(name, {})) for name in METHODS]
CASES.append(("moco", {"queue_size": 32, "version": "v3"}))
WITH_TEACHER = {"byol", "moco", "dino"}


def _method(name: str, opts: dict | None = None, projector: str = "64-32"):
    torch.manual_seed(0)
    return build_method(name, build_backbone("small_cnn", cifar_stem=True), projector,
                        dict(opts if opts is not None else TINY_OPTS.get(name, {})))


def _views(method, seed: int = 0) -> list[torch.Tensor]:
    """Random views in the method's layout: 2 global 32 px + 2 local 16 px for multi-crop."""
    g = torch.Generator().manual_seed(seed)
    sizes = [32, 32, 16, 16] if method.num_views is None else [32] * method.num_views
    return [torch.randn(BATCH, 3, s, s, generator=g) for s in sizes]


def _first_conv(module: torch.nn.Module) -> torch.nn.Conv2d:
    return next(m for m in module.modules() if isinstance(m, torch.nn.Conv2d))


def _step(method, opt, step: int):
    """Forward and backward on the views of `step`; the optimizer step is the caller's."""
    opt.zero_grad(set_to_none=True)
    out = method(_views(method, seed=step))
    out.loss.backward()
    return out


def _two_losses(method) -> list[float]:
    opt = torch.optim.SGD(method.parameters_to_optimize(), lr=0.1, momentum=0.9)
    losses = []
    for step in range(2):
        losses.append(_step(method, opt, step).loss.item())
        opt.step()
        method.after_step(step, TOTAL_STEPS)
    return losses


@pytest.mark.parametrize("name,opts", CASES,
                         ids=[n + ("-" + o["version"] if "version" in o else "") for n, o in CASES])
def test_method_contract(name, opts):
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
    out = _step(method, opt, 0)
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
    second = _step(method, opt, 1)
    assert torch.isfinite(second.loss)

    assert _two_losses(_method(name, opts)) == [out.loss.item(), second.loss.item()], \
        "same seed, different losses"


def test_wrong_number_of_views_is_a_clear_error():
    method = _method("simclr")
    with pytest.raises(ValueError, match="takes 2 views"):
        method([torch.randn(2, 3, 32, 32)] * 3)


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
