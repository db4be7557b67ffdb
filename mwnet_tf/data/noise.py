"""Synthetic label noise: transition matrices, corruption, realised statistics.

The definitions follow the official Meta-Weight-Net code
(`load_corrupted_data.py`): a row-stochastic matrix T with T[i, j] the
probability that an example of true class i is given label j, and each noisy
label drawn independently from the row T[y] of its true class y.

To add a noise type, add a branch to `noise_transition_matrix` and its name to
`MATRIX_NOISE_TYPES`; `corrupt_labels`, the statistics and `prepare` need no
change. Noise that depends on the image itself ("instance", Xia et al. 2020)
has no class-level matrix: `instance_dependent_labels` draws it, and
`corrupt_labels` dispatches to it when given the images.
"""

import numbers

import numpy as np

# Noise defined by a class-level transition matrix T.
MATRIX_NOISE_TYPES = ("none", "uniform", "flip", "flip2", "pair", "asym")
# Instance-dependent noise: each image's flip probability and wrong class
# depend on the image (see `instance_dependent_labels`).
INSTANCE_NOISE = "instance"
NOISE_TYPES = MATRIX_NOISE_TYPES + (INSTANCE_NOISE,)
# Spread of the per-image flip rate around the noise rate (Xia et al. 2020).
INSTANCE_RATE_STD = 0.1

# The usual asymmetric CIFAR-10 noise (Patrini et al., 2017), in CIFAR-10 label
# order: truck -> automobile, bird -> airplane, deer -> horse, cat <-> dog.
CIFAR10_PAIR_MAPPING = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}

# Class names in label order: "asym" noise is defined by label index, so a
# data set must hold these classes in this order for it to mean what the
# literature means (a folder's classes sort alphabetically, which is this
# order for both).
CIFAR10_CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog",
                       "frog", "horse", "ship", "truck")
CIFAR100_CLASS_NAMES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle",
    "bicycle", "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel",
    "can", "castle", "caterpillar", "cattle", "chair", "chimpanzee", "clock",
    "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster",
    "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree",
    "pear", "pickup_truck", "pine_tree", "plain", "plate", "poppy",
    "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket",
    "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail",
    "snake", "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper",
    "table", "tank", "telephone", "television", "tiger", "tractor", "train",
    "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf",
    "woman", "worm")
_ASYM_CLASS_NAMES = {10: CIFAR10_CLASS_NAMES, 100: CIFAR100_CLASS_NAMES}
# CIFAR-100's asymmetric noise moves a class to the next one of its group of
# five, circularly. The groups are five consecutive labels, as in the code of
# Patrini et al. (2017) that DivideMix, ELR and CMW-Net's tables follow; the
# papers call them superclasses, but CIFAR-100's fine labels are in
# alphabetical order, so they are not CIFAR-100's 20 superclasses.
CIFAR100_GROUP_SIZE = 5


def _streams(seed):
    """Two independent generators: one picks flip targets, one draws labels.

    Both come from `np.random.default_rng(seed)`, so one integer fixes
    everything, while the choice of targets and the per-example draws do not
    reuse the same random numbers.
    """
    target_rng, draw_rng = np.random.default_rng(seed).spawn(2)
    return target_rng, draw_rng


def _canonical(name):
    return str(name).strip().lower().replace(" ", "_").replace("-", "_")


def check_noise(noise, rate, num_classes=None, class_names=None):
    """Checks the arguments of a noise type, e.g. before any data is loaded.

    Args:
        noise: Noise type; must be one of `NOISE_TYPES`.
        rate: Corruption probability; must be a number in [0, 1].
        num_classes: Number of classes K, or None when it is not known yet
            (then only `noise` and `rate` are checked).
        class_names: Names of classes 0 .. K-1, when known; "asym" checks
            that they are CIFAR-10's or CIFAR-100's in label order (or the
            label indices themselves, as tensorflow-datasets names them
            before it has the data set's metadata).

    Raises:
        ValueError: For an unknown noise type, a rate outside [0, 1], a
            number of classes the noise type cannot use, or (asym) classes
            that are not CIFAR's in CIFAR's order.
    """
    if noise not in NOISE_TYPES:
        raise ValueError(
            f"Unknown noise type {noise!r}; valid types are "
            f"{', '.join(NOISE_TYPES)}.")
    if not isinstance(rate, numbers.Real) or isinstance(rate, bool) \
            or not 0.0 <= rate <= 1.0:
        raise ValueError(
            f"noise_rate must be a number in [0, 1]; got {rate!r}.")
    if num_classes is None:
        return
    if isinstance(num_classes, bool) or int(num_classes) != num_classes \
            or num_classes < 2:
        raise ValueError(
            f"num_classes must be an integer >= 2; got {num_classes!r}.")
    if noise == "flip2" and num_classes < 3:
        raise ValueError(
            "flip2 noise needs at least 3 classes (two other classes per "
            f"class); got num_classes={num_classes}.")
    if noise == "pair" and num_classes != 10:
        raise ValueError(
            "pair noise is the CIFAR-10 mapping (truck->automobile, "
            "bird->airplane, deer->horse, cat<->dog) and needs 10 classes in "
            f"CIFAR-10 label order; got num_classes={num_classes}. Use "
            "'flip' for a seeded one-target mapping of any number of classes.")
    if noise in ("asym", "pair"):
        expected = _ASYM_CLASS_NAMES.get(int(num_classes))
        if expected is None:
            raise ValueError(
                "asym noise is defined for CIFAR-10 (10 classes) and "
                f"CIFAR-100 (100 classes); got num_classes={num_classes}. Use "
                "'flip' for a seeded one-target mapping of any number of "
                "classes.")
        if class_names is not None:
            names = tuple(map(_canonical, class_names))
            indices = tuple(str(label) for label in range(len(expected)))
            if names not in (expected, indices):
                mismatch = next(i for i, (got, want) in enumerate(
                    zip(names, expected)) if got != want)
                raise ValueError(
                    f"{noise} noise maps CIFAR-{len(expected)}'s classes by "
                    f"label, but class {mismatch} here is "
                    f"{class_names[mismatch]!r}, not {expected[mismatch]!r}; "
                    "give CIFAR's classes (a folder's sort into CIFAR's "
                    "order) or use 'flip'.")


def noise_transition_matrix(num_classes, noise, rate, seed, class_names=None):
    """Returns the true noise transition matrix T of a noise type.

    T[i, j] is the probability that an example of true class i is labelled j.

    - "none": the identity (`rate` is ignored).
    - "uniform": T = (1 - p) I + (p / K) 1 1^T. The new label is drawn from all
      K classes, the true one included, so the realised fraction of changed
      labels is p (K - 1) / K, not p.
    - "flip": class i keeps its label with probability 1 - p and goes to one
      fixed other class, chosen at random from `seed`, with probability p.
    - "flip2": class i goes to each of two fixed, distinct other classes
      (chosen from `seed`) with probability p / 2.
    - "pair": the CIFAR-10 mapping truck(9) -> automobile(1),
      bird(2) -> airplane(0), deer(4) -> horse(7), cat(3) <-> dog(5) with
      probability p; other classes stay clean. Only for 10 classes in CIFAR-10
      label order.
    - "asym": the asymmetric noise of Patrini et al. (2017) used across the
      noisy-label literature (DivideMix, ELR, CMW-Net): for 10 classes the
      "pair" mapping; for 100, class i goes to the next class of its group
      of five consecutive labels, circularly (4 -> 0), with probability p.
      Only for CIFAR-10's and CIFAR-100's classes in label order.

    Args:
        num_classes: Number of classes K (>= 2).
        noise: One of `NOISE_TYPES`.
        rate: Corruption probability p in [0, 1].
        seed: Integer seed; decides the targets of "flip" and "flip2".
        class_names: Names of classes 0 .. K-1, if known (checked by "asym").

    Returns:
        A float64 array of shape (K, K) whose rows sum to 1.

    Raises:
        ValueError: For an unknown noise type, a rate outside [0, 1], or a
            number of classes the noise type cannot use.
    """
    check_noise(noise, rate, num_classes, class_names)
    if noise == INSTANCE_NOISE:
        raise ValueError(
            "instance noise has no class-level transition matrix: each "
            "image's flip rate and wrong class depend on the image; draw it "
            "with corrupt_labels(..., images=) and read the realised matrix "
            "from label_noise_statistics.")
    k, p = int(num_classes), float(rate)
    if noise == "none":
        return np.eye(k)
    if noise == "uniform":
        return (1.0 - p) * np.eye(k) + (p / k) * np.ones((k, k))
    if noise in ("pair", "asym"):
        if k == 10:
            mapping = CIFAR10_PAIR_MAPPING
        else:
            group = CIFAR100_GROUP_SIZE
            mapping = {source: source - source % group + (source + 1) % group
                       for source in range(k)}
        matrix = np.eye(k)
        for source, target in mapping.items():
            matrix[source, source] = 1.0 - p
            matrix[source, target] = p
        return matrix
    target_rng, _ = _streams(seed)
    num_targets = 1 if noise == "flip" else 2
    matrix = (1.0 - p) * np.eye(k)
    for source in range(k):
        others = np.delete(np.arange(k), source)
        targets = target_rng.choice(others, size=num_targets, replace=False)
        matrix[source, targets] += p / num_targets
    return matrix


def corrupt_labels(labels, num_classes, noise, rate, seed, class_names=None,
                   images=None):
    """Returns noisy labels drawn from the rows of the noise transition matrix.

    The noisy label of an example of true class y is drawn from T[y], with T from
    `noise_transition_matrix(num_classes, noise, rate, seed)`; so for "uniform"
    noise the realised rate of changed labels is about p (K - 1) / K. The input
    array is not modified.

    Args:
        labels: Integer array of clean labels in [0, num_classes).
        num_classes: Number of classes K.
        noise: One of `NOISE_TYPES`.
        rate: Corruption probability p in [0, 1].
        seed: Integer seed; the same seed gives the same labels.
        class_names: Names of classes 0 .. K-1, if known (checked by "asym").
        images: The examples' images (uint8, [N, ...]); needed by "instance"
            noise only (see `instance_dependent_labels`).

    Returns:
        A new int64 array of noisy labels, shaped like `labels`.

    Raises:
        ValueError: For invalid noise arguments or labels outside
            [0, num_classes), or "instance" noise without images.
    """
    labels = np.asarray(labels)
    if noise == INSTANCE_NOISE:
        check_noise(noise, rate, num_classes)
        if images is None:
            raise ValueError(
                "instance noise depends on the images: pass images= (an "
                "in-memory image source); it cannot be drawn from labels "
                "alone.")
        return instance_dependent_labels(images, labels, num_classes, rate,
                                         seed)
    matrix = noise_transition_matrix(num_classes, noise, rate, seed,
                                     class_names)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"Labels must lie in [0, {num_classes}); got values from "
            f"{labels.min()} to {labels.max()}.")
    labels = labels.astype(np.int64)
    _, draw_rng = _streams(seed)
    # Inverse-CDF sampling, vectorised over examples. The last CDF entry is set
    # to exactly 1 so that rounding can never push a draw past class K - 1.
    cdf = np.cumsum(matrix, axis=1)
    cdf[:, -1] = 1.0
    uniforms = draw_rng.random(labels.shape)
    noisy = (uniforms[..., None] >= cdf[labels]).sum(axis=-1)
    return noisy.astype(np.int64)


def _truncated_normal(rng, mean, std, size, low=0.0, high=1.0):
    """Draws from N(mean, std^2) restricted to [low, high], by redrawing the
    values that fall outside (exact, and cheap while the interval holds
    most of the mass, as for rates in [0.1, 0.9] and std 0.1)."""
    values = rng.normal(mean, std, size)
    outside = (values < low) | (values > high)
    for _ in range(10_000):
        if not outside.any():
            return values
        values[outside] = rng.normal(mean, std, int(outside.sum()))
        outside = (values < low) | (values > high)
    # Mass in [low, high] too small to hit by redrawing: clip what is left.
    return np.clip(values, low, high)


def instance_dependent_labels(images, labels, num_classes, rate, seed,
                              rate_std=INSTANCE_RATE_STD):
    """Instance-dependent label noise (Xia et al., NeurIPS 2020, "Part-
    dependent label noise"; CMW-Net's feature-dependent setting).

    For each example i with label y: a flip rate q_i drawn from a normal
    around `rate` (std `rate_std`) truncated to [0, 1]; the image x_i,
    flattened and scaled to [0, 1], is projected by W_y, a standard-normal
    (pixels x K) matrix of its class; the wrong class is drawn from the
    softmax of those K scores with y's own excluded. So the label is kept
    with probability 1 - q_i and otherwise goes to a class that depends on
    what the image looks like (through W), as a human's mistake does. The
    expected rate of changed labels is about `rate`.

    Args:
        images: Array [N, ...] of images (uint8, or floats in [0, 255]).
        labels: Integer array [N] of clean labels in [0, num_classes).
        num_classes: K.
        rate: Mean flip rate in [0, 1].
        seed: Integer seed: fixes the flip rates, W and the draws.
        rate_std: Standard deviation of the flip rates before truncation.

    Returns:
        A new int64 array [N] of noisy labels.
    """
    labels = np.asarray(labels).astype(np.int64)
    images = np.asarray(images)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"instance noise: {images.shape[0]} images for {labels.shape[0]} "
            "labels; give one image per label.")
    k = int(num_classes)
    if labels.size and (labels.min() < 0 or labels.max() >= k):
        raise ValueError(
            f"Labels must lie in [0, {k}); got values from {labels.min()} to "
            f"{labels.max()}.")
    rate_rng, projection_rng, draw_rng = np.random.default_rng(seed).spawn(3)
    n = labels.shape[0]
    flip_rates = _truncated_normal(rate_rng, float(rate), rate_std, n)
    features = images.reshape(n, -1).astype(np.float32) / 255.0
    projection = projection_rng.standard_normal(
        (k, features.shape[1], k), dtype=np.float32)
    scores = np.empty((n, k), dtype=np.float64)
    for label in range(k):
        members = labels == label
        scores[members] = features[members] @ projection[label]
    rows = np.arange(n)
    scores[rows, labels] = -np.inf
    scores -= scores.max(axis=1, keepdims=True)
    wrong = np.exp(scores)
    wrong /= wrong.sum(axis=1, keepdims=True)
    probabilities = flip_rates[:, None] * wrong
    probabilities[rows, labels] += 1.0 - flip_rates
    cdf = np.cumsum(probabilities, axis=1)
    cdf[:, -1] = 1.0
    uniforms = draw_rng.random(n)
    return (uniforms[:, None] >= cdf).sum(axis=1).astype(np.int64)


def label_noise_statistics(clean, noisy, num_classes):
    """Summarises the noise actually realised in a set of labels.

    Args:
        clean: Integer array of true labels.
        noisy: Integer array of observed labels, same shape as `clean`.
        num_classes: Number of classes K.

    Returns:
        A JSON-serialisable dict with
        - "num_examples": int,
        - "realised_noise_rate": fraction of examples with noisy != clean,
        - "clean_counts", "noisy_counts": per-class counts (lists of K ints),
        - "corrupted_counts": per true class, how many labels were changed,
        - "transition_matrix": the empirical T as a K x K nested list of floats
          (row i: distribution of noisy labels among examples of true class i;
          all zeros for a class without examples).

    Raises:
        ValueError: If the arrays differ in shape.
    """
    clean = np.asarray(clean, dtype=np.int64).ravel()
    noisy = np.asarray(noisy, dtype=np.int64).ravel()
    if clean.shape != noisy.shape:
        raise ValueError(
            f"clean and noisy labels differ in length: {clean.size} vs "
            f"{noisy.size}.")
    k = int(num_classes)
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (clean, noisy), 1)
    row_sums = counts.sum(axis=1, keepdims=True)
    matrix = counts / np.maximum(row_sums, 1)
    corrupted = clean != noisy
    return {
        "num_examples": int(clean.size),
        "realised_noise_rate": float(corrupted.mean()) if clean.size else 0.0,
        "clean_counts": np.bincount(clean, minlength=k).tolist(),
        "noisy_counts": np.bincount(noisy, minlength=k).tolist(),
        "corrupted_counts": np.bincount(clean[corrupted], minlength=k).tolist(),
        "transition_matrix": matrix.tolist(),
    }
