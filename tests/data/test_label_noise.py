import json

import numpy as np
import pytest

from mwnet_tf.data import noise as noise_lib

K = 10
P = 0.4
N = 200_000


@pytest.fixture(scope="module")
def clean_labels():
    return np.random.default_rng(0).integers(0, K, size=N)


@pytest.mark.parametrize("noise", noise_lib.MATRIX_NOISE_TYPES)
def test_empirical_transition_matches_definition(noise, clean_labels):
    matrix = noise_lib.noise_transition_matrix(K, noise, P, seed=3)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0)
    noisy = noise_lib.corrupt_labels(clean_labels, K, noise, P, seed=3)
    stats = noise_lib.label_noise_statistics(clean_labels, noisy, K)
    empirical = np.array(stats["transition_matrix"])
    per_row = np.bincount(clean_labels, minlength=K)[:, None]
    standard_error = np.sqrt(matrix * (1 - matrix) / per_row)
    assert np.all(np.abs(empirical - matrix) <= 5 * standard_error + 1e-12)


def test_definitions():
    uniform = noise_lib.noise_transition_matrix(K, "uniform", P, seed=0)
    np.testing.assert_allclose(np.diag(uniform), 1 - P + P / K)
    np.testing.assert_allclose(uniform[0, 1], P / K)
    np.testing.assert_array_equal(
        noise_lib.noise_transition_matrix(K, "none", P, seed=0), np.eye(K))
    flip = noise_lib.noise_transition_matrix(K, "flip", P, seed=0)
    flip2 = noise_lib.noise_transition_matrix(K, "flip2", P, seed=0)
    for c in range(K):
        assert flip[c, c] == pytest.approx(1 - P)
        off = np.delete(flip[c], c)
        assert sorted(off[off > 0]) == [pytest.approx(P)]
        off2 = np.delete(flip2[c], c)
        assert sorted(off2[off2 > 0]) == [pytest.approx(P / 2)] * 2
    pair = noise_lib.noise_transition_matrix(K, "pair", P, seed=0)
    for source, target in {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}.items():
        assert pair[source, target] == pytest.approx(P)
        assert pair[source, source] == pytest.approx(1 - P)
    for clean in (0, 1, 6, 7, 8):
        assert pair[clean, clean] == 1.0


def test_asym_is_pair_on_cifar10_and_the_next_of_five_on_cifar100():
    cifar10 = noise_lib.noise_transition_matrix(K, "asym", P, seed=0)
    np.testing.assert_array_equal(
        cifar10, noise_lib.noise_transition_matrix(K, "pair", P, seed=0))
    np.testing.assert_array_equal(
        noise_lib.corrupt_labels(np.arange(K).repeat(50), K, "asym", P, 4),
        noise_lib.corrupt_labels(np.arange(K).repeat(50), K, "pair", P, 4))
    cifar100 = noise_lib.noise_transition_matrix(100, "asym", P, seed=0)
    # apple(0) -> aquarium_fish(1), ..., beaver(4) -> apple(0); bed(5) ->
    # bee(6); worm(99) -> whale(95).
    for source, target in ((0, 1), (3, 4), (4, 0), (5, 6), (9, 5), (99, 95)):
        assert cifar100[source, source] == pytest.approx(1 - P)
        assert cifar100[source, target] == pytest.approx(P)
    assert np.count_nonzero(cifar100) == 200
    # Each group of five stays closed: nothing leaves it.
    groups = np.arange(100) // 5
    assert np.all(groups[np.nonzero(cifar100)[0]]
                  == groups[np.nonzero(cifar100)[1]])


def test_asym_cifar100_labels_follow_the_matrix():
    clean = np.random.default_rng(1).integers(0, 100, size=N)
    matrix = noise_lib.noise_transition_matrix(100, "asym", P, seed=2)
    noisy = noise_lib.corrupt_labels(clean, 100, "asym", P, seed=2)
    empirical = np.array(
        noise_lib.label_noise_statistics(clean, noisy, 100)[
            "transition_matrix"])
    per_row = np.bincount(clean, minlength=100)[:, None]
    standard_error = np.sqrt(matrix * (1 - matrix) / per_row)
    assert np.all(np.abs(empirical - matrix) <= 5 * standard_error + 1e-12)


@pytest.mark.parametrize("names", [
    noise_lib.CIFAR10_CLASS_NAMES,
    tuple(name.capitalize() for name in noise_lib.CIFAR10_CLASS_NAMES),
    tuple(str(label) for label in range(10)),
])
def test_asym_accepts_cifar_class_names(names):
    """CIFAR-10's classes in label order, named as CIFAR names them (in
    any case) or by their indices: the literature's asym noise, class name
    to class name, as without names."""
    matrix = noise_lib.noise_transition_matrix(10, "asym", P, 0,
                                               class_names=names)
    np.testing.assert_array_equal(
        matrix, noise_lib.noise_transition_matrix(10, "asym", P, 0))
    cifar = noise_lib.CIFAR10_CLASS_NAMES
    flips = {(cifar[source], cifar[target]): matrix[source, target]
             for source, target in zip(*np.nonzero(matrix))
             if source != target}
    assert flips == {("truck", "automobile"): P, ("bird", "airplane"): P,
                     ("deer", "horse"): P, ("cat", "dog"): P,
                     ("dog", "cat"): P}
    for name in ("airplane", "automobile", "frog", "horse", "ship"):
        assert matrix[cifar.index(name), cifar.index(name)] == 1.0
    clean = np.arange(10).repeat(50)
    np.testing.assert_array_equal(
        noise_lib.corrupt_labels(clean, 10, "asym", P, 4, class_names=names),
        noise_lib.corrupt_labels(clean, 10, "asym", P, 4))


@pytest.mark.parametrize("noise", ["asym", "pair"])
def test_asym_refuses_classes_in_another_order(noise):
    names = list(noise_lib.CIFAR10_CLASS_NAMES)
    names[1], names[9] = names[9], names[1]
    with pytest.raises(ValueError, match=f"{noise} noise maps CIFAR-10's .* "
                       "class 1 here is 'truck', not 'automobile'"):
        noise_lib.noise_transition_matrix(10, noise, P, 0, class_names=names)


def test_uniform_realised_rate(clean_labels):
    noisy = noise_lib.corrupt_labels(clean_labels, K, "uniform", P, seed=1)
    rate = np.mean(noisy != clean_labels)
    expected = P * (K - 1) / K
    assert abs(rate - expected) < 5 * np.sqrt(expected * (1 - expected) / N)


def test_flip_targets_fixed_and_never_the_class(clean_labels):
    noisy = noise_lib.corrupt_labels(clean_labels, K, "flip", P, seed=7)
    for c in range(K):
        changed = noisy[(clean_labels == c) & (noisy != c)]
        assert np.unique(changed).size == 1
        assert changed[0] != c
    noisy2 = noise_lib.corrupt_labels(clean_labels, K, "flip2", P, seed=7)
    for c in range(K):
        targets = np.unique(noisy2[(clean_labels == c) & (noisy2 != c)])
        assert targets.size == 2 and c not in targets


def test_seeds_and_input_untouched():
    labels = np.random.default_rng(1).integers(0, K, size=1000)
    copy = labels.copy()
    a = noise_lib.corrupt_labels(labels, K, "flip", 0.5, seed=5)
    b = noise_lib.corrupt_labels(labels, K, "flip", 0.5, seed=5)
    c = noise_lib.corrupt_labels(labels, K, "flip", 0.5, seed=6)
    np.testing.assert_array_equal(labels, copy)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a is not labels
    np.testing.assert_array_equal(
        noise_lib.corrupt_labels(labels, K, "none", 0.5, seed=5), labels)


def test_statistics_are_json_and_counted():
    stats = noise_lib.label_noise_statistics([0, 0, 1, 1], [0, 1, 1, 1], 2)
    json.dumps(stats)
    assert stats["realised_noise_rate"] == 0.25
    assert stats["clean_counts"] == [2, 2]
    assert stats["noisy_counts"] == [1, 3]
    assert stats["corrupted_counts"] == [1, 0]
    assert stats["transition_matrix"] == [[0.5, 0.5], [0.0, 1.0]]


@pytest.mark.parametrize("args, match", [
    ((K, "gaussian", 0.2), "Unknown noise type 'gaussian'"),
    ((K, "uniform", 1.5), r"noise_rate must be a number in \[0, 1\]"),
    ((K, "uniform", -0.1), r"noise_rate must be a number in \[0, 1\]"),
    ((K, "uniform", "0.2"), r"noise_rate must be a number in \[0, 1\]"),
    ((100, "pair", 0.2), "pair noise .* needs 10 classes"),
    ((20, "asym", 0.2), "asym noise is defined for CIFAR-10 .* got "
     "num_classes=20"),
    ((2, "flip2", 0.2), "flip2 noise needs at least 3 classes"),
    ((1, "flip", 0.2), "num_classes must be an integer >= 2"),
])
def test_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        noise_lib.noise_transition_matrix(*args, seed=0)


def test_labels_out_of_range():
    with pytest.raises(ValueError, match=r"Labels must lie in \[0, 3\)"):
        noise_lib.corrupt_labels([0, 3], 3, "uniform", 0.1, seed=0)


def _instance_probabilities(images, labels, k, rate, seed):
    """Each example's distribution of noisy labels, from the definition
    (Xia et al. 2020), with the generator's own streams."""
    rate_rng, projection_rng, _ = np.random.default_rng(seed).spawn(3)
    flip = noise_lib._truncated_normal(rate_rng, rate,
                                       noise_lib.INSTANCE_RATE_STD,
                                       len(labels))
    features = images.reshape(len(labels), -1).astype(np.float32) / 255.0
    projection = projection_rng.standard_normal(
        (k, features.shape[1], k), dtype=np.float32)
    rows = []
    for i, y in enumerate(labels):
        scores = (features[i] @ projection[y]).astype(np.float64)
        scores[y] = -np.inf
        wrong = np.exp(scores - scores.max())
        wrong /= wrong.sum()
        row = flip[i] * wrong
        row[y] += 1 - flip[i]
        rows.append(row)
    return np.array(rows), flip


def test_instance_noise_follows_each_images_distribution():
    k, n, rate = 4, 60, 0.4
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, size=(n, 3, 3, 3), dtype=np.uint8)
    labels = rng.integers(0, k, size=n)
    probabilities, flip = _instance_probabilities(images, labels, k, rate, 7)
    # The flip rates: truncated to [0, 1], centred on the rate.
    assert flip.min() >= 0 and flip.max() <= 1
    assert abs(flip.mean() - rate) < 0.05
    # Repeat every image many times under one seed: the draws per image
    # must follow that image's row (the same image and label give the same
    # row only through W, which the seed fixes: compare per copy instead).
    copies = 400
    many_images = np.repeat(images, copies, axis=0)
    many_labels = np.repeat(labels, copies)
    noisy = noise_lib.corrupt_labels(many_labels, k, "instance", rate, 7,
                                     images=many_images)
    # Rows of the repeated set from its own definition (flip rates differ
    # per copy, W is the same): average them per image.
    rows, _ = _instance_probabilities(many_images, many_labels, k, rate, 7)
    expected = rows.reshape(n, copies, k).mean(axis=1)
    observed = np.stack([np.bincount(noisy[i * copies:(i + 1) * copies],
                                     minlength=k) / copies for i in range(n)])
    standard_error = np.sqrt(expected * (1 - expected) / copies)
    assert np.all(np.abs(observed - expected) <= 5 * standard_error + 1e-9)
    # The wrong class depends on the image: with one label, two images
    # prefer different wrong classes somewhere.
    preferred = np.argmax(np.where(np.eye(k, dtype=bool)[labels], -1,
                                   probabilities), axis=1)
    assert len({(y, c) for y, c in zip(labels, preferred)}) > k
    # Same seed, same labels; another seed, others.
    again = noise_lib.corrupt_labels(many_labels, k, "instance", rate, 7,
                                     images=many_images)
    np.testing.assert_array_equal(noisy, again)
    other = noise_lib.corrupt_labels(many_labels, k, "instance", rate, 8,
                                     images=many_images)
    assert (other != noisy).any()
    realised = noise_lib.label_noise_statistics(many_labels, noisy, k)
    assert abs(realised["realised_noise_rate"] - rate) < 0.05


def test_instance_noise_needs_images_and_has_no_matrix():
    with pytest.raises(ValueError, match="pass images="):
        noise_lib.corrupt_labels(np.zeros(4, int), K, "instance", P, 1)
    with pytest.raises(ValueError, match="no class-level transition matrix"):
        noise_lib.noise_transition_matrix(K, "instance", P, 1)
