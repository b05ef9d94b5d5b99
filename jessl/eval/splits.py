"""Reproducible per-class splits, for datasets that ship without a test split (Tiny-ImageNet val)
and for the validation split the probes choose their hyper-parameters on."""

from __future__ import annotations

import numpy as np


def stratified_split(labels, *, test_per_class: int | None = None, fraction: float | None = None,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """labels (N,) -> (train_idx, test_idx), sorted int64 indices, disjoint, covering 0..N-1.

    Give exactly one of `test_per_class` (that many test items from every class, e.g. 10 of the
    50 per class of Tiny-ImageNet val) or `fraction` (round(fraction * n_c) per class, at most
    n_c - 1 so every class keeps a training item).
    """
    if (test_per_class is None) == (fraction is None):
        raise ValueError("give exactly one of test_per_class or fraction")
    if fraction is not None and not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must lie in [0, 1), got {fraction}")
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    test_parts = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if test_per_class is not None:
            if not 0 <= test_per_class < len(members):
                raise ValueError(f"class {c} has {len(members)} items, cannot hold out "
                                 f"{test_per_class} and keep one for training")
            n_test = test_per_class
        else:
            n_test = min(int(round(fraction * len(members))), len(members) - 1)
        # One generator per (seed, class): a class's split does not depend on which other
        # classes are present, so subsets of a dataset split consistently.
        rng = np.random.default_rng([seed, int(c)])
        test_parts.append(rng.permutation(members)[:n_test])
    test_idx = np.sort(np.concatenate(test_parts)).astype(np.int64) if test_parts else \
        np.zeros(0, np.int64)
    is_test = np.zeros(len(labels), bool)
    is_test[test_idx] = True
    return np.flatnonzero(~is_test).astype(np.int64), test_idx
