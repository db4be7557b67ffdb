"""The clean meta set: a few trusted examples per class, kept out of training."""

import numpy as np

from mwnet_tf.arguments import is_integer


def check_per_class(per_class):
    """Checks a number of meta examples per class, e.g. before loading data.

    Raises:
        ValueError: Unless `per_class` is a positive integer (Python or NumPy).
    """
    if not is_integer(per_class) or per_class < 1:
        raise ValueError(
            "meta_per_class (meta examples per class) must be a positive "
            f"integer; got {per_class!r}.")


def sample_per_class(labels, per_class, seed, num_classes=None):
    """Draws a fixed number of examples of every class without replacement.

    Args:
        labels: Integer array of labels.
        per_class: Number of examples to draw from each class (>= 1).
        seed: Integer seed of the draw.
        num_classes: Number of classes K; defaults to `max(labels) + 1`.

    Returns:
        Sorted int64 indices into `labels`, `per_class` of each class.

    Raises:
        ValueError: If `per_class` is not a positive integer or a class holds
            fewer than `per_class` examples (the message names the class and
            both counts).
    """
    labels = np.asarray(labels)
    check_per_class(per_class)
    per_class = int(per_class)
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if labels.size else 0
    rng = np.random.default_rng(seed)
    chosen = []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        if members.size < per_class:
            raise ValueError(
                f"Cannot draw {per_class} meta examples of class {c}: it has "
                f"only {members.size}. Lower meta_per_class to at most "
                f"{members.size}.")
        chosen.append(rng.choice(members, size=per_class, replace=False))
    if not chosen:
        return np.zeros([0], dtype=np.int64)
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def split_meta(labels, per_class, seed, num_classes=None):
    """Splits a training set into a clean meta set and the rest.

    The meta set takes `per_class` examples of every class, drawn with `seed`;
    they are removed from the training split, so the two are disjoint and
    together cover every example once. Call this on the clean labels, before
    any noise is applied, so that the meta set is clean.

    Args:
        labels: Integer array of clean labels.
        per_class: Number of meta examples per class (>= 1).
        seed: Integer seed; the same seed gives the same split.
        num_classes: Number of classes K; defaults to `max(labels) + 1`.

    Returns:
        `(train_indices, meta_indices)`: sorted, disjoint int64 index arrays
        into `labels`.

    Raises:
        ValueError: If a class holds fewer than `per_class` examples.
    """
    labels = np.asarray(labels)
    meta = sample_per_class(labels, per_class, seed, num_classes)
    keep = np.ones(labels.shape[0], dtype=bool)
    keep[meta] = False
    return np.flatnonzero(keep).astype(np.int64), meta
