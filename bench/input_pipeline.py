"""Images per second of the augmented CIFAR training pipeline.

    python bench/input_pipeline.py
    python bench/input_pipeline.py --compare_alternatives

Times `mwnet_tf.data.prepare(...).train` (gather from in-memory uint8 images,
reflect-pad crop + flip, normalise, batch) on the real CIFAR-10 archive of
../shared/data (decoded once into the cache), or on random 32x32 images if the
archive is not there. Reports the median of several timed passes over
--num_batches batches after --warmup batches. With --compare_alternatives it
also times the pipeline without augmentation and three other ways to augment
(per-image tf.image stateless ops; Keras, and keras-cv, RandomCrop/RandomFlip
on batches).
"""

import os
import sys
import time

from absl import app
from absl import flags


import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from mwnet_tf import data as data_lib  # noqa: E402

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = flags.FLAGS
flags.DEFINE_string(
    "archive", os.path.join(_REPO, "..", "shared", "data",
                            "cifar10-jpeg.tar.gz"),
    "CIFAR-10 image-folder archive; random images are used if it is missing.")
flags.DEFINE_string("cache_dir", None,
                    "Cache for the decoded archive (default ~/.cache/mwnet_tf).")
flags.DEFINE_integer("batch_size", 100, "Batch size.")
flags.DEFINE_integer("num_batches", 200, "Batches per timed pass.")
flags.DEFINE_integer("warmup", 20, "Batches read before timing.")
flags.DEFINE_integer("repeats", 5, "Timed passes; the median is reported.")
flags.DEFINE_integer("seed", 1, "Seed of data preparation and pipeline.")
flags.DEFINE_integer("synthetic_images", 50000,
                     "How many random images stand in for a missing archive "
                     "(CIFAR-10's training split by default).", lower_bound=1)
flags.DEFINE_bool("compare_alternatives", False,
                  "Also time other augmentation implementations.")


def images_per_second(dataset, batch_size, num_batches, warmup, repeats):
    """Median images/s over `repeats` passes of `num_batches` batches."""
    iterator = iter(dataset.repeat())
    for _ in range(warmup):
        next(iterator)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(num_batches):
            next(iterator)
        times.append(time.perf_counter() - start)
    return num_batches * batch_size / float(np.median(times))


def _alternatives(images, labels, batch_size, seed):
    """Other ways to build the same augmented pipeline, for comparison."""
    import keras  # Only needed here.

    images_t = tf.constant(images)
    labels_t = tf.constant(labels, tf.int32)
    n = len(labels)

    def per_image(index, element_seed):
        image = tf.pad(tf.gather(images_t, index), [[4, 4], [4, 4], [0, 0]],
                       mode="REFLECT")
        crop_seed, flip_seed = tf.unstack(
            tf.random.experimental.stateless_split(element_seed, 2))
        image = tf.image.stateless_random_crop(image, [32, 32, 3], crop_seed)
        image = tf.image.stateless_random_flip_left_right(image, flip_seed)
        return (data_lib.normalize(image, data_lib.CIFAR_MEAN,
                                   data_lib.CIFAR_STD),
                tf.gather(labels_t, index))

    per_image_ds = tf.data.Dataset.zip(
        tf.data.Dataset.range(n).shuffle(n, seed=seed),
        tf.data.Dataset.random(seed=seed).batch(2)).map(
            per_image, num_parallel_calls=tf.data.AUTOTUNE).batch(
                batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

    def batched_layers(crop, flip):
        """Reflect-pad 4, then `crop` and `flip` layers on whole batches."""
        def augment(indices):
            batch = tf.pad(tf.gather(images_t, indices),
                           [[0, 0], [4, 4], [4, 4], [0, 0]], mode="REFLECT")
            batch = flip(crop(tf.cast(batch, tf.float32)))
            return (data_lib.normalize(batch, data_lib.CIFAR_MEAN,
                                       data_lib.CIFAR_STD),
                    tf.gather(labels_t, indices))

        return tf.data.Dataset.range(n).shuffle(n, seed=seed).batch(
            batch_size, drop_remainder=True).map(
                augment, num_parallel_calls=tf.data.AUTOTUNE).prefetch(
                    tf.data.AUTOTUNE)

    import keras_cv  # Only for its layers of the same augmentation.
    keras_ds = batched_layers(
        keras.layers.RandomCrop(32, 32, seed=seed),
        keras.layers.RandomFlip("horizontal", seed=seed + 1))
    keras_cv_ds = batched_layers(
        keras_cv.layers.RandomCrop(32, 32, seed=seed),
        keras_cv.layers.RandomFlip("horizontal", seed=seed + 1))
    plain_ds = data_lib.array_dataset(images, labels, batch_size,
                                      shuffle=True, drop_remainder=True,
                                      seed=seed)
    return {"no augmentation (gather + normalise only)": plain_ds,
            "per-image tf.image stateless crop/flip": per_image_ds,
            "Keras RandomCrop + RandomFlip on batches": keras_ds,
            "keras-cv RandomCrop + RandomFlip on batches": keras_cv_ds}


def main(argv):
    del argv
    if os.path.exists(FLAGS.archive):
        # Only the train pipeline is timed; the meta batch follows
        # --batch_size so that a small archive's meta set is big enough.
        data = data_lib.prepare(
            "folder", path=FLAGS.archive, cache_dir=FLAGS.cache_dir,
            noise="uniform", noise_rate=0.4, seed=FLAGS.seed,
            batch_size=FLAGS.batch_size, meta_batch_size=FLAGS.batch_size)
        train = data.train
        what = f"CIFAR-10 archive ({data.num_train} training images)"
        if FLAGS.compare_alternatives:
            source = data_lib.load_image_folder(FLAGS.archive,
                                                cache_dir=FLAGS.cache_dir)
            images, labels = source.train.images, source.train.labels
    else:
        rng = np.random.default_rng(FLAGS.seed)
        images = rng.integers(0, 256, size=(FLAGS.synthetic_images, 32, 32, 3),
                              dtype=np.uint8)
        labels = rng.integers(0, 10, size=FLAGS.synthetic_images)
        train = data_lib.array_dataset(
            images, labels, FLAGS.batch_size, corrupted=labels < 0,
            shuffle=True, augment=True, drop_remainder=True, seed=FLAGS.seed)
        what = (f"{FLAGS.synthetic_images} synthetic 32x32 images (archive "
                "not found)")

    def measure(dataset):
        return images_per_second(dataset, FLAGS.batch_size, FLAGS.num_batches,
                                 FLAGS.warmup, FLAGS.repeats)

    print(f"input pipeline: {measure(train):.0f} images/s (train, augmented, "
          f"batch {FLAGS.batch_size}, median of {FLAGS.repeats} x "
          f"{FLAGS.num_batches} batches, {what}, "
          f"{os.cpu_count()} CPUs visible)")
    if FLAGS.compare_alternatives:
        for name, dataset in _alternatives(images, labels, FLAGS.batch_size,
                                           FLAGS.seed).items():
            print(f"  {name}: {measure(dataset):.0f} images/s")


if __name__ == "__main__":
    app.run(main)
