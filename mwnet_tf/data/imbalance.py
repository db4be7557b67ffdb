"""Long-tailed class imbalance (Cui et al., 2019), as used by Meta-Weight-Net."""

import math
import numbers

import numpy as np


def check_imbalance_factor(imbalance_factor):
    """Checks a long-tail imbalance factor, e.g. before any data is loaded.

    Raises:
        ValueError: Unless `imbalance_factor` is a number >= 1.
    """
    if not isinstance(imbalance_factor, numbers.Real) \
            or not imbalance_factor >= 1:
        raise ValueError(
            "imbalance_factor is the ratio of the largest to the smallest "
            f"class and must be >= 1 (1 = balanced); got {imbalance_factor!r}.")


def long_tailed_counts(n_max, num_classes, imbalance_factor):
    """Returns the per-class counts of a long-tailed data set.

    n_c = floor(n_max * IF^(-c / (K - 1))) for c = 0 .. K-1: class 0 keeps
    n_max examples and class K-1 keeps n_max / IF. IF = 1 is balanced.

    Args:
        n_max: Number of examples of the largest class (class 0).
        num_classes: Number of classes K (>= 2).
        imbalance_factor: IF >= 1, the ratio of the largest to the smallest
            class.

    Returns:
        A list of K ints, non-increasing.

    Raises:
        ValueError: If n_max < 1, K < 2 or IF < 1.
    """
    if int(n_max) != n_max or n_max < 1:
        raise ValueError(f"n_max must be a positive integer; got {n_max!r}.")
    if int(num_classes) != num_classes or num_classes < 2:
        raise ValueError(
            f"num_classes must be an integer >= 2; got {num_classes!r}.")
    check_imbalance_factor(imbalance_factor)
    counts = []
    for c in range(int(num_classes)):
        exact = n_max * float(imbalance_factor) ** (-c / (num_classes - 1))
        # The tolerance keeps results that are mathematically integers (5000
        # -> 50 at IF=100) from dropping by one through rounding.
        counts.append(int(math.floor(exact + 1e-9)))
    return counts


def long_tailed_indices(labels, num_classes, imbalance_factor, seed,
                        n_max=None):
    """Selects a seeded long-tailed subset of a labelled data set.

    Class c keeps `long_tailed_counts(n_max, K, IF)[c]` examples drawn without
    replacement.

    Args:
        labels: Integer array of labels in [0, num_classes).
        num_classes: Number of classes K.
        imbalance_factor: IF >= 1 (1 keeps n_max examples of every class).
        seed: Integer seed of the draw.
        n_max: Size of class 0 after selection. Defaults to the size of the
            smallest class, so that every class can supply its share when the
            input is balanced.

    Returns:
        Sorted int64 indices into `labels`.

    Raises:
        ValueError: If a class holds fewer examples than its count requires.
    """
    labels = np.asarray(labels)
    available = np.bincount(labels, minlength=num_classes)[:num_classes]
    if n_max is None:
        n_max = int(available.min())
        if n_max < 1:
            empty = int(np.argmin(available))
            raise ValueError(
                f"Class {empty} has no examples; a long-tailed subset needs "
                "examples of every class.")
    counts = long_tailed_counts(n_max, num_classes, imbalance_factor)
    rng = np.random.default_rng(seed)
    selected = []
    for c, count in enumerate(counts):
        members = np.flatnonzero(labels == c)
        if count > members.size:
            raise ValueError(
                f"Class {c} needs {count} examples for imbalance factor "
                f"{imbalance_factor} with n_max={n_max} but has only "
                f"{members.size}; lower n_max.")
        selected.append(rng.choice(members, size=count, replace=False))
    return np.sort(np.concatenate(selected)).astype(np.int64)
