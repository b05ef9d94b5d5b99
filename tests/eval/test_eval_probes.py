import numpy as np
import torch

import jessl.eval.probes as probes
from jessl.eval import linear_probe, mlp_probe, sweep_linear
from jessl.eval.probes import cosine_schedule, num_batches, train_linear_heads


def clusters(seed, c=6, d=16, n_train=60, n_test=20, spread=4.0, noise=1.0):
    """Gaussian blobs, well separated at the defaults: train (c*n_train, d), test (c*n_test, d)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(c, d)) * spread
    y_train, y_test = np.repeat(np.arange(c), n_train), np.repeat(np.arange(c), n_test)
    return (centres[y_train] + noise * rng.normal(size=(len(y_train), d)), y_train,
            centres[y_test] + noise * rng.normal(size=(len(y_test), d)), y_test)


def nuisance(seed=1, c=10, d=32, n_train=100, n_test=30):
    """Ten classes under one large shared noise direction u: the class-mean direction a barely
    trained head uses is swamped by u, which a converged softmax regression learns to ignore,
    so the grid points score differently on validation."""
    rng = np.random.default_rng(seed)
    centres, u = rng.normal(size=(c, d)), rng.normal(size=d)

    def make(n):
        y = np.repeat(np.arange(c), n)
        noise = 0.7 * rng.normal(size=(len(y), d)) + 4.0 * rng.normal(size=(len(y), 1)) * u
        return centres[y] + noise, y
    return (*make(n_train), *make(n_test))


FAST = dict(epochs=8, batch_size=64)


def test_linear_probe_separable_is_perfect():
    x, y, tx, ty = clusters(0)
    res = linear_probe(x, y, tx, ty, **FAST)
    assert res.top1 == 100.0 and res.top5 == 100.0
    assert len(res.val_scores) == len(probes.LRS) * len(probes.WEIGHT_DECAYS)
    assert (res.lr, res.weight_decay) in {(s["lr"], s["weight_decay"]) for s in res.val_scores}


def test_linear_probe_with_fewer_than_five_classes_has_no_top5():
    x, y, tx, ty = clusters(1, c=3)
    res = linear_probe(torch.from_numpy(x), torch.from_numpy(y), tx, ty, **FAST)
    assert res.top1 == 100.0 and res.top5 is None


def test_linear_heads_match_sklearn_logistic_regression_accuracy():
    # the hand-written gradient really minimises cross-entropy: a converged head scores like sklearn's
    from sklearn.linear_model import LogisticRegression
    x, y, tx, ty = nuisance(1)
    res = linear_probe(x, y, tx, ty, **FAST)
    ref = 100 * LogisticRegression(max_iter=2000).fit(x, y).score(tx, ty)
    assert res.top1 >= ref - 5.0
    assert res.top1 > 90.0  # chance is 10%, the class-mean classifier ~80%


def test_hyper_parameters_never_depend_on_the_test_set():
    x, y, tx, ty = nuisance()
    clean = linear_probe(x, y, tx, ty, **FAST)
    rng = np.random.default_rng(0)
    garbage = linear_probe(x, y, np.full_like(tx, np.nan), rng.permutation(ty), **FAST)
    assert clean.val_scores == garbage.val_scores
    assert (clean.lr, clean.weight_decay) == (garbage.lr, garbage.weight_decay)
    assert len({s["val_top1"] for s in clean.val_scores}) > 1  # the grid points do differ
    assert garbage.top1 < clean.top1  # the test set was used, for scoring only


def test_the_sweep_is_never_handed_test_arrays(monkeypatch):
    x, y, tx, ty = nuisance()
    tx, ty = tx[:77], ty[:77]  # a row count no training array has
    seen = []
    real = probes.sweep_linear

    def spy(*args, **kwargs):
        arrays = [a for a in (*args, *kwargs.values()) if isinstance(a, (np.ndarray, torch.Tensor))]
        seen.extend(len(a) for a in arrays)
        return real(*args, **kwargs)

    monkeypatch.setattr(probes, "sweep_linear", spy)
    linear_probe(x, y, tx, ty, **FAST)
    assert seen == [len(x), len(x)]


def test_sweep_chooses_the_best_validation_score_and_is_deterministic():
    x, y, _, _ = nuisance(2)
    grid = dict(lrs=(1e-5, 0.1), weight_decays=(0.0,), **FAST)
    a, b = sweep_linear(x, y, **grid), sweep_linear(x, y, **grid)
    assert a == b
    scores = [s["val_top1"] for s in a.scores]
    assert a.lr == 0.1 and scores[1] == max(scores) > scores[0] + 5  # 1e-5 stays near class means
    assert sweep_linear(x, y, seed=1, **grid) != a  # another seed, another validation split


def test_multi_head_training_equals_separate_single_heads():
    x, y, _, _ = nuisance(3)
    x = torch.from_numpy(x).float()
    y = torch.from_numpy(y)
    w, b = train_linear_heads(x, y, 10, [0.01, 0.1], [0.0, 1e-3], epochs=2, batch_size=64, seed=0)
    for h, (lr, wd) in enumerate([(0.01, 0.0), (0.1, 1e-3)]):
        w1, b1 = train_linear_heads(x, y, 10, [lr], [wd], epochs=2, batch_size=64, seed=0)
        torch.testing.assert_close(w[:, h * 10:(h + 1) * 10], w1, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(b[h * 10:(h + 1) * 10], b1, rtol=1e-4, atol=1e-6)


def test_schedule_and_batches():
    s = cosine_schedule(0.5, 10)
    assert s[0] == 0.5 and torch.all(s[1:] < s[:-1]) and s[-1] > 0
    assert num_batches(513, 256) == 2 and num_batches(512, 256) == 2 and num_batches(514, 256) == 3


def test_mlp_probe_separable_is_perfect_and_leaves_global_rng_alone():
    x, y, tx, ty = clusters(5)
    state = torch.get_rng_state()
    res = mlp_probe(x, y, tx, ty, hidden=(64, 64), epochs=5, batch_size=64)
    assert torch.equal(torch.get_rng_state(), state)
    assert res.top1_best == 100.0 and res.top5_best == 100.0
    assert len(res.val_top1) == 5 and res.val_top1[res.best_epoch] == max(res.val_top1)
    assert mlp_probe(x, y, tx, ty, hidden=(64, 64), epochs=5, batch_size=64) == res


def label_noise(seed=0, n=400, d=20, noise=0.2):
    """Two classes, one informative dimension, 20% of training labels flipped; clean test labels."""
    rng = np.random.default_rng(seed)

    def make(m, p):
        y = rng.integers(0, 2, m)
        x = rng.normal(size=(m, d))
        x[:, 0] += 2.5 * (2 * y - 1)
        return x, np.where(rng.random(m) < p, 1 - y, y)
    return (*make(n, noise), *make(400, 0.0))


def test_mlp_probe_keeps_its_best_epoch_when_it_overfits():
    # a wide MLP memorises the flipped labels: validation accuracy peaks early, then falls
    x, y, tx, ty = label_noise()
    res = mlp_probe(x, y, tx, ty, hidden=(128, 128), lr=3e-3, weight_decay=0.0, epochs=30,
                    batch_size=20, val_fraction=0.5)
    assert res.best_epoch < len(res.val_top1) - 1
    assert res.val_top1[res.best_epoch] == max(res.val_top1) > res.val_top1[-1]
    assert res.top1_best > res.top1_last  # the kept weights are the early ones, not the last
    assert res.top5_best is None  # two classes


def test_mlp_training_is_never_handed_test_arrays(monkeypatch):
    x, y, tx, ty = clusters(6)
    tx, ty = tx[:37], ty[:37]
    seen = []
    real = probes.train_mlp

    def spy(*args, **kwargs):
        seen.extend(len(a) for a in args if isinstance(a, torch.Tensor))
        return real(*args, **kwargs)

    monkeypatch.setattr(probes, "train_mlp", spy)
    mlp_probe(x, y, tx, ty, hidden=(32, 32), epochs=2, batch_size=64, optimizer="sgd", lr=0.05)
    n_val = len(x) // 10
    assert seen == [len(x) - n_val, len(x) - n_val, n_val, n_val]  # fit x, y, then val x, y
