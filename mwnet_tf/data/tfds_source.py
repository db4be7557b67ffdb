"""CIFAR-10 / CIFAR-100 from tensorflow-datasets, loaded once into arrays."""

import socket

import numpy as np
import tensorflow_datasets as tfds

from mwnet_tf.data.source import Source, Split

TFDS_NAMES = ("cifar10", "cifar100")

# Rows read per step when copying a split into memory. `tfds.load(...,
# batch_size=-1)` would read everything in one batch, but under
# `tfds.testing.mock_data` it asks for a batch of sys.maxsize elements and
# aborts the process, so we read in chunks and concatenate.
_CHUNK = 10000
# Where tensorflow-datasets downloads CIFAR from. Offline, its downloader
# retries with back-off for minutes before it gives up; one name lookup tells
# in milliseconds that the machine cannot reach the host.
_DOWNLOAD_HOST = "www.cs.toronto.edu"


def _check_can_download(name, data_dir):
    try:
        socket.getaddrinfo(_DOWNLOAD_HOST, 443)
    except OSError as error:
        raise _CannotDownload(
            f"{name!r} is not prepared in data_dir={data_dir!r} and this "
            f"machine cannot reach {_DOWNLOAD_HOST} to download it ({error}). "
            "Pass data_dir= a directory where the data set was prepared with "
            "tfds, or use dataset='folder' with path= an image folder or "
            ".tar.gz archive.") from error


class _CannotDownload(RuntimeError):
    pass


def _load_splits(name, data_dir, download):
    (train, test), info = tfds.load(
        name, split=["train", "test"], data_dir=data_dir, download=download,
        with_info=True)
    return _to_arrays(train), _to_arrays(test), info


def _to_arrays(dataset):
    """(images, labels, ids) of a split, in the order tfds stores it."""
    dataset = dataset.map(lambda e: (e["image"], e["label"], e["id"]))
    images, labels, ids = [], [], []
    for image_chunk, label_chunk, id_chunk in tfds.as_numpy(
            dataset.batch(_CHUNK)):
        images.append(image_chunk)
        labels.append(label_chunk)
        ids.append(id_chunk)
    return (np.concatenate(images).astype(np.uint8),
            np.concatenate(labels).astype(np.int64), np.concatenate(ids))


def load_tfds(name, data_dir=None, download=True, canonical_order=False):
    """Loads the train and test splits of a tensorflow-datasets image data set.

    Args:
        name: "cifar10" or "cifar100".
        data_dir: tensorflow-datasets data directory; None uses its default
            (~/tensorflow_datasets).
        download: Whether tensorflow-datasets may download and prepare the data
            when it is not found in `data_dir`.
        canonical_order: Whether to put the training split in the data
            set's canonical order (the original CIFAR batch files', read
            from tfds' `id` feature, "train_00042" = example 42) instead of
            the shuffled order tfds stores: the order published label
            arrays (CIFAR-N) follow.

    Returns:
        A `Source` with uint8 images and int64 labels in memory and no trusted
        meta split.

    Raises:
        ValueError: For a name other than those in `TFDS_NAMES`.
        RuntimeError: If the data cannot be loaded (not prepared, and download
            disabled or impossible); the message says how to proceed.
    """
    if name not in TFDS_NAMES:
        raise ValueError(
            f"Unknown tensorflow-datasets source {name!r}; valid names are "
            f"{', '.join(TFDS_NAMES)}.")
    try:
        try:
            loaded = _load_splits(name, data_dir, download=False)
        except AssertionError:  # tfds' way of saying "not prepared here".
            if not download:
                raise
            _check_can_download(name, data_dir)
            loaded = _load_splits(name, data_dir, download=True)
        ((train_images, train_labels, train_ids),
         (test_images, test_labels, _), info) = loaded
    except _CannotDownload:
        raise
    except Exception as error:  # pylint: disable=broad-except
        # tensorflow-datasets fails in many ways when data is missing
        # (AssertionError when not prepared; network, import or download
        # errors when downloading); all of them mean the same thing to the
        # caller, and the original error is chained and quoted.
        raise RuntimeError(
            f"Could not load {name!r} with tensorflow-datasets "
            f"(data_dir={data_dir!r}, download={download}): "
            f"{type(error).__name__}: {str(error).rstrip('.')}. If this "
            "machine cannot "
            "download, pass data_dir= a directory where the data set was "
            "prepared with tfds, or use dataset='folder' with path= an image "
            "folder or .tar.gz archive.") from error
    class_names = tuple(info.features["label"].names)
    if canonical_order:
        from mwnet_tf.data.label_file import canonical_positions_of_ids
        order = np.argsort(canonical_positions_of_ids(train_ids))
        train_images, train_labels = train_images[order], train_labels[order]
    return Source(
        name=name, class_names=class_names,
        train=Split(labels=train_labels, images=train_images),
        test=Split(labels=test_labels, images=test_images))
