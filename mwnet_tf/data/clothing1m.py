"""Clothing1M (Xiao et al., 2015) in its published layout, read as file paths.

    <root>/images/<a>/<b>/<id>.jpg
    <root>/annotations/noisy_label_kv.txt        "images/0/61/x.jpg 4" per line
    <root>/annotations/clean_label_kv.txt
    <root>/annotations/noisy_train_key_list.txt  "images/0/61/x.jpg" per line
    <root>/annotations/clean_train_key_list.txt
    <root>/annotations/clean_val_key_list.txt
    <root>/annotations/clean_test_key_list.txt

Keys are paths relative to <root>. A million images do not fit in memory, so
the splits hold file paths and are decoded per element by the input pipeline.
"""

import os

import numpy as np

from mwnet_tf.data.source import Source, Split

NUM_CLASSES = 14
CLASS_NAMES = ("T-Shirt", "Shirt", "Knitwear", "Chiffon", "Sweater", "Hoodie",
               "Windbreaker", "Jacket", "Downcoat", "Suit", "Shawl", "Dress",
               "Vest", "Underwear")
ANNOTATION_FILES = (
    "noisy_label_kv.txt", "clean_label_kv.txt", "noisy_train_key_list.txt",
    "clean_train_key_list.txt", "clean_val_key_list.txt",
    "clean_test_key_list.txt")
# Clean splits that can serve as the meta set, and the key list of each.
META_SPLITS = {"clean_val": "clean_val_key_list.txt",
               "clean_train": "clean_train_key_list.txt"}


def _read_key_values(path):
    table = {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise ValueError(
                    f"{path}:{number}: expected '<image key> <label>', got "
                    f"{line.strip()!r}.")
            label = int(parts[1])
            if not 0 <= label < NUM_CLASSES:
                raise ValueError(
                    f"{path}:{number}: label {label} is outside "
                    f"[0, {NUM_CLASSES}).")
            table[parts[0]] = label
    return table


def _read_keys(path):
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def check_meta_split(meta_split):
    """Checks the name of the clean split to use as the meta set.

    Raises:
        ValueError: Unless `meta_split` is one of `META_SPLITS`.
    """
    if meta_split not in META_SPLITS:
        raise ValueError(
            f"Unknown Clothing1M meta split {meta_split!r}; valid are "
            f"{', '.join(META_SPLITS)}.")


def check_clothing1m_root(root):
    """Checks that `root` has the Clothing1M annotation files.

    Args:
        root: Clothing1M root directory.

    Raises:
        FileNotFoundError: If the root or an annotation file is missing.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"Clothing1M root {root!r} does not exist or is not a directory.")
    for name in ANNOTATION_FILES:
        path = os.path.join(root, "annotations", name)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"Clothing1M annotation file {path!r} is missing; expected "
                f"<root>/annotations/{{{','.join(ANNOTATION_FILES)}}} and "
                "<root>/images/....")


def _split(root, keys, table, table_name, clean_table=None):
    missing = [k for k in keys if k not in table]
    if missing:
        raise ValueError(
            f"{len(missing)} keys of a Clothing1M key list have no label in "
            f"{table_name}, e.g. {missing[0]!r}.")
    paths = np.array([os.path.join(root, k) for k in keys])
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Clothing1M image {path!r} is missing.")
    labels = np.array([table[k] for k in keys], dtype=np.int64)
    clean = None
    if clean_table is not None:
        clean = np.array([clean_table.get(k, -1) for k in keys],
                         dtype=np.int64)
    return Split(labels=labels, paths=paths, clean_labels=clean)


def load_clothing1m(root, meta_split="clean_val"):
    """Reads the Clothing1M splits as file paths and labels.

    - train: `noisy_train_key_list.txt` with the noisy labels; `clean_labels`
      holds the clean label of the training images that also have one in
      `clean_label_kv.txt`, -1 for the others.
    - meta (trusted, clean labels): `clean_val_key_list.txt` by default, as
      Meta-Weight-Net draws its Clothing1M meta set from the clean validation
      data; `meta_split="clean_train"` uses the clean training set instead.
    - test: `clean_test_key_list.txt` with clean labels.

    Every listed image is checked to exist (one `stat` per file, a few
    seconds for the full data set), so that a missing file is named here rather
    than failing an epoch later.

    Args:
        root: Clothing1M root directory (holding `images/` and `annotations/`).
        meta_split: "clean_val" or "clean_train".

    Returns:
        A `Source` whose splits hold file paths.

    Raises:
        FileNotFoundError: If the root, an annotation file or a listed image is
            missing.
        ValueError: For an unknown `meta_split`, a malformed annotation line,
            or a key without a label.
    """
    check_meta_split(meta_split)
    root = os.path.expanduser(str(root))
    check_clothing1m_root(root)

    def annotation(name):
        return os.path.join(root, "annotations", name)

    noisy = _read_key_values(annotation("noisy_label_kv.txt"))
    clean = _read_key_values(annotation("clean_label_kv.txt"))
    train = _split(root, _read_keys(annotation("noisy_train_key_list.txt")),
                   noisy, "noisy_label_kv.txt", clean_table=clean)
    meta = _split(root, _read_keys(annotation(META_SPLITS[meta_split])),
                  clean, "clean_label_kv.txt")
    test = _split(root, _read_keys(annotation("clean_test_key_list.txt")),
                  clean, "clean_label_kv.txt")
    return Source(name="clothing1m", class_names=CLASS_NAMES, train=train,
                  test=test, meta=meta,
                  meta_origin=f"Clothing1M {META_SPLITS[meta_split]}")
