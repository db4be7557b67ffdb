"""The clean meta set: a few trusted examples per class, kept out of training."""

import numpy as np

from mwnet_tf.arguments import check_fraction, is_integer


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


def pool_sizes(labels, fraction, per_class, num_classes):
    """Examples of each given class in a scoring pool of `fraction` of the
    split: ceil(fraction * count), at least `per_class` (what is chosen from
    it), at most the class's count.

    Args:
        labels: Integer array of the given labels.
        fraction: In (0, 1].
        per_class: The least number of each class the pool must hold.
        num_classes: K.

    Returns:
        int64 array [K].

    Raises:
        ValueError: If `fraction` is not in (0, 1].
    """
    check_pool_fraction(fraction)
    counts = np.bincount(np.asarray(labels, dtype=np.int64),
                         minlength=num_classes)
    wanted = np.maximum(per_class, np.ceil(fraction * counts).astype(np.int64))
    return np.minimum(counts, wanted).astype(np.int64)


def check_pool_fraction(fraction):
    """Raises ValueError unless 0 < fraction <= 1."""
    check_fraction(fraction, "The pseudo-clean pool is a fraction of the "
                   "training split")


def draw_pool(labels, sizes, seed, epoch):
    """A fresh draw of `sizes[c]` examples of each class for `epoch`.

    The same (seed, epoch) gives the same pool, so a resumed run scores
    what the uninterrupted one did.

    Returns:
        Sorted int64 indices into `labels`, sum(sizes) of them.
    """
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng([int(seed), int(epoch)])
    chosen = [rng.choice(np.flatnonzero(labels == c), size=int(size),
                         replace=False) for c, size in enumerate(sizes)]
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
