"""Image-folder trees (and .tar.gz archives of them), decoded once and cached.

Layout, as read by `tfds.folder_dataset.ImageFolder`:

    <root>/train/<class>/<image>.{jpg,jpeg,png}
    <root>/test/<class>/<image>
    <root>/meta/<class>/<image>      (optional: a trusted clean meta set)

Decoding tens of thousands of JPEG files takes a while, so the decoded uint8
arrays are written once to `<cache_dir>/decoded/` and loaded from there on
later runs. An archive is unpacked once into `<cache_dir>/extracted/`. Nothing
is ever written next to the user's data.
"""

import hashlib
import os
import shutil
import tarfile
import tempfile

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from mwnet_tf.data.source import Source, Split
from mwnet_tf.files import replace_atomically

DEFAULT_CACHE_DIR = os.path.join("~", ".cache", "mwnet_tf")
REQUIRED_SPLITS = ("train", "test")
OPTIONAL_SPLITS = ("meta",)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")  # What ImageFolder reads.
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")

# CIFAR-10 label order. "pair" noise and comparisons with tfds' cifar10 need
# it, so a folder whose classes are exactly these names is numbered in this
# order. (It happens to be alphabetical, ImageFolder's order, too; the explicit
# rule keeps that an asserted fact rather than a coincidence.)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog",
                   "frog", "horse", "ship", "truck")

# Bump when the layout of the cached arrays changes.
_CACHE_VERSION = "1"


def is_archive(path):
    """Whether `path` names a tar archive this module can unpack."""
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


def check_path(path):
    """Checks that `path` is an image folder or a tar archive; reads nothing.

    Args:
        path: Root directory of an image-folder tree, or a .tar.gz / .tgz /
            .tar archive of one; "~" is expanded.

    Returns:
        The path with "~" expanded.

    Raises:
        FileNotFoundError: If `path` does not exist.
        ValueError: If `path` is a file but not a tar archive.
    """
    path = os.path.expanduser(str(path))
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"path {path!r} does not exist; pass an image folder "
            "(<root>/train/<class>/<image>) or a .tar.gz archive of one.")
    if os.path.isfile(path) and not is_archive(path):
        raise ValueError(
            f"path {path!r} is a file but not a tar archive "
            f"({', '.join(ARCHIVE_SUFFIXES)}); pass a folder or an archive.")
    return path


def class_order(names):
    """Returns the class names in label order: CIFAR-10 order or alphabetical.

    Args:
        names: Iterable of class folder names.

    Returns:
        A tuple of names; position = label.
    """
    names = set(names)
    if names == set(CIFAR10_CLASSES):
        return CIFAR10_CLASSES
    return tuple(sorted(names))


def _image_files(folder):
    return sorted(
        name for name in os.listdir(folder)
        if name.lower().endswith(IMAGE_EXTENSIONS)
        and os.path.isfile(os.path.join(folder, name)))


def _subfolders(folder):
    return sorted(
        name for name in os.listdir(folder)
        if os.path.isdir(os.path.join(folder, name)))


def scan_image_folder(root):
    """Lists an image-folder tree and checks its structure, without decoding.

    Args:
        root: Directory holding the split folders.

    Returns:
        `(class_names, files)`: class names in label order (see `class_order`)
        and a dict split -> list of (relative path, label), sorted by path.

    Raises:
        FileNotFoundError: If `root` does not exist.
        ValueError: If "train" or "test" is missing, a class folder holds no
            images, or the splits have different classes.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"Image folder {root!r} does not exist or is not a directory.")
    present = _subfolders(root)
    missing = [s for s in REQUIRED_SPLITS if s not in present]
    if missing:
        raise ValueError(
            f"Image folder {root!r} has no {'/'.join(missing)} split; expected "
            f"<root>/train/<class>/<image> and <root>/test/<class>/<image> "
            f"(optional <root>/meta/...), found folders {present}.")
    splits = [s for s in REQUIRED_SPLITS + OPTIONAL_SPLITS if s in present]
    classes = {}
    for split in splits:
        split_dir = os.path.join(root, split)
        classes[split] = _subfolders(split_dir)
        if not classes[split]:
            raise ValueError(
                f"Split folder {split_dir!r} has no class folders.")
        for name in classes[split]:
            if not _image_files(os.path.join(split_dir, name)):
                raise ValueError(
                    f"Class folder {os.path.join(split_dir, name)!r} holds no "
                    f"images ({', '.join(IMAGE_EXTENSIONS)}); remove it or add "
                    "images.")
    for split in splits[1:]:
        if classes[split] != classes["train"]:
            only_train = sorted(set(classes["train"]) - set(classes[split]))
            only_here = sorted(set(classes[split]) - set(classes["train"]))
            raise ValueError(
                f"Splits 'train' and {split!r} of {root!r} have different "
                f"classes: only in train {only_train}, only in {split} "
                f"{only_here}.")
    class_names = class_order(classes["train"])
    label_of = {name: label for label, name in enumerate(class_names)}
    files = {}
    for split in splits:
        entries = []
        for name in classes[split]:
            for file_name in _image_files(os.path.join(root, split, name)):
                entries.append(
                    (os.path.join(split, name, file_name), label_of[name]))
        files[split] = sorted(entries)
    return class_names, files


def _hash_file_head(path, num_bytes=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read(num_bytes))
    return digest.hexdigest()


def _archive_key(path):
    """Cache key of an archive: file name, size and a hash of its first MiB."""
    name = os.path.basename(path)
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    size = os.path.getsize(path)
    return f"{name}-{size}-{_hash_file_head(path)[:12]}"


def _files_key(root, entries, name):
    """Cache key: `name` and a hash of each (relative path, label) entry
    with its file's size and mtime (label "" where the cache holds no
    labels)."""
    digest = hashlib.sha256(_CACHE_VERSION.encode())
    for relative, label in entries:
        stat = os.stat(os.path.join(root, relative))
        digest.update(f"{relative}\0{label}\0{stat.st_size}\0"
                      f"{stat.st_mtime_ns}\n".encode())
    return f"{name}-{digest.hexdigest()[:16]}"


def _folder_key(root, files):
    """Cache key of a folder: its name and a hash of every file's path,
    label, size, mtime."""
    return _files_key(
        root, [entry for split in sorted(files) for entry in files[split]],
        os.path.basename(os.path.normpath(root)) or "root")


def extract_archive(archive, cache_dir):
    """Unpacks a tar archive once into the cache and returns the tree's root.

    The archive is unpacked into `<cache_dir>/extracted/<key>/`, keyed by the
    archive's name, size and a hash of its first MiB; a second call returns the
    existing tree. Unpacking goes to a temporary folder that is renamed when
    complete, so an interrupted or concurrent run never leaves half a tree.

    Args:
        archive: Path of a .tar.gz / .tgz / .tar file.
        cache_dir: Cache directory.

    Returns:
        The directory holding the split folders (the unpacked folder itself, or
        its only subfolder if the archive wraps the tree in one).

    Raises:
        FileNotFoundError: If the archive does not exist.
        ValueError: If it is not a readable tar archive.
    """
    if not os.path.isfile(archive):
        raise FileNotFoundError(f"Archive {archive!r} does not exist.")
    target = os.path.join(cache_dir, "extracted", _archive_key(archive))
    if not os.path.isdir(target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".partial-",
                                   dir=os.path.dirname(target))
        try:
            with tarfile.open(archive) as tar:
                # The "data" filter refuses absolute paths, links out of the
                # tree and special files.
                tar.extractall(staging, filter="data")
            try:
                os.rename(staging, target)
            except OSError:  # Another process finished first: use its tree.
                shutil.rmtree(staging, ignore_errors=True)
        except tarfile.TarError as error:
            shutil.rmtree(staging, ignore_errors=True)
            raise ValueError(
                f"Cannot unpack {archive!r}: {error}.") from error
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    entries = _subfolders(target)
    if not any(s in entries for s in REQUIRED_SPLITS) and len(entries) == 1:
        return os.path.join(target, entries[0])
    return target


def _find_bad_image(paths, shape):
    """Returns (path, reason) of the first file that fails to decode to `shape`."""
    for path in paths:
        try:
            image = tf.io.decode_image(tf.io.read_file(path), channels=3,
                                       expand_animations=False)
        except tf.errors.OpError as error:
            return path, f"cannot be decoded ({error.message.strip()})"
        if tuple(image.shape) != tuple(shape):
            return path, (f"has shape {tuple(image.shape)}, but the first "
                          f"training image has {tuple(shape)}; all images "
                          "must have the same size")
    return None


def _decode_split(builder, root, split, files, class_names, shape):
    """Decodes one split with ImageFolder into (images, labels, relative paths)."""
    # ImageFolder numbers classes by the sorted union of all split folders;
    # translate its labels to ours through the names.
    folder_names = builder.info.features["label"].names
    ours = {name: label for label, name in enumerate(class_names)}
    to_ours = tf.constant([ours.get(name, -1) for name in folder_names],
                          dtype=tf.int64)
    dataset = builder.as_dataset(split=split, shuffle_files=False)

    def convert(example):
        # ensure_shape fails at run time on an image of another size, which
        # sends us to the slow path below to name the file.
        image = tf.ensure_shape(example["image"], shape)
        return image, tf.gather(to_ours, example["label"]), \
            example["image/filename"]

    dataset = dataset.map(convert, num_parallel_calls=tf.data.AUTOTUNE)
    images, labels, names = [], [], []
    try:
        for image, label, name in dataset.batch(2048).prefetch(2):
            images.append(image.numpy())
            labels.append(label.numpy())
            names.append(name.numpy())
    except tf.errors.OpError as error:
        paths = [os.path.join(root, relative) for relative, _ in files]
        bad = _find_bad_image(paths, shape)
        if bad is None:
            raise
        raise ValueError(f"Image {bad[0]!r} {bad[1]}.") from error
    images = np.concatenate(images)
    labels = np.concatenate(labels)
    relative = np.array(
        [os.path.relpath(n.decode(), root) for n in np.concatenate(names)])
    # ImageFolder shuffles each split (with a fixed seed); sort by file path so
    # that the arrays are in a documented order that does not depend on it.
    order = np.argsort(relative, kind="stable")
    return images[order], labels[order], relative[order]


def _image_shape(path):
    """The decoded shape of the image at `path` (every other must match)."""
    try:
        return tuple(tf.io.decode_image(tf.io.read_file(path), channels=3,
                                        expand_animations=False).shape)
    except tf.errors.OpError as error:
        raise ValueError(f"Image {path!r} cannot be decoded "
                         f"({error.message.strip()}).") from error


def _decode_tree(root, class_names, files):
    shape = _image_shape(os.path.join(root, files["train"][0][0]))
    builder = tfds.folder_dataset.ImageFolder(root)
    arrays = {"class_names": np.array(class_names)}
    for split in files:
        images, labels, relative = _decode_split(
            builder, root, split, files[split], class_names, shape)
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = labels.astype(np.int64)
        arrays[f"{split}_files"] = relative
    return arrays


def _source_from_arrays(arrays, name):
    def split(key):
        return Split(labels=arrays[f"{key}_labels"].astype(np.int64),
                     images=arrays[f"{key}_images"],
                     files=arrays.get(f"{key}_files"))

    has_meta = "meta_images" in arrays
    return Source(
        name=name, class_names=tuple(str(c) for c in arrays["class_names"]),
        train=split("train"), test=split("test"),
        meta=split("meta") if has_meta else None,
        meta_origin="trusted 'meta' folder" if has_meta else None)


def load_image_folder(path, cache_dir=None):
    """Loads an image-folder tree or a tar archive of one into memory.

    Class labels: if the class names are the ten CIFAR-10 names, labels follow
    CIFAR-10 order (airplane=0 ... truck=9); otherwise classes are numbered in
    alphabetical order, the order `tfds.folder_dataset.ImageFolder` uses. Within
    a split, examples are sorted by file path. All images must have the same
    size; grey or RGBA images are converted to RGB.

    Args:
        path: Root directory of the tree, or a .tar.gz / .tgz / .tar archive
            of one (unpacked once into the cache).
        cache_dir: Directory for unpacked archives and decoded arrays; None
            means `~/.cache/mwnet_tf`.

    Returns:
        A `Source` with uint8 images in memory; its `meta` is the trusted
        `meta` split when the tree has one.

    Raises:
        FileNotFoundError: If `path` does not exist.
        ValueError: For a malformed tree (missing split, empty class folder,
            classes differing between splits) or an image that cannot be
            decoded or has another size (the message names the file).
    """
    cache_dir = os.path.expanduser(cache_dir or DEFAULT_CACHE_DIR)
    path = check_path(path)
    name = os.path.basename(os.path.normpath(path))
    if os.path.isfile(path):
        # An archive's key is cheap to compute, so its decoded arrays can be
        # found without unpacking or listing anything.
        cached = os.path.join(cache_dir, "decoded",
                              f"{_archive_key(path)}-v{_CACHE_VERSION}.npz")
        if os.path.exists(cached):
            with np.load(cached) as arrays:
                return _source_from_arrays(dict(arrays), name)
        root = extract_archive(path, cache_dir)
        class_names, files = scan_image_folder(root)
    else:
        root = path
        class_names, files = scan_image_folder(root)
        cached = os.path.join(cache_dir, "decoded",
                              f"{_folder_key(root, files)}.npz")
        if os.path.exists(cached):
            with np.load(cached) as arrays:
                return _source_from_arrays(dict(arrays), name)
    arrays = _decode_tree(root, class_names, files)
    os.makedirs(os.path.dirname(cached), exist_ok=True)
    replace_atomically(cached, lambda file: np.savez(file, **arrays),
                       mode="wb")
    return _source_from_arrays(arrays, name)


def _root_holding(root, relative):
    """The folder under which `relative` exists: `root`, or its parent when
    `extract_archive` stepped into an archive's only folder but the label
    file's paths include that folder's name."""
    if os.path.exists(os.path.join(root, relative)):
        return root
    parent = os.path.dirname(os.path.normpath(root))
    if os.path.exists(os.path.join(parent, relative)):
        return parent
    return root


def _check_listed_files(root, files, source):
    missing = [f for f in files if not os.path.isfile(os.path.join(root, f))]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of the {len(files)} images listed in {source!r} "
            f"are not under {root!r} (e.g. {', '.join(missing[:3])}); paths "
            "in a label file are relative to the data root (--data_path).")
    wrong = [f for f in files if not f.lower().endswith(IMAGE_EXTENSIONS)]
    if wrong:
        raise ValueError(
            f"{source!r} lists files that are not images "
            f"({', '.join(IMAGE_EXTENSIONS)}), e.g. {wrong[0]!r}.")


def _decode_files(root, files):
    """uint8 [N, H, W, 3] of the listed files, all of the first one's size."""
    paths = [os.path.join(root, f) for f in files]
    shape = _image_shape(paths[0])

    def decode(path):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3,
                                   expand_animations=False)
        return tf.ensure_shape(image, shape)

    dataset = tf.data.Dataset.from_tensor_slices(paths).map(
        decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    chunks = []
    try:
        for chunk in dataset.batch(2048).prefetch(2):
            chunks.append(chunk.numpy())
    except tf.errors.OpError as error:
        bad = _find_bad_image(paths, shape)
        if bad is None:
            raise
        raise ValueError(f"Image {bad[0]!r} {bad[1]}.") from error
    return np.concatenate(chunks)


def load_labelled_files(path, table, cache_dir=None):
    """Loads the images a CSV label table lists (`label_file.read_label_csv`).

    The images may lie in any tree under the root (flat, nested, sorted by
    class or not), or in a tar archive of one. Within a split, examples
    are sorted by path, as `load_image_folder` sorts them, so a table
    listing a class-folder tree gives the same data as the folder. The
    decoded images are cached by the listed files alone (their paths,
    sizes and times), so relabelling does not decode again.

    Args:
        path: Root directory, or a .tar.gz / .tgz / .tar archive.
        table: A `LabelTable` of kind "csv".
        cache_dir: As for `load_image_folder`.

    Returns:
        A `Source`: "train" and "test" rows, "meta" rows as its trusted
        split; `clean_labels` from the table's true labels, if any.

    Raises:
        FileNotFoundError: A listed image missing under the root.
        ValueError: No train or no test rows; an image that cannot be
            decoded or has another size.
    """
    cache_dir = os.path.expanduser(cache_dir or DEFAULT_CACHE_DIR)
    path = check_path(path)
    for split in REQUIRED_SPLITS:
        if not len(table.rows(split)):
            raise ValueError(f"labels file {table.source!r} has no {split!r} "
                             "rows.")
    root = extract_archive(path, cache_dir) if os.path.isfile(path) else path
    root = _root_holding(root, table.files[0])
    order = np.lexsort((table.files, table.splits))  # By split, then path.
    files = table.files[order]
    _check_listed_files(root, files, table.source)
    name = os.path.basename(os.path.normpath(path)) or "root"
    # Keyed by the files alone: relabelling decodes nothing again.
    key = _files_key(root, [(relative, "") for relative in files], name)
    cached = os.path.join(cache_dir, "decoded", f"listed-{key}.npz")
    if os.path.exists(cached):
        with np.load(cached) as arrays:
            images = arrays["images"]
    else:
        images = _decode_files(root, files)
        os.makedirs(os.path.dirname(cached), exist_ok=True)
        replace_atomically(cached, lambda file: np.savez(file, images=images),
                           mode="wb")
    rows_in_order = np.empty(len(order), np.int64)
    rows_in_order[order] = np.arange(len(order))

    def table_rows_of(name):
        return order[np.sort(rows_in_order[table.rows(name)])]  # Path order.

    def split_of(name):
        table_rows = table_rows_of(name)
        rows = rows_in_order[table_rows]
        # Only training labels are taken as possibly wrong: test and meta
        # rows' labels are the truth the run is measured and taught by.
        clean = (None if table.clean_labels is None or name != "train"
                 else table.clean_labels[table_rows])
        return Split(labels=table.labels[table_rows], images=images[rows],
                     clean_labels=clean, files=files[rows])

    has_meta = len(table.rows("meta")) > 0
    return Source(
        name=name, class_names=table.class_names, train=split_of("train"),
        test=split_of("test"), meta=split_of("meta") if has_meta else None,
        meta_origin=("trusted 'meta' rows of "
                     f"{os.path.basename(table.source)}") if has_meta
        else None, label_table=table,
        train_table_rows=table_rows_of("train"))
