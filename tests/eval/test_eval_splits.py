import numpy as np
import pytest

from jessl.eval import stratified_split


def tiny_imagenet_val_labels():
    return np.repeat(np.arange(20), 50)[np.random.default_rng(0).permutation(1000)]


def test_per_class_split_is_sized_disjoint_and_covering():
    labels = tiny_imagenet_val_labels()
    train, test = stratified_split(labels, test_per_class=10, seed=0)
    assert np.intersect1d(train, test).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(1000))
    assert np.all(np.bincount(labels[test]) == 10) and np.all(np.bincount(labels[train]) == 40)
    assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)


def test_same_seed_same_split_other_seed_other_split():
    labels = tiny_imagenet_val_labels()
    a, b, c = (stratified_split(labels, test_per_class=10, seed=s)[1] for s in (3, 3, 4))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_fraction_rounds_per_class_and_keeps_one_training_item():
    labels = np.array([0] * 20 + [1] * 7 + [2] * 1)
    train, test = stratified_split(labels, fraction=0.3, seed=0)
    assert np.bincount(labels[test], minlength=3).tolist() == [6, 2, 0]
    assert np.bincount(labels[train], minlength=3).tolist() == [14, 5, 1]


def test_a_class_splits_the_same_whatever_the_other_classes():
    labels = tiny_imagenet_val_labels()
    full_test = stratified_split(labels, test_per_class=10, seed=1)[1]
    only_5 = np.flatnonzero(labels == 5)
    sub_test = stratified_split(labels[only_5], test_per_class=10, seed=1)[1]
    np.testing.assert_array_equal(only_5[sub_test], full_test[labels[full_test] == 5])


def test_bad_arguments_raise():
    labels = np.repeat(np.arange(3), 4)
    with pytest.raises(ValueError):
        stratified_split(labels, seed=0)
    with pytest.raises(ValueError):
        stratified_split(labels, test_per_class=1, fraction=0.1)
    with pytest.raises(ValueError):
        stratified_split(labels, test_per_class=4)
