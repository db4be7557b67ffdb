import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from data_fakes import COLOURS, listing, write_image
from data_fakes import prepare_folder as _folder

import mwnet_tf
from mwnet_tf import data as data_lib
from mwnet_tf.data import noise as noise_lib
from mwnet_tf.data import pipeline
from mwnet_tf.data import preparation

# tiny_folder's classes in label order, and the colour index each was drawn
# with (colours were assigned in the order cherry, apple, banana).
COLOUR_OF_LABEL = {0: 1, 1: 2, 2: 0}


def _labels_from_images(x):
    """True labels of normalised constant-colour images."""
    pixels = (x.numpy() * np.array(pipeline.CIFAR_STD)
              + np.array(pipeline.CIFAR_MEAN)) * 255.0
    colour = pixels.reshape(len(pixels), -1, 3).mean(axis=1)
    distance = ((colour[:, None] - np.array(COLOURS)[None]) ** 2).sum(-1)
    by_colour = {c: label for label, c in COLOUR_OF_LABEL.items()}
    return np.array([by_colour[c] for c in distance.argmin(axis=1)])


def _assert_rate_matches_matrix(stats):
    """The realised noise rate is within 4 binomial standard errors of T's."""
    changed = 1.0 - np.diag(stats["transition_matrix_true"])
    counts = np.array(stats["train_counts_clean"])
    expected = float(counts @ changed / counts.sum())
    error = np.sqrt(expected * (1 - expected) / counts.sum())
    assert abs(stats["realised_noise_rate"] - expected) <= 4 * error


def test_folder_end_to_end(tiny_folder, cache_dir):
    before = listing(tiny_folder)
    data = _folder(tiny_folder, cache_dir)
    assert listing(tiny_folder) == before
    assert data.class_names == ("apple", "banana", "cherry")
    assert (data.num_train, data.num_meta, data.num_test) == (30, 6, 9)
    assert data.steps_per_epoch == 6 and data.meta_steps_per_epoch == 2
    assert data.image_shape == (8, 8, 3)
    true_labels, noisy_labels, flags = [], [], []
    for x, y, corrupted in data.train:
        assert x.shape == (5, 8, 8, 3) and x.dtype == tf.float32
        assert y.dtype == tf.int32 and corrupted.dtype == tf.float32
        true = _labels_from_images(x)
        np.testing.assert_array_equal(corrupted.numpy() == 1,
                                      y.numpy() != true)
        true_labels.append(true)
        noisy_labels.append(y.numpy())
        flags.append(corrupted.numpy())
    true_labels, noisy_labels, flags = (
        np.concatenate(a) for a in (true_labels, noisy_labels, flags))
    assert len(flags) == 30  # One epoch: every training example once.
    assert data.train.cardinality() == 6
    # The meta stream is endless; each pass of 2 batches holds 6 of the 6
    # meta examples, all correctly labelled.
    assert data.meta.cardinality() == tf.data.INFINITE_CARDINALITY
    meta = list(data.meta.take(6))
    for x, y in meta:
        assert x.shape == (3, 8, 8, 3)
        np.testing.assert_array_equal(y.numpy(), _labels_from_images(x))
    for first in (0, 2, 4):
        labels = np.concatenate([meta[first][1], meta[first + 1][1]])
        np.testing.assert_array_equal(np.bincount(labels), [2, 2, 2])
    x_eval, y_eval = next(iter(data.meta_eval))
    assert x_eval.shape == (5, 8, 8, 3)  # eval_batch_size = batch_size.
    np.testing.assert_array_equal(y_eval, _labels_from_images(x_eval))
    assert sum(len(y) for _, y in data.meta_eval) == 6
    stats = data.statistics
    json.dumps(stats)
    assert stats["meta_counts"] == [2, 2, 2]
    assert stats["train_counts_clean"] == [10, 10, 10]
    assert stats["train_counts_noisy"] == np.bincount(noisy_labels).tolist()
    # The statistics describe the labels the pipeline actually yields.
    assert stats["realised_noise_rate"] == pytest.approx(flags.mean())
    assert flags.sum() > 0
    np.testing.assert_allclose(
        stats["transition_matrix_empirical"],
        noise_lib.label_noise_statistics(true_labels, noisy_labels,
                                         3)["transition_matrix"])
    # Uniform noise at p = 0.6 over K = 3: (1 - p) I + p / K.
    np.testing.assert_allclose(stats["transition_matrix_true"],
                               0.4 * np.eye(3) + 0.2)


def test_train_examples_name_what_was_trained_on(tiny_folder, cache_dir):
    data = _folder(tiny_folder, cache_dir, train_subset=20, batch_size=4,
                   eval_batch_size=3)
    examples = data.train_examples
    assert len(examples) == data.num_train == 20
    # Each example's file lies in the folder of its true class.
    for file, clean in zip(examples.files, examples.clean_labels):
        assert file.split(os.sep)[:2] == ["train", data.class_names[clean]]
        assert os.path.isfile(os.path.join(tiny_folder, file))
    # `index` finds the example again in the loaded source split.
    source = data_lib.load_image_folder(tiny_folder, cache_dir=cache_dir)
    np.testing.assert_array_equal(source.train.files[examples.index],
                                  examples.files)
    np.testing.assert_array_equal(source.train.labels[examples.index],
                                  examples.clean_labels)
    # train_eval: one plain pass in this order, with the given labels.
    x, y = (np.concatenate(a) for a in zip(*data.train_eval))
    np.testing.assert_array_equal(y, examples.labels)
    np.testing.assert_array_equal(_labels_from_images(tf.constant(x)),
                                  examples.clean_labels)
    # The given labels are the ones training sees: the same (true, given)
    # pairs over an epoch of the shuffled, augmented pipeline.
    trained = [(t, int(g)) for x_b, y_b, _ in data.train.unbatch().batch(20)
               for t, g in zip(_labels_from_images(x_b), y_b.numpy())]
    given = list(zip(examples.clean_labels.tolist(), examples.labels.tolist()))
    assert sorted(trained) == sorted(given)
    assert (examples.labels != examples.clean_labels).any()
    # Labels taken as they come: their truth is unknown.
    assert _folder(tiny_folder, cache_dir,
                   noise="none").train_examples.clean_labels is None


def test_imbalance_after_meta_split_and_subset(tiny_folder, cache_dir):
    data = _folder(tiny_folder, cache_dir, imbalance_factor=5, batch_size=2)
    assert data.statistics["train_counts_clean"] == [10, 4, 2]
    assert data.statistics["meta_counts"] == [2, 2, 2]
    data = _folder(tiny_folder, cache_dir, train_subset=7, batch_size=2)
    assert data.num_train == 7 and data.steps_per_epoch == 3


def _first_batches(data):
    return next(iter(data.train)) + next(iter(data.meta))


def _assert_same(a, b):
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def _differ(a, b):
    return not all(np.array_equal(x, y) for x, y in zip(a, b))


def test_same_seed_same_data(tiny_folder, cache_dir):
    data = _folder(tiny_folder, cache_dir, seed=0)
    a = _first_batches(data)
    _assert_same(a, _first_batches(_folder(tiny_folder, cache_dir, seed=0)))
    assert _differ(a, _first_batches(_folder(tiny_folder, cache_dir, seed=5)))
    # A second epoch (new iteration) differs from the first.
    assert _differ(a, _first_batches(data))


def test_epoch_variable_keys_the_batches(tiny_folder, cache_dir):
    epoch = tf.Variable(0, dtype=tf.int64)
    data = _folder(tiny_folder, cache_dir, epoch=epoch)
    epoch.assign(3)
    third = _first_batches(data)
    epoch.assign(4)
    assert _differ(third, _first_batches(data))
    # A "resumed run": new pipelines, epoch variable restored to 3.
    resumed_epoch = tf.Variable(3, dtype=tf.int64)
    resumed = _folder(tiny_folder, cache_dir, epoch=resumed_epoch)
    _assert_same(third, _first_batches(resumed))
    # The meta passes within an epoch differ from each other.
    epoch.assign(3)
    meta = [y.numpy() for _, y in data.meta.take(4)]
    images = [x.numpy() for x, _ in data.meta.take(4)]
    assert _differ(images[:2], images[2:]) or _differ(meta[:2], meta[2:])


def test_trusted_meta_folder(tmp_path, cache_dir):
    from data_fakes import make_folder
    root = make_folder(tmp_path / "t", ("a", "b"),
                       {"train": 6, "test": 2, "meta": 3})
    data = data_lib.prepare("folder", path=root, cache_dir=cache_dir,
                            batch_size=4, meta_batch_size=2, seed=0)
    assert data.num_train == 12 and data.num_meta == 6
    assert data.statistics["meta_origin"] == "trusted 'meta' folder"


def test_distributes_over_two_replicas(tiny_folder, cache_dir,
                                       two_replica_strategy):
    epoch = tf.Variable(2, dtype=tf.int64)
    data = _folder(tiny_folder, cache_dir, batch_size=6, epoch=epoch)
    strategy = two_replica_strategy
    x, y, corrupted = next(iter(
        strategy.experimental_distribute_dataset(data.train)))
    # The global batch of 6 is split evenly, and each replica's flags still
    # belong to its own examples.
    parts = [strategy.experimental_local_results(t) for t in (x, y, corrupted)]
    assert [len(part) for part in parts[1]] == [3, 3]
    for x_part, y_part, c_part in zip(*parts):
        np.testing.assert_array_equal(
            c_part.numpy() == 1, y_part.numpy() != _labels_from_images(x_part))


def test_each_input_pipeline_builds_its_share_of_the_training_input(
        tiny_folder, cache_dir):
    """What distribute_datasets_from_function gives two workers of one
    replica each: halves of every global training and meta batch, which
    concatenated are the one-process batches of the same epoch."""
    epoch = tf.Variable(1, dtype=tf.int64)
    data = _folder(tiny_folder, cache_dir, batch_size=6, meta_batch_size=4,
                   epoch=epoch)

    def first_steps(dataset):
        return [tf.nest.flatten(element) for element in dataset.take(3)]

    whole = first_steps(data.training_input())
    halves = [first_steps(data.training_input(tf.distribute.InputContext(
        num_input_pipelines=2, input_pipeline_id=i, num_replicas_in_sync=2)))
        for i in (0, 1)]
    for step, tensors in enumerate(whole):
        for t, tensor in enumerate(tensors):
            parts = [half[step][t].numpy() for half in halves]
            assert len(parts[0]) == len(tensor) // 2
            np.testing.assert_array_equal(np.concatenate(parts), tensor)
    for pipelines, replicas in ((2, 4), (1, 2)):
        with pytest.raises(ValueError, match="one replica per pipeline"):
            data.training_input(tf.distribute.InputContext(
                num_input_pipelines=pipelines, input_pipeline_id=0,
                num_replicas_in_sync=replicas))


@pytest.mark.parametrize("noise, noise_rate, flagged", [
    ("none", 0.6, False), ("uniform", 0.6, True), ("uniform", 0.0, True)])
def test_corrupted_flag_only_when_noise_is_injected(tiny_folder, cache_dir,
                                                    noise, noise_rate,
                                                    flagged):
    # With noise="none" the labels may be noisy already (an image folder of
    # web labels, Clothing1M) and which are wrong is unknown, so no flag is
    # made up. Injected noise, even at rate 0, knows every example's flag.
    data = _folder(tiny_folder, cache_dir, noise=noise, noise_rate=noise_rate)
    assert len(data.train.element_spec) == (3 if flagged else 2)
    train_spec, meta_spec = mwnet_tf.with_meta(data.train,
                                               data.meta).element_spec
    assert train_spec == data.train.element_spec
    assert len(meta_spec) == 2
    x, y, *corrupted = next(iter(data.train))
    changed = y.numpy() != _labels_from_images(x)
    if flagged:
        np.testing.assert_array_equal(corrupted[0].numpy() == 1, changed)
    if noise == "none" or noise_rate == 0.0:
        assert not changed.any()
        assert data.statistics["realised_noise_rate"] == 0.0


def _cifar10_named_folder(root, names):
    for label, name in enumerate(names):
        for split, count in (("train", 4), ("test", 1)):
            for i in range(count):
                write_image(os.path.join(root, split, name, f"{i}.png"),
                            np.full((4, 4, 3), 20 * label, np.uint8))
    return str(root)


def test_asym_noise_on_a_folder_of_cifar10_classes(tmp_path, cache_dir):
    folder = _cifar10_named_folder(tmp_path / "c10",
                                   noise_lib.CIFAR10_CLASS_NAMES)
    data = data_lib.prepare("folder", path=folder, cache_dir=cache_dir,
                            meta_per_class=1, noise="asym", noise_rate=1.0,
                            batch_size=2, meta_batch_size=2, seed=0)
    # At rate 1 every source class is relabelled as its target.
    noisy = np.array(data.statistics["train_counts_noisy"])
    expected = np.array([6, 6, 0, 3, 0, 3, 3, 6, 3, 0])
    np.testing.assert_array_equal(noisy, expected)

    wrong = list(noise_lib.CIFAR10_CLASS_NAMES)
    wrong[0] = "aeroplane"
    folder = _cifar10_named_folder(tmp_path / "other", wrong)
    with pytest.raises(ValueError, match="class 0 here is 'aeroplane', not "
                       "'airplane'"):
        data_lib.prepare("folder", path=folder, cache_dir=cache_dir,
                         meta_per_class=1, noise="asym", batch_size=2,
                         meta_batch_size=2)


def test_tfds_cifar10_through_prepare():
    with tfds.testing.mock_data(num_examples=300):
        data = data_lib.prepare("cifar10", noise="uniform", noise_rate=0.4,
                                meta_per_class=5, batch_size=20,
                                meta_batch_size=10, seed=1)
    assert data.num_classes == 10 and data.image_shape == (32, 32, 3)
    assert data.num_meta == 50 and data.num_train == 250
    assert data.num_test == 300
    assert data.steps_per_epoch == 12
    x, y, corrupted = next(iter(data.train))
    assert x.shape == (20, 32, 32, 3) and y.shape == corrupted.shape == (20,)
    x_m, y_m = next(iter(data.meta))
    assert x_m.shape == (10, 32, 32, 3)
    assert sum(1 for _ in data.test) == 15
    json.dumps(data.statistics)
    _assert_rate_matches_matrix(data.statistics)


def test_tfds_cifar100_through_prepare():
    with tfds.testing.mock_data(num_examples=2000):
        data = data_lib.prepare("cifar100", noise="flip2", noise_rate=0.2,
                                meta_per_class=1, batch_size=50,
                                meta_batch_size=20, seed=1)
    assert data.num_classes == 100 and data.num_meta == 100
    assert data.statistics["meta_counts"] == [1] * 100
    _assert_rate_matches_matrix(data.statistics)


def test_tfds_unreachable_download_fails_fast(tmp_path, monkeypatch):
    from mwnet_tf.data import tfds_source

    def no_network(*args, **kwargs):
        raise OSError("Name or service not known")

    # The name lookup stands for the network: no download is attempted.
    monkeypatch.setattr(tfds_source.socket, "getaddrinfo", no_network)
    with pytest.raises(RuntimeError, match="cannot reach .*Pass data_dir="):
        data_lib.prepare("cifar10", data_dir=str(tmp_path), download=True)
    assert not any(tmp_path.iterdir())


def test_tfds_offline_error(tmp_path):
    with pytest.raises(RuntimeError, match="cannot download, pass data_dir="):
        data_lib.prepare("cifar10", data_dir=str(tmp_path), download=False)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(dataset="imagenet"), ValueError,
     "Unknown dataset 'imagenet'; valid datasets are cifar10, cifar100, "
     "folder, clothing1m"),
    (dict(dataset="cifar10", noise="gaussian"), ValueError,
     "Unknown noise type 'gaussian'; valid types are none, uniform"),
    (dict(dataset="cifar10", noise_rate=1.2), ValueError,
     r"noise_rate must be a number in \[0, 1\]; got 1.2"),
    (dict(dataset="cifar10", imbalance_factor=0.5), ValueError,
     "must be >= 1"),
    (dict(dataset="cifar10", meta_per_class=5000), ValueError,
     "meta_per_class=5000 is too large: cifar10 has 5000"),
    (dict(dataset="cifar10", meta_per_class=0), ValueError,
     r"meta_per_class \(meta examples per class\) must be a positive integer"),
    (dict(dataset="cifar100", noise="pair"), ValueError,
     "pair noise .* needs 10 classes .* got num_classes=100"),
    (dict(dataset="cifar10", seed=-1), ValueError,
     "seed must be a non-negative integer"),
    (dict(dataset="cifar10", batch_size=0), ValueError,
     "batch_size must be a positive integer"),
    (dict(dataset="cifar10", train_subset=0), ValueError,
     "train_subset must be a positive integer"),
    (dict(dataset="cifar10", path="/tmp"), ValueError,
     "path is not used by dataset='cifar10'"),
    (dict(dataset="folder"), ValueError, "dataset='folder' needs path="),
    (dict(dataset="folder", path="/nonexistent/cifar.tar.gz"),
     FileNotFoundError, "path '/nonexistent/cifar.tar.gz' does not exist"),
    (dict(dataset="folder", path="/tmp", data_dir="/tmp"), ValueError,
     "data_dir is the tensorflow-datasets directory"),
    (dict(dataset="clothing1m", path="/nonexistent", noise="none"),
     FileNotFoundError, "does not exist"),
    (dict(dataset="cifar10", data_dir="/nonexistent", download=False),
     FileNotFoundError, "data_dir '/nonexistent' does not exist"),
])
def test_bad_arguments_fail_before_loading(monkeypatch, kwargs, error, match):
    def no_loading(*args, **kwargs):
        raise AssertionError("prepare loaded data before checking arguments")

    monkeypatch.setattr(preparation, "_load", no_loading)
    with pytest.raises(error, match=match):
        data_lib.prepare(**kwargs)


def test_errors_that_need_the_data(tiny_folder, cache_dir):
    with pytest.raises(ValueError, match="class 0: it has only 12"):
        _folder(tiny_folder, cache_dir, meta_per_class=20)
    with pytest.raises(ValueError, match="fewer than batch_size=100"):
        _folder(tiny_folder, cache_dir, batch_size=100)
    with pytest.raises(ValueError, match="fewer than meta_batch_size=50"):
        _folder(tiny_folder, cache_dir, meta_batch_size=50)
    with pytest.raises(ValueError, match="pair noise .* needs 10 classes"):
        _folder(tiny_folder, cache_dir, noise="pair")
    with pytest.raises(ValueError, match="asym noise is defined for CIFAR-10"):
        _folder(tiny_folder, cache_dir, noise="asym")
    with pytest.raises(ValueError, match="train_subset=31 exceeds the 30"):
        _folder(tiny_folder, cache_dir, train_subset=31)
    with pytest.raises(ValueError, match="epoch must be None or a scalar"):
        _folder(tiny_folder, cache_dir, epoch=3)
