"""LARS against updates computed by hand in NumPy; parameter groups; the optimizer builder."""

import io

import numpy as np
import pytest
import torch
from torch import nn

from jessl.train.optim import LARS, build_optimizer, param_groups, set_hyperparams


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)).double()


def backward(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(8, 3, generator=g, dtype=torch.float64)
    model.zero_grad()
    (model(x) ** 2).mean().backward()


def lars_by_hand(w, grad, mu, lr, momentum, wd, eta, excluded):
    """One LARS step (vicreg / barlowtwins `LARS.step`) in NumPy."""
    d = grad.copy()
    if not excluded:
        d = d + wd * w
        pn, dn = np.linalg.norm(w), np.linalg.norm(d)
        d = d * (eta * pn / dn if pn > 0 and dn > 0 else 1.0)
    mu = momentum * mu + d
    return w - lr * mu, mu


def test_lars_two_steps_match_hand_computation():
    model = tiny_model()
    lr, momentum, wd, eta = 0.7, 0.9, 1e-2, 1e-3
    opt = LARS(param_groups(model, wd), lr=lr, momentum=momentum, eta=eta)
    names = [n for n, _ in model.named_parameters()]
    w = {n: p.detach().numpy().copy() for n, p in model.named_parameters()}
    mu = {n: np.zeros_like(v) for n, v in w.items()}
    for step in range(2):
        backward(model, seed=1 + step)
        gr = {n: p.grad.numpy().copy() for n, p in model.named_parameters()}
        opt.step()
        for n in names:
            excluded = w[n].ndim == 1  # 0.bias, 1.weight, 1.bias, 3.bias
            w[n], mu[n] = lars_by_hand(w[n], gr[n], mu[n], lr, momentum, wd, eta, excluded)
        for n, p in model.named_parameters():
            np.testing.assert_allclose(p.detach().numpy(), w[n], rtol=1e-12, atol=1e-15, err_msg=n)


def test_lars_trust_ratio_on_weights_only():
    model = tiny_model()
    lr, wd, eta = 1.0, 0.5, 1e-3
    opt = LARS(model.parameters(), lr=lr, weight_decay=wd, eta=eta)  # plain params: exclude_1d does it
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for n, p in model.named_parameters():
        if p.ndim == 1:
            # No weight decay on biases / norm params: zero gradient means no movement at all.
            assert torch.equal(p, before[n]), n
        else:
            # d = wd * w, trust = eta * |w| / |wd * w| = eta / wd, so w <- w - lr * eta * w.
            torch.testing.assert_close(p, before[n] * (1 - lr * eta))


def test_lars_excluded_params_are_plain_momentum_sgd():
    w = nn.Parameter(torch.tensor([[3.0, 4.0]], dtype=torch.float64))
    b = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = LARS([{"params": [w], "no_decay": True}, {"params": [b]}], lr=0.1, weight_decay=0.3)
    w.grad = torch.tensor([[1.0, 1.0]], dtype=torch.float64)
    b.grad = torch.tensor([0.5, 0.5], dtype=torch.float64)
    opt.step()
    torch.testing.assert_close(w.detach(), torch.tensor([[2.9, 3.9]], dtype=torch.float64))
    torch.testing.assert_close(b.detach(), torch.tensor([0.95, -2.05], dtype=torch.float64))
    # A zero-norm weight keeps the raw update (trust 1), as the references' torch.where does.
    z = nn.Parameter(torch.zeros(2, 2, dtype=torch.float64))
    z.grad = torch.ones(2, 2, dtype=torch.float64)
    LARS([z], lr=0.1).step()
    torch.testing.assert_close(z.detach(), torch.full((2, 2), -0.1, dtype=torch.float64))


def test_param_groups_split_by_dimension():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2), nn.LayerNorm(2))
    decay, no_decay = param_groups(model, 5e-4)
    assert decay["weight_decay"] == 5e-4 and no_decay["weight_decay"] == 0.0 and no_decay["no_decay"]
    assert {id(p) for p in decay["params"]} == {id(model[0].weight), id(model[3].weight)}
    assert len(no_decay["params"]) == 6  # conv bias, bn weight+bias, linear bias, ln weight+bias


@pytest.mark.parametrize("name", ["sgd", "adamw", "lars"])
def test_build_optimizer_respects_groups(name):
    model = tiny_model()
    opt = build_optimizer(name, param_groups(model, 0.1), lr=0.5, weight_decay=0.1, momentum=0.8)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    if name == "adamw":
        assert opt.param_groups[0]["betas"] == (0.8, 0.999)
    else:
        assert opt.param_groups[0]["momentum"] == 0.8
    # One step on zero gradients: only decayed weights move.
    before = [p.detach().clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for p, b in zip(model.parameters(), before):
        assert torch.equal(p, b) == (p.ndim == 1)


def test_build_optimizer_types_and_errors():
    params = list(tiny_model().parameters())
    assert isinstance(build_optimizer("sgd", params, 0.1, 0.0), torch.optim.SGD)
    assert isinstance(build_optimizer("adamw", params, 0.1, 0.0), torch.optim.AdamW)
    assert isinstance(build_optimizer("lars", params, 0.1, 0.0), LARS)
    with pytest.raises(ValueError):
        build_optimizer("adam", params, 0.1, 0.0)


def test_set_hyperparams_skips_no_decay_group():
    model = tiny_model()
    for name in ("sgd", "adamw", "lars"):
        opt = build_optimizer(name, param_groups(model, 0.1), lr=0.5, weight_decay=0.1)
        set_hyperparams(opt, lr=0.02, momentum=0.85, weight_decay=0.3)
        assert [g["lr"] for g in opt.param_groups] == [0.02, 0.02]
        assert [g["weight_decay"] for g in opt.param_groups] == [0.3, 0.0]
        beta1 = [g["betas"][0] if name == "adamw" else g["momentum"] for g in opt.param_groups]
        assert beta1 == [0.85, 0.85]


def test_lars_state_dict_round_trip():
    model = tiny_model()
    opt = LARS(param_groups(model, 1e-2), lr=0.1)
    backward(model)
    opt.step()
    clone = tiny_model()
    clone.load_state_dict(model.state_dict())
    opt2 = LARS(param_groups(clone, 1e-2), lr=0.1)
    buf = io.BytesIO()  # through bytes, as a checkpoint would (a live state_dict shares its tensors)
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    opt2.load_state_dict(torch.load(buf))
    backward(model, seed=5)
    backward(clone, seed=5)
    opt.step()
    opt2.step()  # momentum buffers carried over: identical second step
    for a, b in zip(model.parameters(), clone.parameters()):
        assert torch.equal(a, b)


def test_fixed_lr_groups_keep_their_lr():
    """SimSiam's predictor: its own groups, decay split kept, and the schedule passes them by."""
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))
    fixed = list(model[2].parameters())
    groups = param_groups(model, 0.1, fixed_lr=fixed, fixed_lr_value=0.5)  # the peak
    assert [(g.get("no_decay", False), g.get("fixed_lr", False)) for g in groups] == \
        [(False, False), (True, False), (False, True), (True, True)]
    assert {id(p) for g in groups if g.get("fixed_lr") for p in g["params"]} == \
        {id(p) for p in fixed}
    assert groups[2]["weight_decay"] == 0.1 and groups[3]["weight_decay"] == 0.0
    opt = build_optimizer("sgd", groups, lr=0.0, weight_decay=0.1)
    set_hyperparams(opt, lr=0.02, weight_decay=0.3)
    assert [g["lr"] for g in opt.param_groups] == [0.02, 0.02, 0.5, 0.5]
    assert [g["weight_decay"] for g in opt.param_groups] == [0.3, 0.0, 0.3, 0.0]
    assert len(param_groups(model, 0.1)) == 2  # no fixed parameters: no extra groups
