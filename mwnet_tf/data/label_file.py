"""Labels from a file instead of folder names: a CSV table, or an array.

Two kinds of label file, read and checked here before any image is decoded:

- **CSV** (`.csv`), for an image folder or archive (`dataset="folder"`):
  one row per image, a header naming the columns:

      path,label[,split][,clean_label]
      images/0001.jpg,cat,train,dog
      images/0002.jpg,3,test,

  `path` is relative to the data root (any tree: flat, nested, unrelated to
  the classes); `label` a class name, or an integer with `class_names`
  given (integers alone are numbered 0 .. max); `split` one of `SPLITS`
  ("meta" rows are a trusted clean meta set; no column: every row is
  "train" and a test split is missing); `clean_label` (or the column
  `clean_key` names) the true label where known, empty where not. Which
  column holds the label is `label_key` (e.g. "suggested_label" of a file
  this module wrote).
- **Array** (`.npy`, or `.npz` with the array under `label_key`): one label
  per training example in the data set's canonical order, e.g. CIFAR-10N
  / CIFAR-100N (Wei et al., ICLR 2022), in the order of the original
  CIFAR Python training batches. For tensorflow-datasets' CIFAR the order
  is given by its `id` feature (`train_00042` is example 42); for an image
  folder laid out as the shared CIFAR-10 archive (file k of a class is that
  class's k-th example in canonical order) the true labels in canonical
  order (`clean_key`, which CIFAR-N ships as "clean_label") say which file
  index i is.

`write_labels` writes the labels back out in the kind they came in (CSV in,
CSV out; array in, `.npz` out), with the audit's verdict and suggested label
beside the given one.
"""

import csv
import dataclasses
import os
from typing import Optional, Tuple

import numpy as np

from mwnet_tf.files import replace_atomically

CSV_SUFFIXES = (".csv",)
ARRAY_SUFFIXES = (".npy", ".npz")
PATH_COLUMN = "path"
SPLIT_COLUMN = "split"
DEFAULT_LABEL_COLUMN = "label"
DEFAULT_CLEAN_COLUMN = "clean_label"
SPLITS = ("train", "test", "meta")
# The written file's verdict for rows the audit did not score (test and
# trusted meta rows, training rows held out as a meta set).
NOT_AUDITED = "not_audited"
LABELS_OUT = {"csv": "labels.csv", "array": "labels.npz"}


class LabelFileError(ValueError):
    """A label file that cannot be used; the message says why and how to fix."""


@dataclasses.dataclass(frozen=True)
class LabelTable:
    """Labels as a user holds them: one row per example.

    Attributes:
        kind: "csv" (rows name image files) or "array" (rows are the
            training examples in canonical order).
        labels: int64 [N], the given labels.
        class_names: Names of classes 0 .. K-1.
        files: str [N], paths relative to the data root ("csv"), else None.
        splits: str [N], each row's split ("csv"), else None (all "train").
        clean_labels: int64 [N] of true labels, -1 where unknown; None when
            the file gives none.
        source: The file read, or None for a table made from class folders.
    """

    kind: str
    labels: np.ndarray
    class_names: Tuple[str, ...]
    files: Optional[np.ndarray] = None
    splits: Optional[np.ndarray] = None
    clean_labels: Optional[np.ndarray] = None
    source: Optional[str] = None

    def __len__(self):
        return int(self.labels.shape[0])

    @property
    def truth_known(self):
        """Whether every training row's true label is known."""
        if self.clean_labels is None:
            return False
        rows = self.rows("train")
        return bool((self.clean_labels[rows] >= 0).all())

    def rows(self, split):
        """Indices of the rows of `split`, in file order."""
        if self.splits is None:
            return np.arange(len(self)) if split == "train" else np.arange(0)
        return np.flatnonzero(self.splits == split)


def label_file_kind(path):
    """"csv" or "array" by the file's suffix; LabelFileError otherwise."""
    lower = str(path).lower()
    if lower.endswith(CSV_SUFFIXES):
        return "csv"
    if lower.endswith(ARRAY_SUFFIXES):
        return "array"
    raise LabelFileError(
        f"labels file {path!r} is neither a CSV ({', '.join(CSV_SUFFIXES)}) "
        f"nor an array ({', '.join(ARRAY_SUFFIXES)}); rename it or convert "
        "it to one of these.")


def check_label_file_path(path):
    """Checks the labels file exists and has a known kind; returns the kind."""
    kind = label_file_kind(path)
    if not os.path.isfile(os.path.expanduser(str(path))):
        raise FileNotFoundError(f"labels file {path!r} does not exist.")
    return kind


def _integer(text):
    try:
        return int(text)
    except ValueError:
        return None


def _class_list(values, class_names, path):
    """Class names in label order: given, or from the labels themselves."""
    if class_names is not None:
        names = tuple(str(name) for name in class_names)
        if len(set(names)) != len(names):
            raise LabelFileError(f"class_names {list(names)} repeat a name.")
        return names
    numbers = [_integer(v) for v in values]
    if all(n is not None for n in numbers):
        return tuple(str(i) for i in range(max(numbers) + 1))
    if any(n is not None for n in numbers):
        raise LabelFileError(
            f"labels in {path!r} mix class names and integers; use one, or "
            "pass the class list (class_names / --label_classes) so integers "
            "name classes by position.")
    from mwnet_tf.data.image_folder import class_order  # No cycle: lazy.
    return class_order(values)


def _parse(values, lines, class_names, path, column, allow_empty=False):
    """Labels of one column as int64 indices into `class_names`."""
    index_of = {name: i for i, name in enumerate(class_names)}
    parsed = np.empty(len(values), np.int64)
    for i, (value, line) in enumerate(zip(values, lines)):
        if value == "" and allow_empty:
            parsed[i] = -1
            continue
        if value in index_of:
            parsed[i] = index_of[value]
            continue
        number = _integer(value)
        if number is None:
            shown = ", ".join(class_names[:12]) + (
                " ..." if len(class_names) > 12 else "")
            raise LabelFileError(
                f"{path!r} line {line}: unknown class {value!r} in column "
                f"{column!r}; the classes are {shown}.")
        if not 0 <= number < len(class_names):
            raise LabelFileError(
                f"{path!r} line {line}: label {number} in column {column!r} "
                f"is out of range 0..{len(class_names) - 1} "
                f"({len(class_names)} classes).")
        parsed[i] = number
    return parsed


def _relative_path(value, line, path):
    if value == "":
        raise LabelFileError(f"{path!r} line {line}: empty path.")
    normal = os.path.normpath(value.replace("\\", "/"))
    if os.path.isabs(normal) or normal == ".." or normal.startswith(
            ".." + os.sep):
        raise LabelFileError(
            f"{path!r} line {line}: path {value!r} is outside the data root; "
            "give paths relative to the root (--data_path).")
    return normal


def read_label_csv(path, label_key=None, clean_key=None, class_names=None):
    """Reads and checks a CSV label table (module docstring); no image read.

    Args:
        path: The CSV file.
        label_key: Column of the given labels; None: "label".
        clean_key: Column of the true labels; None: "clean_label" if the
            file has one, else no true labels.
        class_names: Class names in label order, or None to take them from
            the labels (CIFAR-10 order for its ten names, else sorted;
            integers 0 .. max).

    Returns:
        A `LabelTable` of kind "csv", rows in file order.

    Raises:
        LabelFileError: An empty file, a missing column, an empty or
            duplicate path, a path outside the root, an unknown class, a
            label out of range, an unknown split.
    """
    path = os.path.expanduser(str(path))
    label_key = label_key or DEFAULT_LABEL_COLUMN
    with open(path, newline="", encoding="utf-8-sig") as file:
        reader = csv.DictReader(file)
        columns = reader.fieldnames
        if not columns:
            raise LabelFileError(
                f"labels file {path!r} is empty; it needs a header "
                f"({PATH_COLUMN},{label_key}[,{SPLIT_COLUMN}]) and one row "
                "per image.")
        columns = [c.strip() for c in columns]
        rows = [{k.strip(): (v or "").strip() for k, v in row.items()
                 if k is not None} for row in reader]
    for needed in (PATH_COLUMN, label_key):
        if needed not in columns:
            raise LabelFileError(
                f"labels file {path!r} has no column {needed!r} (its "
                f"columns: {', '.join(columns)}); name the label column with "
                "label_key / --labels_key.")
    if clean_key is None and DEFAULT_CLEAN_COLUMN in columns:
        clean_key = DEFAULT_CLEAN_COLUMN
    if clean_key is not None and clean_key not in columns:
        raise LabelFileError(
            f"labels file {path!r} has no column {clean_key!r} of true "
            f"labels (its columns: {', '.join(columns)}).")
    if not rows:
        raise LabelFileError(f"labels file {path!r} has a header but no rows.")
    lines = list(range(2, len(rows) + 2))
    files = [_relative_path(row[PATH_COLUMN], line, path)
             for row, line in zip(rows, lines)]
    first_line = {}
    for file_path, line in zip(files, lines):
        if file_path in first_line:
            raise LabelFileError(
                f"{path!r} line {line}: {file_path!r} is listed again (first "
                f"at line {first_line[file_path]}); give each image once.")
        first_line[file_path] = line
    if SPLIT_COLUMN in columns:
        splits = [row[SPLIT_COLUMN].lower() for row in rows]
        for split, line in zip(splits, lines):
            if split not in SPLITS:
                raise LabelFileError(
                    f"{path!r} line {line}: split {split!r} is not one of "
                    f"{', '.join(SPLITS)}.")
    else:
        splits = ["train"] * len(rows)
    given = [row[label_key] for row in rows]
    names = _class_list([v for v in given if v != ""], class_names, path)
    labels = _parse(given, lines, names, path, label_key)
    clean = None
    if clean_key is not None:
        clean = _parse([row[clean_key] for row in rows], lines, names, path,
                       clean_key, allow_empty=True)
    return LabelTable(kind="csv", labels=labels, class_names=names,
                      files=np.array(files), splits=np.array(splits),
                      clean_labels=clean, source=path)


def read_label_array(path, key=None, what="labels"):
    """Reads one integer label per example from a .npy or a .npz's `key`.

    Raises:
        LabelFileError: A key not in the .npz (or one needed and not given,
            or given for a .npy), an array that is not 1-D integers.
    """
    path = os.path.expanduser(str(path))
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise LabelFileError(
            f"cannot read {path!r} as a NumPy file: {error}.") from error
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            keys = list(loaded.keys())
            if key is None and len(keys) != 1:
                raise LabelFileError(
                    f"{path!r} holds several arrays ({', '.join(keys)}); say "
                    f"which holds the {what} (--labels_key / "
                    "--clean_labels_key).")
            key = keys[0] if key is None else key
            if key not in keys:
                raise LabelFileError(
                    f"{path!r} has no array {key!r}; its arrays are "
                    f"{', '.join(keys)}.")
            array = loaded[key]
    else:
        if key is not None and what == "labels":
            raise LabelFileError(
                f"{path!r} is a .npy, a single array: drop the key "
                f"{key!r}, or save the arrays into one .npz.")
        array = loaded
    if array.ndim != 1 or not (np.issubdtype(array.dtype, np.integer)
                               or (np.issubdtype(array.dtype, np.floating)
                                   and np.all(np.mod(array, 1) == 0))):
        raise LabelFileError(
            f"the {what} in {path!r}{'' if key is None else f'[{key!r}]'} "
            f"must be a 1-D array of integer labels; got shape "
            f"{array.shape}, dtype {array.dtype}.")
    return array.astype(np.int64)


def read_label_file(path, label_key=None, clean_key=None, class_names=None,
                    num_classes=None, num_examples=None):
    """Reads a label file of either kind (by suffix) into a `LabelTable`.

    For an array, `num_classes` and `num_examples` (when known) are checked;
    `clean_key` names a second array of the same .npz (true labels in the
    same order). For a CSV, `class_names` fixes the class list.
    """
    kind = check_label_file_path(path)
    if kind == "csv":
        return read_label_csv(path, label_key, clean_key, class_names)
    labels = read_label_array(path, label_key)
    clean = (None if clean_key is None else
             read_label_array(path, clean_key, what="true labels"))
    for name, array in (("labels", labels), ("true labels", clean)):
        if array is not None:
            check_label_array(array, path, name, num_examples, num_classes)
    if clean is not None and len(clean) != len(labels):
        raise LabelFileError(
            f"{path!r}: {len(labels)} labels but {len(clean)} true labels; "
            "the two arrays must be of the same examples.")
    names = (tuple(class_names) if class_names is not None else
             tuple(str(i) for i in range(max(int(labels.max()) + 1,
                                              num_classes or 0))))
    return LabelTable(kind="array", labels=labels, class_names=names,
                      clean_labels=clean, source=os.path.expanduser(str(path)))


def check_label_array(array, path, name="labels", num_examples=None,
                      num_classes=None):
    """Raises LabelFileError unless `array` holds one label per training
    example (when `num_examples` is known) in 0 .. num_classes - 1 (when
    known; else non-negative)."""
    if num_examples is not None and len(array) != num_examples:
        raise LabelFileError(
            f"{path!r} holds {len(array)} {name}, but the training split "
            f"has {num_examples} examples; a label array needs one label "
            "per training example, in the data set's canonical order.")
    bad = array < 0 if num_classes is None else (
        (array < 0) | (array >= num_classes))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        limit = "" if num_classes is None else (
            f"out of range 0..{num_classes - 1} ({num_classes} classes)")
        raise LabelFileError(
            f"{path!r}: {name} {int(array[first])} at position {first} is "
            f"{limit or 'negative'}.")


def canonical_positions_of_ids(ids, split="train"):
    """Positions in the canonical order from tensorflow-datasets' `id`s.

    tfds stores CIFAR shuffled; its `id` feature, "train_00042", is the
    example's place in the original batch files.

    Returns:
        int64 [N]: the canonical position of each example, a permutation.
    """
    prefix = f"{split}_"
    positions = np.empty(len(ids), np.int64)
    for i, raw in enumerate(ids):
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        if not text.startswith(prefix) or _integer(text[len(prefix):]) is None:
            raise LabelFileError(
                f"example id {text!r} is not of the form {prefix}<number>: "
                "this data set's ids do not give its canonical order.")
        positions[i] = int(text[len(prefix):])
    if not np.array_equal(np.sort(positions), np.arange(len(ids))):
        raise LabelFileError(
            f"the {split} ids do not number the examples 0..{len(ids) - 1} "
            "once each; the canonical order cannot be recovered.")
    return positions


def canonical_order_of_class_files(folder_labels, clean_in_order, path):
    """Which file is each canonical example, for a CIFAR-like class folder.

    In such a folder (the shared CIFAR-10 archive) file k of class c, in
    path order, is the k-th example of class c in the canonical order.

    Args:
        folder_labels: int64 [N], each file's class folder, files in path
            order (as `load_image_folder` returns them).
        clean_in_order: int64 [N], the true label of each canonical
            example (e.g. CIFAR-N's "clean_label").
        path: The label file, for messages.

    Returns:
        int64 [N]: `order[i]` is the file (row of the split) of canonical
        example i.
    """
    folder_labels = np.asarray(folder_labels, np.int64)
    clean_in_order = np.asarray(clean_in_order, np.int64)
    num_classes = int(max(folder_labels.max(), clean_in_order.max())) + 1
    files_per_class = np.bincount(folder_labels, minlength=num_classes)
    examples_per_class = np.bincount(clean_in_order, minlength=num_classes)
    if not np.array_equal(files_per_class, examples_per_class):
        differ = int(np.flatnonzero(files_per_class != examples_per_class)[0])
        raise LabelFileError(
            f"the true labels in {path!r} count {examples_per_class[differ]} "
            f"examples of class {differ}, the folder {files_per_class[differ]}"
            " files: they are not the same examples.")
    order = np.empty(len(clean_in_order), np.int64)
    for label in range(num_classes):
        order[clean_in_order == label] = np.flatnonzero(folder_labels == label)
    return order


def write_labels(path, table, audit=None, audited_rows=None):
    """Writes `table`'s labels in its own kind, with the audit beside them.

    CSV: every row of the table, in its order, columns `path, split, label`
    (the given class), `clean_label` (if known), `verdict` ("relabel",
    "suspect", "keep" as in `mwnet_tf.label_audit.VERDICTS`, or
    "not_audited" for rows the audit did not score), `suggested_label` (the
    audit's suggestion; the given label where not audited),
    `relabelled` (the given label, changed to the suggestion where the
    verdict is "relabel"), `suggested_probability`, `weight`. Both label
    columns are complete, so either can be trained on as it is
    (`--labels_key=relabelled`).
    Array (.npz): `label` (as given), `suggested_label` (given where not
    audited), `relabelled`, `suspect` and `relabel` (1, 0, or -1 where not
    audited), `weight` (NaN where not audited), `clean_label` if known; one
    entry per training example in canonical order.

    Args:
        path: The file to write (replaced whole).
        table: The `LabelTable` of the data as given.
        audit: A `mwnet_tf.label_audit.LabelAudit`, or None.
        audited_rows: int64 [len(audit)]: the table row of each audited
            example.
    """
    suggested = table.labels.copy()
    relabelled = table.labels.copy()
    verdict = np.full(len(table), NOT_AUDITED, dtype=object)
    probability = np.full(len(table), np.nan, np.float32)
    weight = np.full(len(table), np.nan, np.float32)
    if audit is not None:
        rows = np.asarray(audited_rows, np.int64)
        if not np.array_equal(table.labels[rows], audit.given_label):
            raise ValueError("audited_rows do not name the audited examples: "
                             "their given labels differ.")
        suggested[rows] = audit.suggested_label
        relabelled[rows] = np.where(audit.relabel, audit.suggested_label,
                                    audit.given_label)
        verdict[rows] = audit.verdicts()
        probability[rows] = audit.suggested_probability
        weight[rows] = audit.weight
    if table.kind == "array":
        audited = verdict != NOT_AUDITED
        arrays = {"label": table.labels, "suggested_label": suggested,
                  "relabelled": relabelled,
                  "suspect": np.where(audited, verdict != "keep",
                                      -1).astype(np.int8),
                  "relabel": np.where(audited, verdict == "relabel",
                                      -1).astype(np.int8),
                  "weight": weight}
        if table.clean_labels is not None:
            arrays["clean_label"] = table.clean_labels
        replace_atomically(path, lambda file: np.savez(file, **arrays),
                           mode="wb")
        return
    names = np.asarray(table.class_names, dtype=object)
    splits = (table.splits if table.splits is not None
              else np.full(len(table), "train"))
    columns = ["path", "split", "label"]
    if table.clean_labels is not None:
        columns.append("clean_label")
    columns += ["verdict", "suggested_label", "relabelled",
                "suggested_probability", "weight"]

    def write(file):
        writer = csv.writer(file)
        writer.writerow(columns)
        for i in range(len(table)):
            row = [table.files[i], splits[i], names[table.labels[i]]]
            if table.clean_labels is not None:
                clean = table.clean_labels[i]
                row.append(names[clean] if clean >= 0 else "")
            row += [verdict[i], names[suggested[i]], names[relabelled[i]],
                    "" if np.isnan(probability[i]) else
                    f"{probability[i]:.4f}",
                    "" if np.isnan(weight[i]) else f"{weight[i]:.4f}"]
            writer.writerow(row)

    replace_atomically(path, write)
