"""k-nearest-neighbour classification of frozen features (SSL Cookbook section 3.7.1).

Cosine similarity on L2-normalised features; each of the k nearest training items votes for its
label with weight exp(sim / T), as in DINO's eval_knn.py (Caron et al. 2021), or with weight 1
(`weighted=False`, the plain majority vote that sklearn's KNeighborsClassifier computes).
Test rows are processed in chunks, so memory holds chunk_size x N similarities, never M x N.

Ties: among equally similar neighbours torch.topk decides; among classes with equal votes the
smallest class index wins (torch.argmax returns the first maximum), as sklearn's mode does.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from jessl.config import EvalConfig, KnnProbeConfig  # the kNN defaults, written once there

KS = KnnProbeConfig.k  # k reported by knn_accuracy: 20 (DINO's best) and 200 (InstDisc's)
K = KS[0]  # knn_classify's neighbours: 20, DINO eval_knn.py
TEMPERATURE = EvalConfig.temperature  # 0.07, of the exp(sim / T) vote weights, DINO eval_knn.py
CHUNK_SIZE = 256  # test rows per block: 256 x 50k float32 similarities = 51 MB


def as_tensor(x, dtype: torch.dtype | None = None) -> torch.Tensor:
    """numpy array or tensor -> CPU tensor (no copy when already one); floats keep float64."""
    t = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
    t = t.detach().cpu()
    if dtype is not None:
        return t.to(dtype)
    if t.is_floating_point() and t.dtype != torch.float64:
        return t.float()  # half/bfloat16 features: matmul and topk in float32
    return t


def _neighbours(train_feats, train_labels, test_feats, k: int, chunk_size: int
                ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """Yield (start, sims (m, k), labels (m, k)) of each chunk's k nearest training items, sorted."""
    train = F.normalize(as_tensor(train_feats), dim=1)  # (N, D)
    test = F.normalize(as_tensor(test_feats).to(train.dtype), dim=1)  # (M, D)
    if train.shape[1] != test.shape[1]:
        raise ValueError(f"feature sizes differ: train {tuple(train.shape)}, test {tuple(test.shape)}")
    if not 1 <= k <= train.shape[0]:
        raise ValueError(f"k={k} needs 1 <= k <= {train.shape[0]} training items")
    labels = as_tensor(train_labels, torch.int64)  # (N,)
    for start in range(0, test.shape[0], chunk_size):
        sims = test[start:start + chunk_size] @ train.T  # (m, N)
        top_sims, top_idx = sims.topk(k, dim=1, largest=True, sorted=True)  # (m, k)
        yield start, top_sims, labels[top_idx]


def _votes(top_sims: torch.Tensor, top_labels: torch.Tensor, num_classes: int,
           temperature: float, weighted: bool) -> torch.Tensor:
    """(m, k) similarities and labels of the neighbours -> (m, C) summed votes per class."""
    weights = (top_sims / temperature).exp() if weighted else torch.ones_like(top_sims)
    votes = torch.zeros(top_sims.shape[0], num_classes, dtype=top_sims.dtype)
    return votes.scatter_add_(1, top_labels, weights)


def _rank_of_truth(votes: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """votes (m, C), truth (m, 1) -> 0-based rank (m,) of the true class, C when it got no vote.

    Classes are ordered by votes, then by index (argmax's order), so top-1 agrees with
    knn_classify; a class no neighbour voted for is never a hit, where DINO's sort would let
    zero-vote classes fill the top-5 in arbitrary order when k < 5 classes are represented.
    """
    v_true = votes.gather(1, truth)  # (m, 1)
    cls = torch.arange(votes.shape[1])
    ahead = (votes > v_true) | ((votes == v_true) & (cls < truth))  # (m, C)
    return torch.where(v_true[:, 0] > 0, ahead.sum(dim=1), votes.shape[1])


def _num_classes(train_labels, num_classes: int | None) -> int:
    labels = as_tensor(train_labels, torch.int64)
    if labels.numel() and labels.min() < 0:
        raise ValueError("labels must be class indices >= 0")
    return int(labels.max()) + 1 if num_classes is None else num_classes


def knn_classify(train_feats, train_labels, test_feats, k: int = K,
                 temperature: float = TEMPERATURE, num_classes: int | None = None,
                 chunk_size: int = CHUNK_SIZE, weighted: bool = True) -> torch.Tensor:
    """train (N, D), labels (N,), test (M, D) -> predicted class indices (M,) int64."""
    num_classes = _num_classes(train_labels, num_classes)
    preds = torch.empty(as_tensor(test_feats).shape[0], dtype=torch.int64)
    for start, top_sims, top_labels in _neighbours(train_feats, train_labels, test_feats, k,
                                                   chunk_size):
        votes = _votes(top_sims, top_labels, num_classes, temperature, weighted)
        preds[start:start + votes.shape[0]] = votes.argmax(dim=1)
    return preds


def knn_accuracy(train_feats, train_labels, test_feats, test_labels, ks: Sequence[int] = KS,
                 temperature: float = TEMPERATURE, num_classes: int | None = None,
                 chunk_size: int = CHUNK_SIZE, weighted: bool = True) -> dict[str, float]:
    """Top-1 (and top-5 when >= 5 classes) accuracy in %, one pair per k: {"k20_top1": ...}.

    The neighbours of the largest k are found once; a smaller k uses their first k (topk sorts).
    """
    num_classes = _num_classes(train_labels, num_classes)
    test_labels = as_tensor(test_labels, torch.int64)
    ks = sorted(set(int(k) for k in ks))
    correct = {(k, top): 0 for k in ks for top in (1, 5)}
    for start, top_sims, top_labels in _neighbours(train_feats, train_labels, test_feats,
                                                   ks[-1], chunk_size):
        truth = test_labels[start:start + top_sims.shape[0], None]  # (m, 1)
        for k in ks:
            votes = _votes(top_sims[:, :k], top_labels[:, :k], num_classes, temperature, weighted)
            rank = _rank_of_truth(votes, truth)
            correct[k, 1] += int((rank < 1).sum())
            if num_classes >= 5:
                correct[k, 5] += int((rank < 5).sum())
    n = max(len(test_labels), 1)
    out = {}
    for k in ks:
        out[f"k{k}_top1"] = 100.0 * correct[k, 1] / n
        if num_classes >= 5:
            out[f"k{k}_top5"] = 100.0 * correct[k, 5] / n
    return out
