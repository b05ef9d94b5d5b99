"""SwAV: Sinkhorn-Knopp and the swapped-prediction loss against references written from the paper
(Caron et al. 2020, eq. 2-6 and the algorithm of appendix A.1), then the method's own state:
codes from global views only, the queue, frozen prototypes, checkpoints. The distributed checks
are in tests/test_distributed.py (the loss) and tests/test_distributed_methods.py (the method)."""

from __future__ import annotations

import math

import pytest
import torch

import jessl.methods.swav as swav_module
from jessl import losses as L
from jessl.methods import build_method
from jessl.models.backbones import SmallCNN

from .test_losses import assert_same, leaf, rand

N, K = 6, 4  # samples, prototypes


def unit(x):
    return x / x.norm(dim=1, keepdim=True)


# ---------------------------------------------------------------- references


def ref_sinkhorn(scores, eps, iterations):
    """Appendix A.1's algorithm as loops over the K x N matrix Q = exp(C^T Z / eps): normalise
    to total mass 1, then alternately give each prototype (row) mass 1/K and each sample
    (column) mass 1/N (eq. 4); the codes are the columns rescaled to sum to 1."""
    n, k = len(scores), len(scores[0])
    q = [[math.exp(float(scores[j][i]) / eps) for j in range(n)] for i in range(k)]
    total = sum(sum(row) for row in q)
    q = [[v / total for v in row] for row in q]
    for _ in range(iterations):
        for i in range(k):
            r = sum(q[i])
            q[i] = [v / (k * r) for v in q[i]]
        for j in range(n):
            c = sum(q[i][j] for i in range(k))
            for i in range(k):
                q[i][j] /= n * c
    return torch.tensor([[q[i][j] / sum(q[a][j] for a in range(k)) for i in range(k)]
                         for j in range(n)], dtype=torch.float64)


def ref_swav(logits, codes, t):
    """Eq. 2 and 6: sum over global i and views v != i of -sum_k q_i(k) log p_v(k), p_v the
    softmax of z_v . c / t; averaged over samples and over the 2 (V - 1) pairs."""
    total, pairs = 0.0, 0
    for i, q in enumerate(codes):
        for v, s in enumerate(logits):
            if v == i:
                continue
            for b in range(s.shape[0]):
                denom = sum(torch.exp(s[b, k] / t) for k in range(s.shape[1]))
                total = total - sum(q[b, k] * torch.log(torch.exp(s[b, k] / t) / denom)
                                    for k in range(s.shape[1])) / s.shape[0]
            pairs += 1
    return total / pairs


# ---------------------------------------------------------------- Sinkhorn-Knopp


@pytest.mark.parametrize("n,k,eps,iterations", [(N, K, 0.05, 3), (N, K, 0.5, 1), (N, K, 0.3, 0),
                                                 (3, 7, 0.05, 3)])  # fewer samples than K
def test_sinkhorn_matches_the_papers_loop(n, k, eps, iterations):
    scores = unit(rand(n, 5, seed=1)) @ unit(rand(k, 5, seed=2)).T  # cosine scores (n, k)
    got = L.sinkhorn_knopp(scores, eps, iterations)
    torch.testing.assert_close(got, ref_sinkhorn(scores.tolist(), eps, iterations),
                               rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(got.sum(dim=1), torch.ones(n, dtype=torch.float64))


def test_sinkhorn_converges_to_the_equal_partition_of_eq_5():
    """Many iterations reach the polytope of eq. 4 (each prototype N/K samples, each sample
    one unit) with Q* = Diag(u) exp(C^T Z / eps) Diag(v) (eq. 5): the unique optimum of eq. 3."""
    scores = unit(rand(N, 5, seed=3)) @ unit(rand(K, 5, seed=4)).T
    q = L.sinkhorn_knopp(scores, 0.5, 500)  # (N, K)
    torch.testing.assert_close(q.sum(dim=1), torch.ones(N, dtype=torch.float64))
    torch.testing.assert_close(q.sum(dim=0), torch.full((K,), N / K, dtype=torch.float64))
    resid = torch.log(q) - scores / 0.5  # log v_n + log u_k: rank-one additive, so double
    resid = resid - resid.mean(dim=0) - resid.mean(dim=1, keepdim=True) + resid.mean()
    assert resid.abs().max() < 1e-9  # centring leaves nothing
    # SwAV's three iterations come close to those marginals
    q3 = L.sinkhorn_knopp(scores, 0.5, 3)
    assert torch.allclose(q3.sum(dim=0), q.sum(dim=0), atol=0.05)


def test_sinkhorn_is_stable_in_half_precision_inputs():
    scores = unit(rand(N, 5, seed=5)) @ unit(rand(K, 5, seed=6)).T
    got = L.sinkhorn_knopp(scores.to(torch.bfloat16), 0.05, 3)
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), L.sinkhorn_knopp(scores), atol=0.05, rtol=0)


# ---------------------------------------------------------------- the swapped prediction


def test_swav_loss_matches_reference():
    logits = [leaf(N, K, seed=s) for s in (7, 8, 9, 10)]  # 2 global + 2 local views
    codes = [L.sinkhorn_knopp(x.detach(), 0.05, 3) for x in logits[:2]]
    for t in (0.1, 0.5):
        assert_same(lambda *x: L.swav_loss(list(x), codes, t),
                    lambda *x: ref_swav(list(x), codes, t), logits)
    two = assert_same(lambda a, b: L.swav_loss([a, b], codes, 0.1),  # eq. 1: one pair each way
                      lambda a, b: ref_swav([a, b], codes, 0.1), logits[:2])
    assert two > 0


def test_codes_get_no_gradient():
    logits = [leaf(N, K, seed=s) for s in (11, 12)]
    codes = [q.requires_grad_(True) for q in (rand(N, K, seed=13).softmax(1),
                                              rand(N, K, seed=14).softmax(1))]
    L.swav_loss(logits, codes).backward()
    assert all(q.grad is None for q in codes) and logits[0].grad.abs().sum() > 0


# ---------------------------------------------------------------- the method

B, TOTAL = 8, 10
TINY = {"num_prototypes": 16, "queue_length": 16, "queue_start": 0.0}


def method(**opts):
    torch.manual_seed(0)
    return build_method("swav", SmallCNN(widths=(4, 8)), "16-32", {**TINY, **opts})


def views(seed=0, n_local=2):
    g = torch.Generator().manual_seed(seed)
    sizes = [32, 32] + [16] * n_local
    return [torch.randn(B, 3, s, s, generator=g) for s in sizes]


def train_steps(m, steps, total=TOTAL, start=0):
    opt = torch.optim.SGD(m.parameters_to_optimize(), lr=0.5, momentum=0.9)
    outs = []
    for step in range(start, start + steps):
        opt.zero_grad(set_to_none=True)
        out = m(views(step))
        out.loss.backward()
        m.before_optimizer_step(step, total)
        opt.step()
        m.after_step(step, total)
        outs.append(out)
    return outs


def test_codes_come_from_global_views_only(monkeypatch):
    m = method(queue_length=0)
    seen = []
    real = swav_module.sinkhorn_knopp
    monkeypatch.setattr(swav_module, "sinkhorn_knopp",
                        lambda s, *a: seen.append(s.clone()) or real(s, *a))
    logits = []
    m.prototypes.register_forward_hook(lambda mod, i, o: logits.append(o.detach()))
    xs = views()
    m(xs)
    scores = logits[0].split(B)  # every view's scores, from one call over all views
    assert len(scores) == 4 and len(seen) == 2  # one Sinkhorn per global view, none for the locals
    for got, want in zip(seen, scores[:2]):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    # new local crops change the predictions (the loss), never the targets (in eval mode, so
    # the projector's BatchNorm, which sees every view in training, as SwAV's, couples nothing)
    m.eval()
    seen.clear()
    other = xs[:2] + views(seed=99)[2:]
    loss_a, loss_b = m(xs).loss, m(other).loss
    torch.testing.assert_close(seen[0], seen[2])
    torch.testing.assert_close(seen[1], seen[3])
    assert not torch.allclose(loss_a, loss_b)


def test_two_views_without_local_crops():
    out = method()(views(n_local=0))
    assert torch.isfinite(out.loss) and out.features.shape[0] == B


def test_queue_starts_fills_and_joins_the_codes(monkeypatch):
    m = method(queue_start=0.3)  # steps 0-2 without a queue; pushes from step 3 on
    outs = train_steps(m, 3)
    assert not m.queue.any() and int(m.queue_ptr) == 0 and bool(m.queue_on)
    assert [o.logs["queue"] for o in outs] == [0.0, 0.0, 0.0]
    outs = train_steps(m, 2, start=3)  # 2 x 8 embeddings fill the 16 rows
    assert [o.logs["queue"] for o in outs] == [0.0, 0.0] and m.queue_full()
    assert int(m.queue_ptr) == 0
    torch.testing.assert_close(m.queue.norm(dim=2), torch.ones(2, 16))
    queue = m.queue.clone()

    seen, logits = [], []
    real = swav_module.sinkhorn_knopp
    monkeypatch.setattr(swav_module, "sinkhorn_knopp",
                        lambda s, *a: seen.append(s.clone()) or real(s, *a))
    m.prototypes.register_forward_hook(lambda mod, i, o: logits.append((i[0][:B], o[:B])))
    out = m(views(5))
    assert out.logs["queue"] == 1.0
    z0, scores0 = logits[0]  # view 0's unit embeddings and scores
    want = torch.cat([queue[0] @ m.prototypes.weight.T, scores0]).detach()  # queue first
    torch.testing.assert_close(seen[0], want)  # (L + B, K)
    # the batch went in after its codes, at the oldest rows
    torch.testing.assert_close(m.queue[0, :B], z0.detach())
    torch.testing.assert_close(m.queue[:, B:], queue[:, B:])
    m.eval()
    before = m.queue.clone()
    m(views(6))
    assert torch.equal(m.queue, before), "evaluation must not push to the queue"


def test_no_queue_when_its_length_is_zero():
    m = method(queue_length=0)
    outs = train_steps(m, 2)
    assert m.queue.shape == (2, 0, 32) and not m.queue_full()
    assert all(o.logs["queue"] == 0.0 for o in outs)


def test_prototypes_frozen_then_trained_and_kept_unit():
    m = method(freeze_prototypes=0.2)  # steps 0 and 1 of 10
    frozen = m.prototypes.weight.detach().clone()
    torch.testing.assert_close(frozen.norm(dim=1), torch.ones(16))  # unit from the start
    conv = next(p for p in m.backbone.parameters() if p.dim() == 4).detach().clone()
    train_steps(m, 2)
    torch.testing.assert_close(m.prototypes.weight, frozen, rtol=0, atol=1e-7)
    assert not torch.equal(next(p for p in m.backbone.parameters() if p.dim() == 4), conv)
    train_steps(m, 1, start=2)
    assert (m.prototypes.weight - frozen).abs().max() > 1e-3, "prototypes never trained"
    torch.testing.assert_close(m.prototypes.weight.norm(dim=1), torch.ones(16))


def test_checkpoint_resumes_the_queue():
    a = method()
    train_steps(a, 3)  # the queue is full after 2 steps and used in the 3rd
    state = {k: v.clone() for k, v in a.state_dict().items()}
    assert state["queue"].any() and int(state["queue_ptr"]) == 8 and bool(state["queue_on"])
    b = method(queue_start=0.5)  # a fresh, different start: the state must carry "on"
    b.load_state_dict(state)
    assert torch.equal(b.queue, a.queue) and b.queue_full()
    xs = views(7)
    out_a, out_b = a(xs), b(xs)
    assert out_a.logs["queue"] == out_b.logs["queue"] == 1.0
    torch.testing.assert_close(out_a.loss, out_b.loss, rtol=0, atol=0)
    torch.testing.assert_close(a.queue, b.queue, rtol=0, atol=0)


def test_bad_options_are_clear_errors():
    with pytest.raises(ValueError, match="queue_length >= 0"):
        method(queue_length=-1)
    with pytest.raises(ValueError, match="positive epsilon"):
        method(epsilon=0.0)


def test_swav_preset_has_the_papers_crops():
    """SwAV's own multi-crop (appendix A.2, main_swav.py): 2 global crops of scale 0.14-1 and 6
    local ones of 0.05-0.14, all with SimCLR's distortion at strength 1, not DINO's scales."""
    from jessl.data.views import resolve_views
    from jessl.methods import METHODS
    views = resolve_views(METHODS["swav"].views)
    assert [v.scale for v in views] == [(0.14, 1.0)] * 2 + [(0.05, 0.14)] * 6
    assert [v.size for v in views] == [224] * 2 + [96] * 6
    assert all((v.brightness, v.contrast, v.saturation, v.hue) == (0.8, 0.8, 0.8, 0.2)
               for v in views)
    assert [v.size for v in resolve_views("swav_cifar")] == [32] * 2 + [16] * 6
