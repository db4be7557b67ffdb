import numpy as np
import pytest

from mwnet_tf.data import imbalance, meta_split


def test_long_tailed_counts_formula():
    counts = imbalance.long_tailed_counts(5000, 10, 100)
    assert counts == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert imbalance.long_tailed_counts(500, 100, 1) == [500] * 100
    assert imbalance.long_tailed_counts(500, 100, 200)[-1] == 2


def test_long_tailed_indices_seeded():
    labels = np.repeat(np.arange(5), 40)
    a = imbalance.long_tailed_indices(labels, 5, 10, seed=1)
    np.testing.assert_array_equal(
        np.bincount(labels[a], minlength=5),
        imbalance.long_tailed_counts(40, 5, 10))
    np.testing.assert_array_equal(
        a, imbalance.long_tailed_indices(labels, 5, 10, seed=1))
    assert not np.array_equal(
        a, imbalance.long_tailed_indices(labels, 5, 10, seed=2))
    assert np.unique(a).size == a.size


def test_imbalance_errors():
    with pytest.raises(ValueError, match="must be >= 1"):
        imbalance.long_tailed_counts(100, 10, 0.5)
    with pytest.raises(ValueError, match="Class 1 needs 40 examples"):
        imbalance.long_tailed_indices(np.array([0] * 50 + [1] * 10), 2, 1,
                                      seed=0, n_max=40)


def test_split_meta_disjoint_exact_and_clean():
    labels = np.random.default_rng(0).integers(0, 4, size=400)
    original = labels.copy()
    train, meta = meta_split.split_meta(labels, 7, seed=3)
    assert np.intersect1d(train, meta).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, meta])),
                                  np.arange(400))
    np.testing.assert_array_equal(np.bincount(labels[meta]), [7] * 4)
    np.testing.assert_array_equal(labels, original)


def test_split_meta_seeded():
    labels = np.repeat(np.arange(3), 50)
    a = meta_split.split_meta(labels, 5, seed=11)
    b = meta_split.split_meta(labels, 5, seed=11)
    c = meta_split.split_meta(labels, 5, seed=12)
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_split_meta_too_many_names_class_and_counts():
    labels = np.array([0] * 10 + [1] * 3 + [2] * 10)
    with pytest.raises(ValueError, match="class 1: it has only 3"):
        meta_split.split_meta(labels, 5, seed=0)
    with pytest.raises(ValueError, match="positive integer"):
        meta_split.split_meta(labels, 0, seed=0)
