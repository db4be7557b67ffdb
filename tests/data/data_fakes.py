"""Tiny on-disk data sets for the data tests: image folders and Clothing1M."""

import os

import numpy as np
from PIL import Image

# Each class c is drawn as a constant colour, so that a decoded (even
# augmented: reflect padding, cropping and flipping keep a constant image
# constant) image tells its true class.
COLOURS = ((200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30))


def write_image(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path)


def make_folder(root, class_names, counts, size=(8, 8), ext="png"):
    """Writes <root>/<split>/<class>/<i>.<ext>; counts: split -> per class."""
    for split, per_class in counts.items():
        for label, name in enumerate(class_names):
            for i in range(per_class):
                image = np.zeros(size + (3,), np.uint8) + np.array(
                    COLOURS[label], np.uint8)
                write_image(os.path.join(root, split, name, f"{i:03d}.{ext}"),
                            image)
    return str(root)


def prepare_folder(root, cache_dir, **kwargs):
    """`mwnet_tf.data.prepare` of a folder with the data tests' small sizes
    (2 meta per class, uniform noise 0.6, batches of 5 and 3, seed 0)."""
    from mwnet_tf import data as data_lib
    args = dict(path=root, cache_dir=cache_dir, meta_per_class=2,
                noise="uniform", noise_rate=0.6, batch_size=5,
                meta_batch_size=3, seed=0)
    args.update(kwargs)
    return data_lib.prepare("folder", **args)


def listing(root):
    """All paths under root with sizes and mtimes, to detect any write."""
    entries = []
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            stat = os.stat(path)
            entries.append((path, stat.st_size, stat.st_mtime_ns))
    return sorted(entries)


def make_clothing1m(root, per_class=3, size=(20, 30)):
    """A Clothing1M tree: 14 classes; per class `per_class` images per split.

    Noisy training labels: class c is labelled (c + 1) % 14 for the first image
    of each class, c otherwise. Clean labels are known for the first two
    training images of each class.
    """
    root = str(root)
    splits = {"noisy_train": [], "clean_train": [], "clean_val": [],
              "clean_test": []}
    noisy_kv, clean_kv = [], []
    for split_index, split in enumerate(splits):
        for c in range(14):
            for i in range(per_class):
                key = f"images/{split_index}/{c:02d}/{split}_{c}_{i}.jpg"
                image = np.full(size + (3,), 10 * c, np.uint8)
                write_image(os.path.join(root, key), image)
                splits[split].append(key)
                if split == "noisy_train":
                    noisy_kv.append((key, (c + 1) % 14 if i == 0 else c))
                    if i < 2:
                        clean_kv.append((key, c))
                else:
                    clean_kv.append((key, c))
    annotations = os.path.join(root, "annotations")
    os.makedirs(annotations)
    for name, rows in (("noisy_label_kv.txt", noisy_kv),
                       ("clean_label_kv.txt", clean_kv)):
        with open(os.path.join(annotations, name), "w") as f:
            f.writelines(f"{k} {v}\n" for k, v in rows)
    for split, keys in splits.items():
        with open(os.path.join(annotations, f"{split}_key_list.txt"), "w") as f:
            f.writelines(f"{k}\n" for k in keys)
    return root
