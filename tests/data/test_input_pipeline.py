import os

import numpy as np
import pytest
import tensorflow as tf
from data_fakes import write_image

from mwnet_tf.data import pipeline


def _candidates(image, padding):
    """All reflect-padded crops of `image`, flipped or not."""
    h, w = image.shape[:2]
    padded = np.pad(image, [(padding, padding), (padding, padding), (0, 0)],
                    mode="reflect")
    out = []
    for top in range(2 * padding + 1):
        for left in range(2 * padding + 1):
            crop = padded[top:top + h, left:left + w]
            out.extend([crop, crop[:, ::-1]])
    return out


def test_pad_crop_flip_gives_shifted_flipped_copies():
    images = np.random.default_rng(0).integers(0, 256, (16, 6, 7, 3),
                                               dtype=np.uint8)
    out = pipeline.pad_crop_flip(tf.constant(images),
                                 tf.constant([1, 2], tf.int64),
                                 padding=2).numpy()
    assert out.shape == images.shape and out.dtype == np.uint8
    for image, result in zip(images, out):
        assert any(np.array_equal(result, c) for c in _candidates(image, 2))
    # Independent draws per image: not all images shifted the same way.
    assert sum(np.array_equal(r, i) for r, i in zip(out, images)) < 16


def test_pad_crop_flip_reaches_every_offset_and_flip():
    image = np.arange(5 * 5 * 1, dtype=np.int32).reshape(1, 5, 5, 1)
    batch = tf.constant(np.repeat(image, 2000, axis=0))
    out = pipeline.pad_crop_flip(batch, tf.constant([3, 4]), padding=1).numpy()
    candidates = _candidates(image[0], 1)
    seen = {next(k for k, c in enumerate(candidates) if np.array_equal(r, c))
            for r in out}
    assert seen == set(range(len(candidates)))


def test_array_dataset_structure_and_normalisation():
    images = np.full((10, 4, 4, 3), 255, np.uint8)
    labels = np.arange(10)
    dataset = pipeline.array_dataset(images, labels, 4,
                                     corrupted=labels % 2 == 0,
                                     drop_remainder=True)
    batches = list(dataset)
    assert len(batches) == 2
    x, y, c = batches[0]
    assert x.shape == (4, 4, 4, 3) and x.dtype == tf.float32
    assert y.dtype == tf.int32 and c.dtype == tf.float32
    np.testing.assert_array_equal(y, [0, 1, 2, 3])
    np.testing.assert_array_equal(c, [1, 0, 1, 0])
    expected = (1 - np.array(pipeline.CIFAR_MEAN)) / np.array(
        pipeline.CIFAR_STD)
    np.testing.assert_allclose(x[0, 0, 0], expected, rtol=1e-6)
    assert len(list(pipeline.array_dataset(images, labels, 4))) == 3


def test_seeded_pipeline_repeats_and_changes_per_epoch():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 8, 8, 3), dtype=np.uint8)
    labels = rng.integers(0, 5, 64)

    def make(seed):
        return pipeline.array_dataset(images, labels, 16, shuffle=True,
                                      augment=True, drop_remainder=True,
                                      seed=seed)

    first = next(iter(make(3)))
    again = next(iter(make(3)))
    other = next(iter(make(4)))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[1], other[1])
    dataset = make(3)
    epoch1, epoch2 = (next(iter(dataset)) for _ in range(2))
    np.testing.assert_array_equal(epoch1[0], first[0])
    assert not np.array_equal(epoch1[1], epoch2[1])


def test_one_pass_or_endless():
    images = np.zeros((10, 4, 4, 3), np.uint8)
    labels = np.arange(10)
    once = pipeline.array_dataset(images, labels, 3, shuffle=True,
                                  drop_remainder=True, seed=1)
    assert once.cardinality() == 3 and len(list(once)) == 3
    endless = pipeline.array_dataset(images, labels, 3, shuffle=True,
                                     drop_remainder=True, seed=1, repeat=True)
    batches = [y.numpy() for _, y in endless.take(9)]
    # Every pass of 3 batches holds 9 distinct examples, in a new order.
    for start in (0, 3, 6):
        assert np.unique(np.concatenate(batches[start:start + 3])).size == 9
    assert not np.array_equal(np.concatenate(batches[:3]),
                              np.concatenate(batches[3:6]))


def test_file_dataset_resize_and_crop(tmp_path):
    paths = []
    for i, size in enumerate([(300, 260), (250, 400)]):
        path = os.path.join(tmp_path, f"{i}.png")
        write_image(path, np.full(size + (3,), 255, np.uint8))
        paths.append(path)
    for augment in (False, True):
        dataset = pipeline.file_dataset(
            np.array(paths), np.array([1, 2]), 2, corrupted=np.array([0, 1]),
            shuffle=augment, augment=augment, seed=1, resize=256, crop=224)
        x, y, c = next(iter(dataset))
        assert x.shape == (2, 224, 224, 3) and x.dtype == tf.float32
        expected = (1 - np.array(pipeline.IMAGENET_MEAN)) / np.array(
            pipeline.IMAGENET_STD)
        np.testing.assert_allclose(x[:, 100, 100], [expected] * 2, rtol=1e-4)
        assert sorted(y.numpy().tolist()) == [1, 2]


def _epochs(dataset, epoch, epochs):
    """All batches of `epochs` iterations, with `epoch` set before each."""
    out = []
    for e in range(epochs):
        epoch.assign(e)
        out.append([[t.numpy() for t in batch] for batch in dataset])
    return out


def _assert_shards_concatenate_to_whole(make, count, epochs=2):
    """The `count` shards of every batch, concatenated in shard order, equal
    the unsharded batch: images (augmented), labels and flags, every epoch."""
    epoch = tf.Variable(0, dtype=tf.int64)
    whole = _epochs(make(None, epoch), epoch, epochs)
    # The same batches without augmentation: the images differ, so equal
    # shards below are not equal for want of augmentation.
    plain = _epochs(make(None, epoch, augment=False), epoch, 1)
    np.testing.assert_array_equal(plain[0][0][1], whole[0][0][1])
    assert not np.array_equal(plain[0][0][0], whole[0][0][0])
    shards = [_epochs(make((i, count), epoch), epoch, epochs)
              for i in range(count)]
    for e in range(epochs):
        assert len(whole[e]) > 0
        for b, batch in enumerate(whole[e]):
            for t, tensor in enumerate(batch):
                parts = [shard[e][b][t] for shard in shards]
                assert all(len(p) == len(tensor) // count for p in parts)
                np.testing.assert_array_equal(np.concatenate(parts), tensor)


def test_array_shards_concatenate_to_the_whole_batch():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8)
    labels = rng.integers(0, 5, 40)

    def make(shard, epoch, augment=True):
        return pipeline.array_dataset(
            images, labels, 8, corrupted=labels % 2 == 0, shuffle=True,
            augment=augment, drop_remainder=True, seed=5, epoch=epoch,
            shard=shard)

    for count in (2, 4):
        _assert_shards_concatenate_to_whole(make, count)


def test_endless_array_shards_concatenate_across_passes():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (10, 8, 8, 3), dtype=np.uint8)
    labels = np.arange(10)

    def batches(shard):
        dataset = pipeline.array_dataset(images, labels, 4, shuffle=True,
                                         augment=True, drop_remainder=True,
                                         seed=2, repeat=True, shard=shard)
        return [[t.numpy() for t in batch] for batch in dataset.take(7)]

    whole, first, second = batches(None), batches((0, 2)), batches((1, 2))
    for w, a, b in zip(whole, first, second):
        for t in range(2):
            np.testing.assert_array_equal(np.concatenate([a[t], b[t]]), w[t])


def test_file_shards_concatenate_to_the_whole_batch(tmp_path):
    rng = np.random.default_rng(2)
    paths = []
    for i in range(12):
        path = os.path.join(tmp_path, f"{i}.png")
        write_image(path, rng.integers(0, 256, (12 + i % 3, 14, 3),
                                       dtype=np.uint8))
        paths.append(path)
    labels = np.arange(12) % 3

    def make(shard, epoch, augment=True):
        return pipeline.file_dataset(
            np.array(paths), labels, 4, corrupted=labels == 0, shuffle=True,
            augment=augment, drop_remainder=True, seed=3, epoch=epoch,
            resize=12, crop=8, shard=shard)

    _assert_shards_concatenate_to_whole(make, 2)


def test_a_shard_reads_only_its_share_of_the_files(tmp_path):
    """Worker 1 of 2 never opens the files of worker 0's half."""
    paths = []
    for i in range(8):
        path = os.path.join(tmp_path, f"{i}.png")
        write_image(path, np.full((8, 8, 3), 10 * i, np.uint8))
        paths.append(path)
    dataset = pipeline.file_dataset(np.array(paths), np.arange(8), 4,
                                    drop_remainder=True, resize=8, crop=8,
                                    shard=(1, 2))
    for path in paths[:2] + paths[4:6]:
        os.remove(path)  # The first half of each batch: shard 0's.
    labels = np.concatenate([y.numpy() for _, y in dataset])
    np.testing.assert_array_equal(labels, [2, 3, 6, 7])


def test_a_bad_shard_is_refused_in_one_line():
    images = np.zeros((8, 4, 4, 3), np.uint8)
    for shard, drop, words in [((2, 2), True, "0 <= index < count"),
                               ((0, 3), True, "dividing the batch size 4"),
                               ((0, 2), False, "drop_remainder")]:
        with pytest.raises(ValueError, match=words) as error:
            pipeline.array_dataset(images, np.arange(8), 4, shard=shard,
                                   drop_remainder=drop)
        assert "\n" not in str(error.value)
