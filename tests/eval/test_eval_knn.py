"""kNN against a float64 brute-force reference written from DINO's eval_knn.py, and sklearn."""

import numpy as np
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier

from jessl.eval import knn_accuracy, knn_classify


def reference_knn(train, labels, test, k, temperature, num_classes, weighted=True):
    """Explicit loops in float64: normalise, rank by cosine, sum exp(sim / T) per class."""
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    test = test / np.linalg.norm(test, axis=1, keepdims=True)
    preds, votes_all = [], []
    for q in test:
        sims = np.array([float(np.dot(q, t)) for t in train])
        nearest = np.argsort(-sims, kind="stable")[:k]
        votes = np.zeros(num_classes)
        for j in nearest:
            votes[labels[j]] += np.exp(sims[j] / temperature) if weighted else 1.0
        preds.append(int(np.argmax(votes)))
        votes_all.append(votes)
    return np.array(preds), np.array(votes_all)


def random_data(seed, n=80, m=30, d=8, c=6):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, d)), rng.integers(0, c, n), rng.normal(size=(m, d)),
            rng.integers(0, c, m), c)


@pytest.mark.parametrize("k", [1, 5, 20])
@pytest.mark.parametrize("weighted", [True, False])
def test_matches_bruteforce_reference(k, weighted):
    train, labels, test, _, c = random_data(k)
    expected, _ = reference_knn(train, labels, test, k, 0.07, c, weighted)
    got = knn_classify(train, labels, test, k=k, num_classes=c, weighted=weighted)
    assert got.dtype == torch.int64
    np.testing.assert_array_equal(got.numpy(), expected)


def test_accuracy_matches_reference_top1_and_top5():
    train, labels, test, test_labels, c = random_data(7)
    out = knn_accuracy(train, labels, test, test_labels, ks=(3, 10), num_classes=c)
    for k in (3, 10):
        preds, votes = reference_knn(train, labels, test, k, 0.07, c)
        # top-5: ordered by votes then class index; a class nobody voted for is never a hit
        top5 = np.argsort(-votes, axis=1, kind="stable")[:, :5]
        voted = votes[np.arange(len(test_labels)), test_labels] > 0
        hit5 = (top5 == test_labels[:, None]).any(1) & voted
        assert out[f"k{k}_top1"] == pytest.approx(100 * np.mean(preds == test_labels))
        assert out[f"k{k}_top5"] == pytest.approx(100 * np.mean(hit5))
        assert out[f"k{k}_top5"] >= out[f"k{k}_top1"]


@pytest.mark.parametrize("k", [1, 3, 4, 7])
def test_unweighted_equals_sklearn_cosine(k):
    # continuous random data: no two training items are equally similar to a test item; class
    # ties in the vote (even k) go to the smallest class in both implementations
    train, labels, test, _, _ = random_data(100 + k, n=200, m=100, d=16, c=5)
    ref = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute").fit(train, labels)
    got = knn_classify(train, labels, test, k=k, weighted=False)
    np.testing.assert_array_equal(got.numpy(), ref.predict(test))


def test_chunked_equals_unchunked():
    train, labels, test, test_labels, c = random_data(3, n=300, m=97, d=32)
    whole = knn_classify(train, labels, test, k=20, chunk_size=10_000)
    for chunk in (1, 7, 32):
        assert torch.equal(knn_classify(train, labels, test, k=20, chunk_size=chunk), whole)
    assert knn_accuracy(train, labels, test, test_labels, chunk_size=5, ks=(20,)) == \
        knn_accuracy(train, labels, test, test_labels, chunk_size=1000, ks=(20,))


def test_weighting_lets_one_close_neighbour_outvote_two_far_ones():
    train = np.array([[1.0, 0.02], [1.0, 0.6], [1.0, -0.6]])  # class 0 close, class 1 far
    labels = np.array([0, 1, 1])
    test = np.array([[1.0, 0.0]])
    assert knn_classify(train, labels, test, k=3, weighted=True).item() == 0
    assert knn_classify(train, labels, test, k=3, weighted=False).item() == 1


def test_separable_clusters_score_100_and_inputs_may_be_numpy_or_torch():
    rng = np.random.default_rng(0)
    centres = np.eye(10, 32) * 10
    y_train, y_test = np.repeat(np.arange(10), 30), np.repeat(np.arange(10), 5)
    x_train = centres[y_train] + rng.normal(size=(300, 32))
    x_test = centres[y_test] + rng.normal(size=(50, 32))
    out = knn_accuracy(x_train, y_train, x_test, y_test, ks=(20,))
    assert out == {"k20_top1": 100.0, "k20_top5": 100.0}
    as_torch = knn_accuracy(torch.from_numpy(x_train).float(), torch.from_numpy(y_train),
                            torch.from_numpy(x_test).float(), torch.from_numpy(y_test), ks=(20,))
    assert as_torch == out


def test_fewer_than_five_classes_report_no_top5_and_bad_k_raises():
    train, labels, test, test_labels, _ = random_data(1, c=3)
    assert set(knn_accuracy(train, labels, test, test_labels, ks=(5,))) == {"k5_top1"}
    with pytest.raises(ValueError):
        knn_classify(train, labels, test, k=len(train) + 1)
