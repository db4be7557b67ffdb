"""tf.data input pipelines: in-memory arrays (CIFAR-style) and image files.

Augmentation follows the official Meta-Weight-Net code: for 32x32 images,
4-pixel REFLECT padding, a random 32x32 crop and a random horizontal flip;
for Clothing1M-style photos, resize (shorter side 256), random 224x224 crop and
flip for training, a central 224x224 crop for evaluation. Images are then
scaled to [0, 1] and normalised per channel.

All randomness is stateless and derived from a key per iteration over a dataset
(an epoch): key = (seed, e), where e is either the value of an `epoch`
variable read when the iteration starts, or, without one, the next number of a
seeded sequence (so each new iteration differs, and the sequence repeats for
the same seed). The order of pass p of an iteration is a stateless shuffle
keyed by fold_in(fold_in(key, p), 0); batch (or example) i is augmented with
seed fold_in(fold_in(fold_in(key, p), 1), i). With the `epoch` variable, epoch
e therefore sees the same batches whether or not the run was interrupted and
resumed before it.
"""

import numpy as np
import tensorflow as tf

# Per-channel mean and std of the CIFAR training images, as in the official code
# ([125.3, 123.0, 113.9] / 255 and [63.0, 62.1, 66.7] / 255).
CIFAR_MEAN = (125.3 / 255.0, 123.0 / 255.0, 113.9 / 255.0)
CIFAR_STD = (63.0 / 255.0, 62.1 / 255.0, 66.7 / 255.0)
# ImageNet statistics, the usual choice for Clothing1M with ImageNet-pretrained
# backbones.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(images, mean, std):
    """Scales uint8 images to [0, 1] and normalises each channel.

    Args:
        images: uint8 (or float in [0, 255]) tensor [..., C].
        mean: Per-channel means in [0, 1] units, length C.
        std: Per-channel standard deviations in [0, 1] units, length C.

    Returns:
        A float32 tensor of the same shape.
    """
    images = tf.cast(images, tf.float32) / 255.0
    return (images - tf.constant(mean, tf.float32)) / tf.constant(std,
                                                                  tf.float32)


def _reflect(index, size):
    """Maps indices in [-size + 1, 2 size - 2] into [0, size) by reflection."""
    index = tf.abs(index)
    return tf.where(index >= size, 2 * (size - 1) - index, index)


def crop_flip_draws(seed, batch_size, padding=4):
    """The random draws of `pad_crop_flip` for a batch: (top, left, flip).

    Each is a [batch_size] tensor: crop offsets in [-padding, padding] and
    whether to flip. Drawing them for a whole batch and applying a slice
    (`apply_crop_flip`) augments the slice exactly as the whole batch would
    be, which is how a worker augments only its share of a batch.
    """
    seeds = tf.random.experimental.stateless_split(seed, num=3)
    offsets = 2 * padding + 1
    top = tf.random.stateless_uniform([batch_size], seeds[0], 0, offsets,
                                      dtype=tf.int32) - padding
    left = tf.random.stateless_uniform([batch_size], seeds[1], 0, offsets,
                                       dtype=tf.int32) - padding
    flip = tf.random.stateless_uniform([batch_size], seeds[2], 0, 2,
                                       dtype=tf.int32) > 0
    return top, left, flip


def apply_crop_flip(images, top, left, flip):
    """Reflect-pads, crops and flips each image by its draws (see
    `crop_flip_draws`).

    No padded copy is made: each output pixel's source pixel is computed
    (reflecting indices that fall outside the image) and the whole batch is
    read with one gather, about 3x faster than `tf.pad` + crop on a CPU.
    """
    height, width, channels = images.shape[1:]
    batch = tf.shape(images)[0]
    rows = _reflect(top[:, None] + tf.range(height)[None, :], height)
    columns = tf.range(width)[None, :]
    # Flipping the crop maps output column j to crop column W - 1 - j.
    columns = _reflect(
        left[:, None] + tf.where(flip[:, None], width - 1 - columns, columns),
        width)
    pixels = rows[:, :, None] * width + columns[:, None, :]  # [B, H, W]
    flat = tf.reshape(images, [batch, height * width, channels])
    out = tf.gather(flat, tf.reshape(pixels, [batch, height * width]),
                    axis=1, batch_dims=1)
    return tf.reshape(out, [batch, height, width, channels])


def pad_crop_flip(images, seed, padding=4):
    """Random reflect-pad crop and horizontal flip of a batch, per image.

    Equivalent to padding every image by `padding` pixels in REFLECT mode,
    cropping a window of the original size at a uniformly random offset (each of
    the 2 * padding + 1 positions per axis equally likely) and flipping it left
    to right with probability 1/2, with independent draws per image.

    Args:
        images: Tensor [B, H, W, C] of any dtype, with static H, W, C and
            H, W > padding.
        seed: int32/int64 tensor [2], seed of the stateless random draws.
        padding: Padding in pixels on each side.

    Returns:
        A tensor like `images`.
    """
    return apply_crop_flip(
        images, *crop_flip_draws(seed, tf.shape(images)[0], padding))


def _sharded(shard, batch_size, drop_remainder):
    """(start, size) of a shard's slice of every batch; checks `shard`.

    Shard i of n is examples [i B / n, (i + 1) B / n) of every batch of B:
    the share of batch a multi-worker strategy gives worker i when it
    splits a global batch itself.
    """
    if shard is None:
        return 0, batch_size
    index, count = shard
    if not 0 <= index < count or batch_size % count:
        raise ValueError(
            f"shard={shard!r}: give (index, count) with 0 <= index < count "
            f"and count dividing the batch size {batch_size}.")
    if not drop_remainder:
        raise ValueError("shard needs drop_remainder=True: a last partial "
                         "batch does not split into equal shares.")
    size = batch_size // count
    return index * size, size


def _fold_in(key, data):
    return tf.random.experimental.stateless_fold_in(key, data)


def _iteration_key(seed, epoch):
    """A one-element dataset: the int64 [2] key of the current iteration.

    The element is computed when an iterator produces it, i.e. after the
    iterator was created at the start of an epoch, so it sees the value the
    `epoch` variable was given for that epoch.
    """
    if epoch is None:
        # With rerandomize_each_iteration, each new iterator draws the next
        # number of a sequence fixed by the seed.
        counter = tf.data.Dataset.random(
            seed=seed, rerandomize_each_iteration=True).take(1)
    else:
        counter = tf.data.Dataset.from_tensors(0).map(
            lambda _: tf.cast(epoch.read_value(), tf.int64))
    return counter.map(
        lambda value: tf.stack([tf.constant(seed, tf.int64), value]))


def _one_pass(key, num_examples, shuffle, batch_size, drop_remainder):
    """(indices, seed) of one pass: per batch if batch_size, else per example."""
    indices = tf.range(num_examples, dtype=tf.int64)
    if shuffle:
        indices = tf.random.experimental.stateless_shuffle(
            indices, seed=_fold_in(key, 0))
    indices = tf.data.Dataset.from_tensor_slices(indices)
    if batch_size:
        indices = indices.batch(batch_size, drop_remainder=drop_remainder)
    augment_key = _fold_in(key, 1)
    seeds = tf.data.Dataset.counter().map(lambda i: _fold_in(augment_key, i))
    return tf.data.Dataset.zip(indices, seeds)


def _index_stream(num_examples, seed, epoch, shuffle, repeat, batch_size=None,
                  drop_remainder=False):
    """Dataset of (indices, seed) for one iteration: one pass, or endless."""
    def passes(key):
        if not repeat:
            return _one_pass(_fold_in(key, 0), num_examples, shuffle,
                             batch_size, drop_remainder)
        return tf.data.Dataset.counter().flat_map(
            lambda p: _one_pass(_fold_in(key, p), num_examples, shuffle,
                                batch_size, drop_remainder))

    # flat_map hides the length, which Keras uses to size epochs and show
    # progress (also through a zip with another dataset); state it again.
    steps = tf.data.INFINITE_CARDINALITY
    if not repeat:
        steps = num_examples
        if batch_size:
            steps = (num_examples // batch_size if drop_remainder
                     else -(-num_examples // batch_size))
    stream = _iteration_key(seed, epoch).flat_map(passes)
    return stream.apply(tf.data.experimental.assert_cardinality(steps))


def _host_tensors(labels, corrupted, **arrays):
    # tf.data runs on the host; keep the arrays there even when a GPU is the
    # default device, or every batch would be copied back from the GPU.
    with tf.device("/cpu:0"):
        columns = [tf.convert_to_tensor(labels, tf.int32)]
        if corrupted is not None:
            columns.append(tf.cast(tf.convert_to_tensor(corrupted),
                                   tf.float32))
        converted = {name: tf.convert_to_tensor(value)
                     for name, value in arrays.items()}
    return columns, converted


def _subset_size(num_examples, subset):
    """How many examples an iteration covers: all, or the subset's."""
    if subset is None:
        return num_examples
    if not (isinstance(subset, tf.Variable) and subset.dtype.is_integer
            and subset.shape.rank == 1):
        raise ValueError("subset must be a rank-1 integer tf.Variable of "
                         f"example indices; got {subset!r}.")
    return int(subset.shape[0])


def _through(subset, positions):
    """Example indices of positions in the subset (read when the batch is
    made, so a new selection applies from the next batch on)."""
    if subset is None:
        return positions
    return tf.gather(tf.cast(subset.read_value(), tf.int64), positions)


def array_dataset(images, labels, batch_size, *, corrupted=None,
                  shuffle=False, augment=False, drop_remainder=False, seed=0,
                  epoch=None, repeat=False, mean=CIFAR_MEAN, std=CIFAR_STD,
                  padding=4, shard=None, subset=None):
    """Builds a batched dataset from uint8 images held in memory.

    The images are converted to one tensor once; each batch gathers its rows
    by index, so shuffling moves indices, not images. Augmentation is
    `pad_crop_flip`.

    Args:
        images: uint8 array [N, H, W, C], or a uint8 host tensor (shared, not
            copied, by the pipelines given it).
        labels: Integer array [N].
        batch_size: Batch size.
        corrupted: Optional array [N] of flags; if given, elements are
            `(image, label, corrupted)` with `corrupted` as float32 0/1.
        shuffle: Shuffle the examples, anew for every pass.
        augment: Apply random augmentation (see above).
        drop_remainder: Drop the last partial batch of a pass.
        seed: Integer seed of shuffling and augmentation.
        epoch: Optional scalar integer `tf.Variable` holding the current epoch,
            read at the start of each iteration to key its randomness (see the
            module docstring). None: each new iteration draws a new key.
        repeat: If True, the dataset is endless: pass after pass, each
            reshuffled and re-augmented. If False, one pass per iteration.
        mean: Per-channel normalisation mean, in [0, 1] units.
        std: Per-channel normalisation std, in [0, 1] units.
        padding: Padding of `pad_crop_flip`.
        shard: Optional `(index, count)`: build only the index-th of `count`
            equal, consecutive slices of every batch (one worker's share of
            each global batch; see `_sharded`), reading and augmenting
            only those examples. The random draws are the whole batch's, so
            the `count` shards of a batch, concatenated, equal the unsharded
            batch. Needs `drop_remainder`.
        subset: Optional rank-1 integer `tf.Variable` of example indices:
            the dataset iterates over these examples only (shuffled,
            batched and augmented as positions in it), reading the variable
            as each batch is made, so assigning new indices (of the same
            count) changes the examples from then on; a pseudo-clean meta
            set is chosen this way each epoch.

    Returns:
        A `tf.data.Dataset` of `(float32 [B, H, W, C], int32 [B])` or
        `(float32 [B, H, W, C], int32 [B], float32 [B])`; B is
        `batch_size // count` with a shard.
    """
    start, size = _sharded(shard, batch_size, drop_remainder)
    if not tf.is_tensor(images):
        images = np.asarray(images, np.uint8)
    columns, tensors = _host_tensors(labels, corrupted, images=images)
    images = tensors["images"]
    stream = _index_stream(_subset_size(int(images.shape[0]), subset), seed,
                           epoch, shuffle, repeat, batch_size, drop_remainder)

    def load(batch_indices, batch_seed):
        if augment:
            draws = crop_flip_draws(batch_seed, tf.shape(batch_indices)[0],
                                    padding)
        if shard is not None:
            batch_indices = batch_indices[start:start + size]
        batch_indices = _through(subset, batch_indices)
        batch = tf.gather(images, batch_indices)
        if augment:
            batch = apply_crop_flip(
                batch, *(d[start:start + size] if shard is not None else d
                         for d in draws))
        batch = normalize(batch, mean, std)
        return (batch,) + tuple(tf.gather(c, batch_indices) for c in columns)

    return stream.map(load, num_parallel_calls=tf.data.AUTOTUNE).prefetch(
        tf.data.AUTOTUNE)


def _resize_shorter_side(image, size):
    """Resizes so that the shorter side is `size`, keeping the aspect ratio."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = size / tf.reduce_min(shape)
    new_shape = tf.cast(tf.round(shape * scale), tf.int32)
    # The shorter side must be exactly `size` whatever the rounding.
    new_shape = tf.maximum(new_shape, size)
    return tf.image.resize(image, new_shape, method="bilinear", antialias=True)


def _center_crop(image, size):
    shape = tf.shape(image)
    top = (shape[0] - size) // 2
    left = (shape[1] - size) // 2
    return image[top:top + size, left:left + size]


def file_dataset(paths, labels, batch_size, *, corrupted=None, shuffle=False,
                 augment=False, drop_remainder=False, seed=0, epoch=None,
                 repeat=False, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                 resize=256, crop=224, shard=None, subset=None):
    """Builds a batched dataset that reads and decodes image files per element.

    Each image is decoded (JPEG/PNG/GIF/BMP, converted to RGB), resized so its
    shorter side is `resize`, then cropped to `crop` x `crop`: at a random
    position and flipped left-right with probability 1/2 when `augment`, at
    the centre otherwise.

    Args:
        paths: Array [N] of image file paths.
        labels: Integer array [N].
        batch_size: Batch size.
        corrupted: Optional array [N] of flags; if given, elements are
            `(image, label, corrupted)` with `corrupted` as float32 0/1.
        shuffle: Shuffle the examples, anew for every pass.
        augment: Apply random augmentation (see above).
        drop_remainder: Drop the last partial batch of a pass.
        seed: Integer seed of shuffling and augmentation.
        epoch: Optional scalar integer `tf.Variable` holding the current epoch,
            read at the start of each iteration to key its randomness (see the
            module docstring). None: each new iteration draws a new key.
        repeat: If True, the dataset is endless: pass after pass, each
            reshuffled and re-augmented. If False, one pass per iteration.
        mean: Per-channel normalisation mean, in [0, 1] units.
        std: Per-channel normalisation std, in [0, 1] units.
        resize: Length of the shorter side after resizing.
        crop: Side of the square crop; at most `resize`.
        shard: Optional `(index, count)`: read, decode and augment only the
            index-th of `count` equal, consecutive slices of every batch (as
            for `array_dataset`; each example keeps its own random seed).
            Needs `drop_remainder`.
        subset: Optional rank-1 integer `tf.Variable` of example indices to
            iterate over instead of all (as for `array_dataset`).

    Returns:
        A `tf.data.Dataset` of `(float32 [B, crop, crop, 3], int32 [B])` or
        `(float32 [B, crop, crop, 3], int32 [B], float32 [B])`; B is
        `batch_size // count` with a shard.
    """
    start, size = _sharded(shard, batch_size, drop_remainder)
    columns, tensors = _host_tensors(labels, corrupted,
                                     paths=np.asarray(paths, dtype=str))
    paths = tensors["paths"]
    stream = _index_stream(_subset_size(int(paths.shape[0]), subset), seed,
                           epoch, shuffle, repeat)

    def load(index, element_seed):
        index = _through(subset, index)
        image = tf.io.decode_image(tf.io.read_file(paths[index]), channels=3,
                                   expand_animations=False)
        image = _resize_shorter_side(image, resize)
        if augment:
            crop_seed, flip_seed = tf.unstack(
                tf.random.experimental.stateless_split(element_seed, num=2))
            image = tf.image.stateless_random_crop(image, [crop, crop, 3],
                                                   crop_seed)
            image = tf.image.stateless_random_flip_left_right(image,
                                                              flip_seed)
        else:
            image = _center_crop(image, crop)
        image = tf.ensure_shape(normalize(image, mean, std), [crop, crop, 3])
        return (image,) + tuple(c[index] for c in columns)

    if shard is not None:
        # Whole batches of (index, seed), then this shard's slice of each,
        # before any file is read.
        stream = stream.batch(batch_size, drop_remainder=True)
        stream = stream.map(
            lambda indices, seeds: (indices[start:start + size],
                                    seeds[start:start + size])).unbatch()
    dataset = stream.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(size, drop_remainder=drop_remainder).prefetch(
        tf.data.AUTOTUNE)
