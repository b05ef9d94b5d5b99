"""Each loss against an independent reference written from the paper's equation.

The references are deliberately in another style: float64, explicit Python loops over samples and
dimensions, cosine similarity and softmax spelled out with exp / sum, no torch.nn.functional. They
stay differentiable so autograd gives the reference gradient, compared with the library's.
"""

import math

import numpy as np
import pytest
import torch

from jessl import losses as L
from jessl import queues as Q

B, D = 6, 5


def rand(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def leaf(*shape, seed=0):
    return rand(*shape, seed=seed).requires_grad_(True)


def grads(fn, inputs):
    """Value and d value / d inputs (zeros where an input gets no gradient)."""
    out = fn(*inputs)
    gs = torch.autograd.grad(out, inputs, allow_unused=True)
    return out.detach(), [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, gs)]


def assert_same(fn_lib, fn_ref, inputs, rtol=1e-9, atol=1e-10):
    v_lib, g_lib = grads(fn_lib, inputs)
    v_ref, g_ref = grads(fn_ref, inputs)
    assert torch.allclose(v_lib, v_ref, rtol=rtol, atol=atol), (v_lib, v_ref)
    for a, b in zip(g_lib, g_ref):
        assert torch.allclose(a, b, rtol=1e-7, atol=1e-9), (a, b)
    return v_lib


# ---------------------------------------------------------------- references, one per equation


def cos(a, b):
    dot = sum(a[k] * b[k] for k in range(len(a)))
    na = torch.sqrt(sum(a[k] * a[k] for k in range(len(a))))
    nb = torch.sqrt(sum(b[k] * b[k] for k in range(len(b))))
    return dot / (na * nb)


def ref_nt_xent(z1, z2, t, decoupled=False):
    # SimCLR eq. 1: l(i, j) = -log exp(s_ij / t) / sum_{k != i} exp(s_ik / t), over all 2N anchors;
    # decoupled: DCL (Yeh et al. 2022) eq. 6, the positive j out of the denominator as well.
    views = [z1[i] for i in range(len(z1))] + [z2[i] for i in range(len(z2))]
    n = len(z1)
    total = 0.0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        skip = (i, j) if decoupled else (i,)
        denom = sum(torch.exp(cos(views[i], views[k]) / t) for k in range(2 * n) if k not in skip)
        total = total - torch.log(torch.exp(cos(views[i], views[j]) / t) / denom)
    return total / (2 * n)


def ref_vicreg(z1, z2, lam, mu, nu, gamma=1.0, eps=1e-4):
    # VICReg eqs. 1-6 with the reference code's normalisations.
    n, d = z1.shape
    inv = sum((z1[b, k] - z2[b, k]) ** 2 for b in range(n) for k in range(d)) / (n * d)
    var = 0.0
    cov = 0.0
    for z in (z1, z2):
        mean = [sum(z[b, k] for b in range(n)) / n for k in range(d)]
        c = [[sum((z[b, j] - mean[j]) * (z[b, k] - mean[k]) for b in range(n)) / (n - 1) for k in range(d)]
             for j in range(d)]
        var = var + sum(torch.clamp(gamma - torch.sqrt(c[k][k] + eps), min=0) for k in range(d)) / d / 2
        cov = cov + sum(c[j][k] ** 2 for j in range(d) for k in range(d) if j != k) / d
    return lam * inv + mu * var + nu * cov, inv, var, cov


def ref_barlow(z1, z2, lambd, eps=1e-5):
    # Barlow Twins eq. 2: C_ij = sum_b zA_bi zB_bj / N of per-dimension standardised embeddings.
    n, d = z1.shape

    def standardise(z):
        cols = []
        for k in range(d):
            m = sum(z[b, k] for b in range(n)) / n
            v = sum((z[b, k] - m) ** 2 for b in range(n)) / n  # biased, as BatchNorm
            cols.append([(z[b, k] - m) / torch.sqrt(v + eps) for b in range(n)])
        return cols  # cols[k][b]

    a, b_ = standardise(z1), standardise(z2)
    loss = 0.0
    for i in range(d):
        for j in range(d):
            c = sum(a[i][b] * b_[j][b] for b in range(n)) / n
            loss = loss + ((1 - c) ** 2 if i == j else lambd * c ** 2)
    return loss


def ref_neg_cosine(p, z):
    z = z.detach()
    return sum(2 - 2 * cos(p[i], z[i]) for i in range(len(p))) / len(p)


def ref_moco(q, k, queue, t):
    # MoCo eq. 1: -log exp(q.k+/t) / (exp(q.k+/t) + sum_queue exp(q.k-/t)), cosine similarities.
    k, queue = k.detach(), queue.detach()
    total = 0.0
    for i in range(len(q)):
        pos = torch.exp(cos(q[i], k[i]) / t)
        neg = sum(torch.exp(cos(q[i], queue[m]) / t) for m in range(len(queue)))
        total = total - torch.log(pos / (pos + neg))
    return total / len(q)


def ref_moco_v3(q1, q2, k1, k2, t):
    # MoCo v3 Algorithm 1: ctr(q, k) = CE(q k^T / t, diagonal) * 2t; loss ctr(q1, k2) + ctr(q2, k1).
    def ctr(q, k):
        k = k.detach()
        total = 0.0
        for i in range(len(q)):
            denom = sum(torch.exp(cos(q[i], k[j]) / t) for j in range(len(k)))
            total = total - torch.log(torch.exp(cos(q[i], k[i]) / t) / denom)
        return total / len(q) * 2 * t

    return ctr(q1, k2) + ctr(q2, k1)


def ref_dino(students, teachers, center, ts, tt):
    # DINO eq. 3: sum over (teacher global view x, student view x' != x) of H(P_t(x), P_s(x')), mean.
    def softmax(v, temp):
        e = [torch.exp(v[k] / temp) for k in range(len(v))]
        s = sum(e)
        return [x / s for x in e]

    total, pairs = 0.0, 0
    for iq, t in enumerate(teachers):
        for v, s in enumerate(students):
            if v == iq:
                continue
            h = 0.0
            for b in range(len(t)):
                pt = softmax(t[b].detach() - center[0], tt)
                ps = softmax(s[b], ts)
                h = h - sum(pt[k] * torch.log(ps[k]) for k in range(len(pt)))
            total = total + h / len(t)
            pairs += 1
    return total / pairs


def ref_nnclr(z1, z2, support, t, p1=None, p2=None):
    # NNCLR eq. 2 (cookbook fig. 3), symmetrised; NN by smallest L2 distance of unit vectors.
    p1 = z1 if p1 is None else p1
    p2 = z2 if p2 is None else p2
    s = support.detach().numpy()
    s = s / np.linalg.norm(s, axis=1, keepdims=True)

    def nn(z):
        out = []
        for row in z.detach().numpy():
            u = row / np.linalg.norm(row)
            out.append(s[int(np.argmin(((s - u) ** 2).sum(axis=1)))])
        return torch.tensor(np.array(out))

    def one_way(anchor_nn, other):
        total = 0.0
        for i in range(len(other)):
            denom = sum(torch.exp(cos(anchor_nn[i], other[j]) / t) for j in range(len(other)))
            total = total - torch.log(torch.exp(cos(anchor_nn[i], other[i]) / t) / denom)
        return total / len(other)

    return 0.5 * (one_way(nn(z1), p2) + one_way(nn(z2), p1))


def ref_instance(a, p, n, t):
    # Our reading of FFCV-SSL section 3.4 (see instance_info_nce): both noise views are anchors.
    total = 0.0
    for i in range(len(a)):
        sap, san, spn = cos(a[i], p[i]) / t, cos(a[i], n[i]) / t, cos(p[i], n[i]) / t
        total = total - torch.log(torch.exp(sap) / (torch.exp(sap) + torch.exp(san)))
        total = total - torch.log(torch.exp(sap) / (torch.exp(sap) + torch.exp(spn)))
    return total / (2 * len(a))


# ---------------------------------------------------------------- value and gradient vs reference


@pytest.mark.parametrize("t", [0.1, 0.5])
def test_info_nce_matches_reference(t):
    inputs = [leaf(B, D, seed=1), leaf(B, D, seed=2)]
    assert_same(lambda a, b: L.info_nce(a, b, t), lambda a, b: ref_nt_xent(a, b, t), inputs)


@pytest.mark.parametrize("t", [0.1, 0.5])
def test_decoupled_info_nce_matches_reference(t):
    inputs = [leaf(B, D, seed=1), leaf(B, D, seed=2)]
    v = assert_same(lambda a, b: L.info_nce(a, b, t, decoupled=True),
                    lambda a, b: ref_nt_xent(a, b, t, decoupled=True), inputs)
    # the positive out of the denominator: always below NT-Xent (its denominator is larger)
    assert v < L.info_nce(*(x.detach() for x in inputs), t)


def test_vicreg_matches_reference():
    inputs = [leaf(B, D, seed=3), leaf(B, D, seed=4) * 0.3]
    inputs[1] = inputs[1].detach().requires_grad_(True)
    weights = (25.0, 25.0, 1.0)
    out = L.vicreg(*inputs)
    ref = ref_vicreg(*inputs, *weights)
    for got, want in zip(out, ref):
        assert torch.allclose(got, want, rtol=1e-9), (got, want)
    # Both branches below gamma=1 partly (one scaled by 0.3), so the variance hinge is active.
    assert out.variance > 0
    assert_same(lambda a, b: L.vicreg(a, b).loss, lambda a, b: ref_vicreg(a, b, *weights)[0], inputs)
    # The weights enter where they should.
    alt = L.vicreg(*inputs, sim_weight=1.0, var_weight=2.0, cov_weight=3.0, gamma=1.5)
    ref_alt = ref_vicreg(*inputs, 1.0, 2.0, 3.0, gamma=1.5)
    assert torch.allclose(alt.loss, ref_alt[0], rtol=1e-9)


def test_barlow_twins_matches_reference():
    inputs = [leaf(B, D, seed=5), leaf(B, D, seed=6)]
    assert_same(lambda a, b: L.barlow_twins(a, b, 0.0051), lambda a, b: ref_barlow(a, b, 0.0051), inputs)
    assert_same(lambda a, b: L.barlow_twins(a, b, 0.5), lambda a, b: ref_barlow(a, b, 0.5), inputs)


def test_neg_cosine_matches_reference_and_stops_gradient():
    inputs = [leaf(B, D, seed=7), leaf(B, D, seed=8)]
    _, (gp, gz) = grads(L.neg_cosine, inputs)
    assert_same(L.neg_cosine, ref_neg_cosine, inputs)
    assert gp.abs().sum() > 0 and torch.all(gz == 0)


def test_moco_info_nce_matches_reference():
    inputs = [leaf(B, D, seed=9), leaf(B, D, seed=10), leaf(7, D, seed=11)]
    assert_same(lambda q, k, m: L.moco_info_nce(q, k, m, 0.2), lambda q, k, m: ref_moco(q, k, m, 0.2), inputs)
    _, (gq, gk, gm) = grads(L.moco_info_nce, inputs)
    assert torch.all(gk == 0) and torch.all(gm == 0)  # keys and queue are targets


def test_moco_v3_matches_reference():
    inputs = [leaf(B, D, seed=s) for s in (12, 13, 14, 15)]
    for t in (1.0, 0.2):
        v = assert_same(lambda *x: L.moco_v3(*x, temperature=t), lambda *x: ref_moco_v3(*x, t), inputs)
    # The 2*tau factor: at tau=0.2 the raw cross-entropies are scaled by 0.4.
    q1, q2, k1, k2 = (x.detach() for x in inputs)
    raw = ref_moco_v3(q1, q2, k1, k2, 0.2) / 0.4
    assert torch.allclose(v / 0.4, raw)


def test_dino_loss_matches_reference():
    k = 7
    students = [leaf(B, k, seed=s) for s in (16, 17, 18, 19)]  # 2 global + 2 local
    teachers = [leaf(B, k, seed=s) for s in (20, 21)]
    center = rand(1, k, seed=22)
    lib = lambda *x: L.dino_loss(list(x[:4]), list(x[4:]), center, student_temp=0.1, teacher_temp=0.04)
    ref = lambda *x: ref_dino(list(x[:4]), list(x[4:]), center, 0.1, 0.04)
    assert_same(lib, ref, students + teachers)
    _, g = grads(lib, students + teachers)
    assert all(torch.all(gt == 0) for gt in g[4:])  # the teacher gets no gradient


def test_update_center_is_ema_of_teacher_mean():
    t1, t2, c = rand(B, 7, seed=23), rand(B, 7, seed=24), rand(1, 7, seed=25)
    want = 0.9 * c.numpy() + 0.1 * np.concatenate([t1.numpy(), t2.numpy()]).mean(axis=0)
    assert np.allclose(L.update_center(c, [t1, t2]).numpy(), want)
    assert np.allclose(L.update_center(c, torch.cat([t1, t2]), momentum=0.5).numpy(),
                       0.5 * c.numpy() + 0.5 * torch.cat([t1, t2]).mean(0).numpy())


def test_nnclr_matches_reference():
    support = rand(11, D, seed=26)
    z = [leaf(B, D, seed=27), leaf(B, D, seed=28)]
    assert_same(lambda a, b: L.nnclr(a, b, support, 0.1), lambda a, b: ref_nnclr(a, b, support, 0.1), z)
    p = [leaf(B, D, seed=29), leaf(B, D, seed=30)]
    assert_same(lambda a, b, c, d: L.nnclr(a, b, support, 0.1, p1=c, p2=d),
                lambda a, b, c, d: ref_nnclr(a, b, support, 0.1, c, d), z + p)
    _, g = grads(lambda a, b, c, d: L.nnclr(a, b, support, 0.1, p1=c, p2=d), z + p)
    assert torch.all(g[0] == 0) and torch.all(g[1] == 0) and g[2].abs().sum() > 0  # NN is a target


def test_instance_info_nce_matches_reference():
    inputs = [leaf(B, D, seed=31), leaf(B, D, seed=32), leaf(B, D, seed=33)]
    assert_same(lambda a, p, n: L.instance_info_nce(a, p, n, 0.2), lambda a, p, n: ref_instance(a, p, n, 0.2), inputs)


# ---------------------------------------------------------------- properties


def orthonormal_rows(n, d):
    q, _ = torch.linalg.qr(rand(d, d, seed=40))
    return q[:n]  # n <= d unit rows, pairwise orthogonal


def test_info_nce_limits():
    z = orthonormal_rows(4, 8)
    # Large temperature: every similarity counts the same, so the loss is log(2N - 1).
    assert math.isclose(L.info_nce(z, z, temperature=1e6).item(), math.log(7), rel_tol=1e-5)
    # Small temperature, identical views, orthogonal samples: the positive wins outright.
    assert L.info_nce(z, z, temperature=0.05).item() < 1e-6
    # Cosine similarity: the scale of the embeddings does not matter.
    a, b = rand(B, D, seed=41), rand(B, D, seed=42)
    assert torch.allclose(L.info_nce(a, b), L.info_nce(3 * a, 0.5 * b))


def hadamard_features(n=8, d=4):
    """(n, d) columns of a Hadamard matrix without the constant one: zero mean, unit (biased)
    variance, pairwise uncorrelated."""
    h = np.array([[1.0]])
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return torch.tensor(h[:, 1:d + 1])


def test_vicreg_terms_vanish_where_they_should():
    z = hadamard_features() * 3  # std 3 > gamma=1, uncorrelated columns
    out = L.vicreg(z, z)
    assert out.invariance == 0 and out.variance == 0
    assert out.covariance.abs() < 1e-20
    # Collapse: every sample equal, std = sqrt(eps) -> hinge 1 - 1e-2 per dimension and branch.
    collapsed = torch.ones(8, 4, dtype=torch.float64)
    assert math.isclose(L.vicreg(collapsed, collapsed).variance.item(), 1 - 1e-2, rel_tol=1e-9)
    # Perfectly correlated columns: covariance is large.
    corr = hadamard_features()[:, :1].repeat(1, 4)
    assert L.vicreg(corr, corr).covariance > 1


def test_barlow_twins_zero_for_identical_decorrelated_views():
    z = hadamard_features() * 5 + 2  # BN removes scale and shift
    assert L.barlow_twins(z, z).item() < 1e-9
    assert L.barlow_twins(z, -z).item() > 3.9  # anti-correlated: (1 - (-1))^2 per dimension


def test_neg_cosine_range():
    p = rand(B, D, seed=43)
    assert L.neg_cosine(p, 2 * p).abs() < 1e-12
    assert math.isclose(L.neg_cosine(p, -p).item(), 4.0, rel_tol=1e-12)


def test_moco_and_instance_limits():
    z = orthonormal_rows(6, 8)
    q, queue = z[:2], z[2:]
    assert L.moco_info_nce(q, q, queue, temperature=0.05) < 1e-6
    # The patch identical to the positive: a coin flip between them.
    a = rand(B, D, seed=44)
    assert math.isclose(L.instance_info_nce(a, a, a, 0.1).item(), math.log(2), rel_tol=1e-12)


def test_dino_cross_view_only_and_centering():
    k = 5
    t = rand(B, k, seed=45)
    # Student view 0 equals teacher view 0 but is skipped; view 1 is a different crop.
    s_same = [t.clone(), rand(B, k, seed=46)]
    s_swap = [rand(B, k, seed=47), s_same[1]]
    loss_a = L.dino_loss(s_same, [t], torch.zeros(k), teacher_temp=0.04)
    loss_b = L.dino_loss(s_swap, [t], torch.zeros(k), teacher_temp=0.04)
    assert torch.allclose(loss_a, loss_b)  # the same-view pair never enters
    # A centre constant across the K outputs changes nothing (softmax is shift invariant) ...
    assert torch.allclose(L.dino_loss(s_same, [t], torch.full((k,), 3.0, dtype=torch.float64), teacher_temp=0.04),
                          loss_a)
    # ... while a real centre does.
    assert not torch.allclose(L.dino_loss(s_same, [t], rand(k, seed=48), teacher_temp=0.04), loss_a)


def test_nnclr_with_batch_in_support_is_one_way_simclr():
    z1, z2 = rand(B, D, seed=49), rand(B, D, seed=50)
    support = torch.cat([z1, z2, rand(3, D, seed=51)])  # each z is its own nearest neighbour
    n1, n2 = torch.nn.functional.normalize(z1, dim=1), torch.nn.functional.normalize(z2, dim=1)
    ce = torch.nn.functional.cross_entropy
    want = 0.5 * (ce(n1 @ n2.T / 0.1, torch.arange(B)) + ce(n2 @ n1.T / 0.1, torch.arange(B)))
    assert torch.allclose(L.nnclr(z1, z2, support, 0.1), want)


def as_rank0_of_two(loss_fn, mine, theirs):
    """loss_fn on `mine` as rank 0 of two, rank 1 holding `theirs`: a first call on `theirs`
    records what rank 1 sends to each collective, in order; the second call appends it."""
    sent = []
    loss_fn(*theirs, gather=lambda x: sent.append(x) or x)
    received = iter(sent)
    return loss_fn(*mine, gather=lambda x: torch.cat([x, next(received)]))


SUPPORT = rand(9, D, seed=80)
GATHERED = {
    "info_nce": (2, lambda a, b, gather: L.info_nce(a, b, gather=gather)),
    "vicreg": (2, lambda a, b, gather: torch.stack(list(L.vicreg(a, b, gather=gather)))),
    "barlow_twins": (2, lambda a, b, gather: L.barlow_twins(a, b, gather=gather)),
    "moco_v3": (4, lambda *x, gather: L.moco_v3(*x, gather=gather)),
    "nnclr": (2, lambda a, b, gather: L.nnclr(a, b, SUPPORT, gather=gather)),
    "nnclr_pred": (4, lambda a, b, c, d, gather: L.nnclr(a, b, SUPPORT, gather=gather, p1=c, p2=d)),
}


@pytest.mark.parametrize("name", sorted(GATHERED))
def test_gather_feeds_the_global_batch(name):
    """With a gather, each loss equals the single-process loss on the concatenated batch."""
    n_inputs, fn = GATHERED[name]
    mine = [rand(B, D, seed=60 + i) for i in range(n_inputs)]
    theirs = [rand(B, D, seed=70 + i) for i in range(n_inputs)]
    glob = [torch.cat([m, t]) for m, t in zip(mine, theirs)]
    got = as_rank0_of_two(fn, mine, theirs)
    assert torch.allclose(got, fn(*glob, gather=None))
    assert not torch.allclose(got, fn(*mine, gather=None))  # the other rank's rows did count


def test_queue_push_wraps_and_normalises():
    q = torch.zeros(5, D, dtype=torch.float64)
    keys = rand(3, D, seed=90)
    ptr = Q.push_(q, 0, keys)
    assert ptr == 3 and torch.allclose(q[:3].norm(dim=1), torch.ones(3, dtype=torch.float64))
    ptr = Q.push_(q, ptr, 2 * keys)  # rows 3, 4, then wraps to row 0
    assert ptr == 1
    unit = torch.nn.functional.normalize(keys, dim=1)
    assert torch.allclose(q[3:], unit[:2]) and torch.allclose(q[0], unit[2]) and torch.allclose(q[1:3], unit[1:3])
    assert Q.push_(q, 4, rand(7, D, seed=91)) == 0  # bigger than the queue: keeps the last 5
    fresh = Q.new_queue(16, D)
    assert fresh.shape == (16, D) and torch.allclose(fresh.norm(dim=1), torch.ones(16))
