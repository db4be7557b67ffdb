import os
import shutil
import tarfile

import numpy as np
import pytest
from data_fakes import COLOURS, listing, make_folder, write_image

from mwnet_tf.data import image_folder


def _true_labels(images):
    """Class of each constant-colour image, from its colour."""
    colours = np.array(COLOURS, np.float32)
    pixel = images.reshape(len(images), -1, 3).mean(axis=1)
    return np.argmin(((pixel[:, None] - colours[None]) ** 2).sum(-1), axis=1)


def test_loads_with_alphabetical_labels_and_writes_nothing(tiny_folder,
                                                           cache_dir):
    before = listing(tiny_folder)
    source = image_folder.load_image_folder(tiny_folder, cache_dir=cache_dir)
    assert listing(tiny_folder) == before
    assert source.class_names == ("apple", "banana", "cherry")
    assert source.train.images.shape == (36, 8, 8, 3)
    assert source.train.images.dtype == np.uint8
    assert source.test.images.shape == (9, 8, 8, 3)
    assert source.meta is None
    # Colours were assigned in the order cherry, apple, banana.
    by_colour = {0: 2, 1: 0, 2: 1}
    for split in (source.train, source.test):
        expected = [by_colour[c] for c in _true_labels(split.images)]
        np.testing.assert_array_equal(split.labels, expected)


def test_cache_is_reused(tiny_folder, cache_dir):
    image_folder.load_image_folder(tiny_folder, cache_dir=cache_dir)
    decoded = os.listdir(os.path.join(cache_dir, "decoded"))
    assert len(decoded) == 1
    stamp = os.stat(os.path.join(cache_dir, "decoded", decoded[0])).st_mtime_ns
    again = image_folder.load_image_folder(tiny_folder, cache_dir=cache_dir)
    assert os.stat(os.path.join(cache_dir, "decoded",
                                decoded[0])).st_mtime_ns == stamp
    assert again.train.images.shape == (36, 8, 8, 3)


def test_cifar10_names_get_cifar10_order_and_meta_split(tmp_path, cache_dir):
    names = list(image_folder.CIFAR10_CLASSES)[::-1]  # Written in any order.
    root = tmp_path / "cifar"
    for split, count in (("train", 2), ("test", 1), ("meta", 1)):
        for name in names:
            for i in range(count):
                value = image_folder.CIFAR10_CLASSES.index(name) * 20
                write_image(str(root / split / name / f"{i}.png"),
                            np.full((4, 4, 3), value, np.uint8))
    source = image_folder.load_image_folder(str(root), cache_dir=cache_dir)
    assert source.class_names == image_folder.CIFAR10_CLASSES
    for split in (source.train, source.test, source.meta):
        np.testing.assert_array_equal(split.labels,
                                      split.images[:, 0, 0, 0] // 20)
    assert len(source.meta) == 10


def test_tar_gz_archive(tmp_path, cache_dir):
    tree = make_folder(tmp_path / "tree", ("a", "b"),
                       {"train": 4, "test": 2}, ext="jpg")
    user_folder = tmp_path / "user"
    user_folder.mkdir()
    archive = str(user_folder / "tiny.tar.gz")
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname="tiny")  # The tree wrapped in one folder.
    before = listing(str(user_folder))
    source = image_folder.load_image_folder(archive, cache_dir=cache_dir)
    assert source.class_names == ("a", "b")
    np.testing.assert_array_equal(_true_labels(source.train.images),
                                  source.train.labels)
    assert len(os.listdir(os.path.join(cache_dir, "extracted"))) == 1
    assert listing(str(user_folder)) == before
    # Second load comes from the decoded cache, even without the unpacked tree.
    shutil.rmtree(os.path.join(cache_dir, "extracted"))
    again = image_folder.load_image_folder(archive, cache_dir=cache_dir)
    np.testing.assert_array_equal(again.train.images, source.train.images)


def test_missing_root(tmp_path, cache_dir):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        image_folder.load_image_folder(str(tmp_path / "nowhere"), cache_dir)


def test_missing_split(tmp_path, cache_dir):
    root = make_folder(tmp_path / "t", ("a", "b"), {"train": 2})
    with pytest.raises(ValueError, match="has no test split"):
        image_folder.load_image_folder(root, cache_dir=cache_dir)


def test_empty_class_folder(tiny_folder, cache_dir):
    os.makedirs(os.path.join(tiny_folder, "test", "durian"))
    os.makedirs(os.path.join(tiny_folder, "train", "durian"))
    with pytest.raises(ValueError, match="durian.* holds no images"):
        image_folder.load_image_folder(tiny_folder, cache_dir=cache_dir)


def test_classes_differ_between_splits(tiny_folder, cache_dir):
    shutil.rmtree(os.path.join(tiny_folder, "test", "apple"))
    with pytest.raises(ValueError,
                       match=r"different classes: only in train \['apple'\]"):
        image_folder.load_image_folder(tiny_folder, cache_dir=cache_dir)


def test_unreadable_image_is_named(tiny_folder, cache_dir):
    bad = os.path.join(tiny_folder, "train", "banana", "005.png")
    with open(bad, "wb") as f:
        f.write(b"this is not a png")
    with pytest.raises(ValueError, match="005.png.* cannot be decoded"):
        image_folder.load_image_folder(tiny_folder, cache_dir=cache_dir)
    assert not os.path.exists(os.path.join(cache_dir, "decoded")) or not [
        f for f in os.listdir(os.path.join(cache_dir, "decoded"))
        if f.endswith(".npz")]


def test_image_of_another_size_is_named(tiny_folder, cache_dir):
    odd = os.path.join(tiny_folder, "test", "apple", "001.png")
    write_image(odd, np.zeros((9, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="001.png.* has shape"):
        image_folder.load_image_folder(tiny_folder, cache_dir=cache_dir)


def test_file_that_is_not_an_archive(tmp_path, cache_dir):
    path = tmp_path / "data.zip"
    path.write_bytes(b"zip")
    with pytest.raises(ValueError, match="not a tar archive"):
        image_folder.load_image_folder(str(path), cache_dir=cache_dir)
