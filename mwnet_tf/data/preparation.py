"""One call from a data set name to the train / meta / test pipelines.

Order of operations (all seeded from the one `seed`):

1. Load the source (tensorflow-datasets, image folder, or Clothing1M).
2. Meta set, by `meta_source` (`META_SOURCES`; "auto" picks the first that
   applies, in this order):
   - "trusted": the source's trusted clean split (an image folder's `meta`
     folder, Clothing1M's clean validation or clean training set),
     subsampled to `meta_per_class` per class if given;
   - "clean_draw": `meta_per_class` examples per class drawn from the
     training split and removed from it, before any noise: clean only
     because the noise is synthetic and added afterwards (or the data set's
     labels are curated, CIFAR from tensorflow-datasets);
   - "pseudo_clean": no trusted label: the meta set is chosen from the
     (noisy) training split by the model itself each epoch
     (`mwnet_tf.pseudo_clean`); the chosen examples stay in training;
   - "given_draw" (never chosen by "auto"): drawn as "clean_draw" but with
     the labels as given, which may be wrong: under synthetic noise the
     meta labels are corrupted as the training labels are. What a run
     without a trusted set used to get, kept to measure against.
   Under synthetic noise every source holds out the examples "clean_draw"
   would take, so all train on the same examples and labels.
3. Imbalance: the remaining training split is cut to a long-tailed profile.
   The meta set is drawn first, from the balanced split, as the official
   Meta-Weight-Net class-imbalance code does (`data_utils.py` there takes the
   meta images out, then makes the rest long-tailed); so the meta set stays
   balanced and the training counts follow the long-tail formula exactly with
   n_max = the smallest class after the meta draw (4900 for CIFAR-10 with 100
   meta images per class).
4. `train_subset`: a seeded random subset of the training split.
5. Noise: the training labels are corrupted; the meta and test labels never.
"""

import dataclasses
import os
from typing import Callable, Optional, Tuple

import numpy as np
import tensorflow as tf

from mwnet_tf.data import clothing1m as clothing1m_lib
from mwnet_tf.data import image_folder
from mwnet_tf.data import label_file
from mwnet_tf.data import pipeline
from mwnet_tf.data import tfds_source
from mwnet_tf.data.imbalance import (check_imbalance_factor,
                                     long_tailed_indices)
from mwnet_tf.data.meta_split import (check_per_class, check_pool_fraction,
                                      draw_pool, pool_sizes, sample_per_class,
                                      split_meta)
from mwnet_tf.data.noise import (INSTANCE_NOISE, check_noise, corrupt_labels,
                                 label_noise_statistics,
                                 noise_transition_matrix)
from mwnet_tf.data.source import Split
from mwnet_tf.arguments import is_integer
from mwnet_tf.inputs import with_meta

DATASETS = ("cifar10", "cifar100", "folder", "clothing1m")
# Number of classes and training examples per class, known before loading, so
# that impossible requests fail before minutes of loading.
_KNOWN_SIZES = {"cifar10": (10, 5000), "cifar100": (100, 500)}
# The official code's --num_meta default: 1000 meta images in all.
DEFAULT_META_TOTAL = 1000
# Each random stage gets its own seed derived from the user's seed.
_STAGES = ("meta", "imbalance", "subset", "noise", "train_pipeline",
           "meta_pipeline", "meta_noise", "pseudo_clean_pool")
# Where the meta set comes from (module docstring, step 2).
META_SOURCES = ("auto", "trusted", "clean_draw", "pseudo_clean", "given_draw")
# CMW-Net-SL's pseudo-clean meta set: 10 examples per class.
DEFAULT_PSEUDO_CLEAN_PER_CLASS = 10


@dataclasses.dataclass(frozen=True)
class ScoringPool:
    """The training examples the pseudo-clean choice scores at an epoch,
    where it scores a part of the split: `sizes[c]` examples of each given
    class, drawn afresh each epoch (`meta_split.draw_pool`, seeded by the
    epoch, so a resumed run scores what the uninterrupted one did).

    Attributes:
        indices: int64 `tf.Variable` [sum(sizes)] of training indices,
            which `dataset` reads through when it is iterated.
        sizes: int64 [K], the pool's examples per given class.
        seed: The draws' seed.
        dataset: The pool's `(image, given_label)` batches, in the order of
            `indices`, not shuffled or augmented.
    """

    indices: tf.Variable
    sizes: np.ndarray
    seed: int
    dataset: tf.data.Dataset

    def draw(self, labels, epoch):
        """Draws `epoch`'s pool, writes it into `indices` and returns it."""
        chosen = draw_pool(labels, self.sizes, self.seed, epoch)
        self.indices.assign(chosen)
        return chosen


@dataclasses.dataclass(frozen=True)
class PreparedData:
    """The input pipelines of one experiment and what they contain.

    Attributes:
        train: Batched `(image float32 [B, H, W, C], noisy_label int32 [B],
            is_corrupted float32 [B])` when noise was injected (`noise` other
            than "none"), else `(image float32 [B, H, W, C], label int32
            [B])`; shuffled and augmented anew each epoch, last partial batch
            dropped, NOT repeated. `is_corrupted` is 1.0 where the injected
            noise changed the label, for metrics only; labels that came noisy
            (an image folder with noise="none", Clothing1M) have no such flag,
            as which of them are wrong is unknown (Clothing1M's rate among the
            images with a known clean label is in `statistics`). Pair it with
            `meta` through `training_input()` (or `mwnet_tf.with_meta`); a plain
            `keras.Model.fit(train)` would read `is_corrupted` as sample
            weights.
        meta: Batched `(image float32 [B_m, H, W, C], label int32 [B_m])` of
            the clean meta set, ENDLESS: pass after pass over the meta set
            (`meta_steps_per_epoch` batches each), each reshuffled and
            augmented with the training transform (as the official code
            does), last partial batch of a pass dropped. An iterator starts
            again from a first pass keyed by the epoch, so `with_meta`'s
            `repeat()` is a no-op on it.
        meta_eval: The meta set as `(image, label)` batches of
            `eval_batch_size`, one pass, not shuffled or augmented: for
            measuring accuracy on the clean meta set.
        test: Batched `(image float32 [B_e, H, W, C], label int32 [B_e])`,
            not shuffled or augmented, last batch may be smaller.
        train_eval: The training split as `(image, given_label)` batches of
            `eval_batch_size`, one pass in the order of `train_examples`, not
            shuffled or augmented: for auditing the labels a run trained on.
        train_examples: The training split as trained on, a `Split` whose
            `labels` are the given (possibly noisy) labels, `clean_labels`
            the true labels where known (-1 elsewhere; None when no true
            label is known, e.g. an image folder with noise="none"), and
            `index` / `files` say where each example came from in the
            source.
        num_classes: Number of classes K.
        class_names: Names of classes 0 .. K-1.
        image_shape: Shape (H, W, C) of one model input.
        steps_per_epoch: Number of batches in one pass over `train`.
        meta_steps_per_epoch: Number of batches in one pass over `meta`.
        num_train: Training examples (one epoch sees
            `steps_per_epoch * batch_size` of them).
        num_meta: Meta examples.
        num_test: Test examples.
        statistics: JSON-serialisable description of the data actually used:
            arguments, counts per class, realised noise rate, true and
            empirical transition matrices.
    """

    train: tf.data.Dataset
    meta: tf.data.Dataset
    meta_eval: tf.data.Dataset
    test: tf.data.Dataset
    num_classes: int
    class_names: Tuple[str, ...]
    image_shape: Tuple[int, ...]
    steps_per_epoch: int
    meta_steps_per_epoch: int
    num_train: int
    num_meta: int
    num_test: int
    statistics: dict
    train_eval: tf.data.Dataset
    train_examples: Split
    # Where the meta set comes from (META_SOURCES, never "auto") and, for
    # "pseudo_clean", the int64 variable of the training indices the meta
    # pipelines read (k per class; `mwnet_tf.pseudo_clean` chooses them).
    meta_source: str = "clean_draw"
    meta_selection: Optional[tf.Variable] = None
    # "pseudo_clean" with a pool under 1: the part of the training split
    # scored each epoch (None: all of `train_eval`).
    selection_pool: Optional[ScoringPool] = None
    # The labels as the user holds them (`label_file.LabelTable`: a label
    # file, or an image folder's classes as a table) and the table row of
    # each of `train_examples`; None for tensorflow-datasets' own labels.
    label_table: Optional[label_file.LabelTable] = None
    train_table_rows: Optional[np.ndarray] = None
    # shard -> (train, meta) built for that share of every batch (`shard`
    # of `pipeline.array_dataset`); None: `train` and `meta` as they are.
    _training_shard: Optional[Callable] = dataclasses.field(default=None,
                                                            repr=False)

    def training_input(self, input_context=None):
        """`fit`'s input: `train` paired with `meta` (`with_meta`).

        Args:
            input_context: Optional `tf.distribute.InputContext`, as
                `strategy.distribute_datasets_from_function` passes it: the
                input of this input pipeline only, which reads, decodes and
                augments only its share of every global batch (the same
                examples and augmentation as the whole batch would give
                them). Each pipeline must feed one replica.

        Returns:
            A `tf.data.Dataset` of `((x, y[, corrupted]), (x_meta, y_meta))`.
        """
        if input_context is not None and (input_context.num_replicas_in_sync
                                          != input_context.num_input_pipelines):
            raise ValueError(
                f"{input_context.num_replicas_in_sync} replicas over "
                f"{input_context.num_input_pipelines} input pipelines: "
                "per-pipeline input needs one replica per pipeline; pass "
                "training_input() to fit and let the strategy split batches.")
        if input_context is None or input_context.num_input_pipelines == 1:
            return with_meta(self.train, self.meta)
        if self._training_shard is None:
            raise ValueError("This PreparedData cannot build shards of its "
                             "input; build it with `prepare`.")
        return with_meta(*self._training_shard(
            (input_context.input_pipeline_id,
             input_context.num_input_pipelines)))


def _stage_seed(seed, stage):
    state = np.random.SeedSequence([seed, _STAGES.index(stage)])
    return int(state.generate_state(1)[0])


def _check_dataset(dataset):
    if dataset not in DATASETS:
        raise ValueError(
            f"Unknown dataset {dataset!r}; valid datasets are "
            f"{', '.join(DATASETS)}.")


def trusted_split_before_loading(dataset):
    """Whether `dataset` has a trusted split, as far as its name tells:
    Clothing1M always, tensorflow-datasets' CIFAR never, an image folder
    only once loaded (None)."""
    if dataset == "clothing1m":
        return True
    return False if dataset in tfds_source.TFDS_NAMES else None


def resolve_meta_source(meta_source, dataset, noise, has_trusted_split,
                        labels_from_file=False, truth_known=None):
    """The meta source "auto" means, or `meta_source` checked.

    Args:
        meta_source: One of `META_SOURCES`.
        dataset: One of `DATASETS`.
        noise: The synthetic noise type ("none": labels as given).
        has_trusted_split: Whether the source has a trusted clean split;
            None when not known yet (before loading an image folder).
        labels_from_file: Whether the training labels come from a label
            file (`mwnet_tf.data.label_file`): as given, not curated.
        truth_known: Whether that file gives every training example's true
            label (then "clean_draw" draws with them; "auto" still never
            does, so that no true label is used unless asked for); None:
            not known yet.

    Returns:
        The meta source, never "auto" (None: "auto" on a source whose
        trusted split is not known yet).

    Raises:
        ValueError: For an unknown source, "trusted" on a source without a
            trusted split, or "clean_draw" from labels not known to be clean.
    """
    if meta_source not in META_SOURCES:
        raise ValueError(
            f"Unknown meta_source {meta_source!r}; valid sources are "
            f"{', '.join(META_SOURCES)}.")
    # Labels known to be clean before the draw: curated (tfds CIFAR) or
    # corrupted only afterwards, by synthetic noise.
    labels_clean = ((dataset in tfds_source.TFDS_NAMES and not labels_from_file)
                    or noise != "none")
    if meta_source == "trusted" and has_trusted_split is False:
        raise ValueError(
            "meta_source='trusted', but this data has no trusted split (an "
            "image folder's meta/ folder, Clothing1M's clean sets); add one, "
            "or use meta_source='pseudo_clean'.")
    if (meta_source == "clean_draw" and not labels_clean
            and labels_from_file and truth_known is False):
        raise ValueError(
            "meta_source='clean_draw' draws the meta set with true labels, "
            "but the labels file does not give every training example's "
            "(clean_labels_key); use meta_source='pseudo_clean'.")
    if (meta_source == "clean_draw" and not labels_clean
            and not labels_from_file):
        raise ValueError(
            "meta_source='clean_draw' draws the meta set from labels known "
            "to be clean, but these labels are as given (noise='none') and "
            "may be wrong; use meta_source='pseudo_clean', add a trusted "
            "meta/ folder, or 'given_draw' to draw from them anyway.")
    if meta_source != "auto":
        return meta_source
    if has_trusted_split is None:
        return None
    if has_trusted_split:
        return "trusted"
    return "clean_draw" if labels_clean else "pseudo_clean"


def _check_arguments(dataset, noise, noise_rate, imbalance_factor,
                     meta_per_class, seed, batch_size, meta_batch_size,
                     eval_batch_size, train_subset, clothing1m_meta, epoch,
                     meta_source="auto", pseudo_clean_per_class=None,
                     pseudo_clean_pool=1.0, labels_file=None,
                     labels_key=None, clean_labels_key=None,
                     label_classes=None):
    """Checks argument values and combinations, without touching any file.

    The stages `prepare` delegates to check their own arguments; their checks
    are called here so that a bad value fails before minutes of loading, with
    the same message as when the stage is called on its own.
    """
    _check_dataset(dataset)
    # None for sources whose size is known only once they are loaded.
    num_classes, per_class = _KNOWN_SIZES.get(dataset, (None, None))
    check_noise(noise, noise_rate, num_classes)
    check_imbalance_factor(imbalance_factor)
    if meta_per_class is not None:
        check_per_class(meta_per_class)
        if per_class is not None and meta_per_class >= per_class:
            raise ValueError(
                f"meta_per_class={meta_per_class} is too large: {dataset} has "
                f"{per_class} training images per class and some must remain "
                "for training.")
    if not is_integer(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}.")
    for name, value in (("batch_size", batch_size),
                        ("meta_batch_size", meta_batch_size),
                        ("eval_batch_size", eval_batch_size)):
        if value is not None and (not is_integer(value) or value < 1):
            raise ValueError(
                f"{name} must be a positive integer; got {value!r}.")
    if train_subset is not None and (not is_integer(train_subset)
                                     or train_subset < 1):
        raise ValueError(
            f"train_subset must be a positive integer or None; got "
            f"{train_subset!r}.")
    if epoch is not None and not (isinstance(epoch, tf.Variable)
                                  and epoch.dtype.is_integer
                                  and epoch.shape.rank == 0):
        raise ValueError(
            "epoch must be None or a scalar integer tf.Variable holding the "
            f"current epoch; got {epoch!r}.")
    check_noise_of_dataset(dataset, noise)
    check_label_file_arguments(dataset, noise, labels_file, labels_key,
                               clean_labels_key, label_classes)
    resolve_meta_source(meta_source, dataset, noise,
                        trusted_split_before_loading(dataset),
                        labels_from_file=labels_file is not None)
    if pseudo_clean_per_class is not None:
        check_per_class(pseudo_clean_per_class)
    check_pool_fraction(pseudo_clean_pool)
    if dataset == "clothing1m":
        if imbalance_factor != 1:
            raise ValueError(
                "imbalance_factor is not supported for Clothing1M; use 1.")
        clothing1m_lib.check_meta_split(clothing1m_meta)


def check_label_file_arguments(dataset, noise, labels_file, labels_key=None,
                               clean_labels_key=None, label_classes=None):
    """Checks a label file's arguments against the data set, reading nothing.

    Raises:
        ValueError: A key or class list without a labels file; a label
            file for Clothing1M; a CSV for anything but an image folder; a
            label array on an image folder without the true labels that
            place it; synthetic noise on labels that come with the truth.
    """
    if labels_file is None:
        for name, value in (("labels_key", labels_key),
                            ("clean_labels_key", clean_labels_key),
                            ("label_classes", label_classes)):
            if value:
                raise ValueError(
                    f"{name} is for a labels file; pass labels_file= too "
                    "(a .csv, .npy or .npz).")
        return
    if dataset == "clothing1m":
        raise ValueError(
            "labels_file is for dataset='folder', 'cifar10' or 'cifar100'; "
            "Clothing1M reads its own annotation files.")
    kind = label_file.label_file_kind(labels_file)
    if kind == "csv" and dataset != "folder":
        raise ValueError(
            "a CSV labels file names image files: use dataset='folder' with "
            "path= the images' root; for tensorflow-datasets' "
            f"{dataset} give a .npy/.npz label array in its canonical order.")
    if kind == "array" and label_classes:
        raise ValueError(
            "label_classes names the classes of a CSV's integer labels; a "
            "label array takes the data set's classes.")
    if kind == "array" and dataset == "folder" and not clean_labels_key:
        raise ValueError(
            "a label array on an image folder needs clean_labels_key, the "
            "true labels in the same order, which say which file each "
            "position is (file k of a class folder = that class's k-th "
            "example); CIFAR-N's files hold them as 'clean_label'.")
    if kind == "array" and noise != "none":
        raise ValueError(
            f"a label array's labels are the noisy ones and the data set's "
            f"own are the truth: use noise='none', not {noise!r}.")


def load_label_table(dataset, noise, labels_file, labels_key=None,
                    clean_labels_key=None, label_classes=None):
    """The label file as a `LabelTable`, checked before any image is read
    (all that can be checked without the images: `prepare` checks the rest
    once they are loaded)."""
    num_classes, per_class = _KNOWN_SIZES.get(dataset, (None, None))
    table = label_file.read_label_file(
        labels_file, labels_key, clean_labels_key, label_classes,
        num_classes=num_classes,
        num_examples=None if per_class is None else num_classes * per_class)
    if table.kind == "csv":
        for split in image_folder.REQUIRED_SPLITS:
            if not len(table.rows(split)):
                raise label_file.LabelFileError(
                    f"labels file {labels_file!r} has no {split!r} rows; add "
                    "a 'split' column (train / test / meta) naming each "
                    "image's split.")
    if table.clean_labels is not None and noise != "none":
        raise ValueError(
            f"labels file {labels_file!r} gives the true labels "
            f"({clean_labels_key or label_file.DEFAULT_CLEAN_COLUMN}): its "
            f"labels are already noisy, so use noise='none', not {noise!r}.")
    return table


def _with_label_array(source, table):
    """`source` with its training labels replaced by a label array.

    The training split is put in the array's (canonical) order; the
    source's own labels become the true labels.
    """
    train = source.train
    path = table.source
    # Checked before loading where the data set's size is known (CIFAR);
    # an image folder's only now.
    label_file.check_label_array(table.labels, path, "labels", len(train),
                                 source.num_classes)
    if source.train.files is not None:  # An image folder: place each file.
        order = label_file.canonical_order_of_class_files(
            train.labels, table.clean_labels, path)
        train = train.take(order)
    elif table.clean_labels is not None:
        differ = int((table.clean_labels != train.labels).sum())
        if differ:
            raise label_file.LabelFileError(
                f"the true labels in {path!r} differ from {source.name}'s "
                f"at {differ} of {len(train)} positions: the file is not in "
                "the canonical order (the original batch files'), or not "
                f"of {source.name}.")
    table = dataclasses.replace(table, class_names=source.class_names,
                                clean_labels=train.labels)
    train = Split(labels=table.labels, images=train.images,
                  paths=train.paths, clean_labels=train.labels,
                  files=train.files)  # index: the canonical position.
    return dataclasses.replace(
        source, train=train, label_table=table,
        train_table_rows=np.arange(len(train), dtype=np.int64))


def _with_folder_table(source):
    """An image folder's classes as a label table (CSV out for folder in)."""
    splits = [(name, split) for name, split in (
        ("train", source.train), ("test", source.test),
        ("meta", source.meta)) if split is not None]
    table = label_file.LabelTable(
        kind="csv", class_names=source.class_names,
        labels=np.concatenate([s.labels for _, s in splits]),
        files=np.concatenate([s.files for _, s in splits]),
        splits=np.concatenate([np.full(len(s), n) for n, s in splits]))
    return dataclasses.replace(
        source, label_table=table,
        train_table_rows=np.arange(len(source.train), dtype=np.int64))


def check_noise_of_dataset(dataset, noise):
    """Raises ValueError for synthetic noise on labels that come noisy."""
    if dataset == "clothing1m" and noise != "none":
        raise ValueError(
            "Clothing1M's labels are already noisy; use noise='none' "
            f"(got {noise!r}).")


def check_path_given(dataset, path):
    """Raises ValueError when a data set that reads files has no path (the
    part of `check_data_paths` that needs no filesystem)."""
    _check_dataset(dataset)
    if dataset not in tfds_source.TFDS_NAMES and path is None:
        what = ("an image folder (<root>/train/<class>/<image>) or a "
                ".tar.gz of one" if dataset == "folder"
                else "the Clothing1M root (with images/ and annotations/)")
        raise ValueError(f"dataset={dataset!r} needs path= {what}.")


def check_data_paths(dataset, data_dir=None, path=None, download=True):
    """Checks that a data set gets the paths it reads and that they exist.

    Reads no data, so it can run before anything expensive; `prepare` calls
    it, and so does the experiment runner for --data_path and --data_dir.

    Args:
        dataset: One of `DATASETS`.
        data_dir: tensorflow-datasets directory (cifar10/cifar100 only), or
            None.
        path: Image folder or archive ("folder") or Clothing1M root; required
            by those two, not accepted by the others.
        download: Whether tensorflow-datasets may download; without it,
            `data_dir` must exist.

    Raises:
        ValueError: For an unknown data set, a missing or unused path
            argument, or a file that is not a tar archive ("folder").
        FileNotFoundError: For a path that does not exist, or a Clothing1M
            root without its annotation files.
    """
    _check_dataset(dataset)
    if dataset in tfds_source.TFDS_NAMES:
        if path is not None:
            raise ValueError(
                f"path is not used by dataset={dataset!r}; pass data_dir= for "
                "a tensorflow-datasets directory, or use dataset='folder' "
                "with path= to read an image folder or archive.")
        if data_dir is not None and not download and not os.path.isdir(
                os.path.expanduser(data_dir)):
            raise FileNotFoundError(
                f"data_dir {data_dir!r} does not exist and download=False; "
                "pass the directory where tfds prepared the data.")
        return
    check_path_given(dataset, path)
    # A missing path is named before an unused data_dir: it is the likelier
    # mistake, and the one to fix first.
    if dataset == "clothing1m":
        clothing1m_lib.check_clothing1m_root(os.path.expanduser(str(path)))
    else:
        image_folder.check_path(path)
    if data_dir is not None:
        raise ValueError(
            f"data_dir is the tensorflow-datasets directory, used only by "
            f"cifar10/cifar100; for dataset={dataset!r} pass path=.")


def _load(dataset, data_dir, path, cache_dir, download, clothing1m_meta,
          table=None):
    if dataset in tfds_source.TFDS_NAMES:
        source = tfds_source.load_tfds(
            dataset, data_dir=data_dir, download=download,
            canonical_order=table is not None)
    elif dataset == "folder" and table is not None and table.kind == "csv":
        return image_folder.load_labelled_files(path, table,
                                                cache_dir=cache_dir)
    elif dataset == "folder":
        source = image_folder.load_image_folder(path, cache_dir=cache_dir)
        if table is None:
            return _with_folder_table(source)
    else:
        return clothing1m_lib.load_clothing1m(path, meta_split=clothing1m_meta)
    return source if table is None else _with_label_array(source, table)


def _counts(labels, num_classes):
    return np.bincount(np.asarray(labels, dtype=np.int64),
                       minlength=num_classes).tolist()


def prepare(dataset, data_dir=None, path=None, noise="uniform",
            noise_rate=0.4, imbalance_factor=1.0, meta_per_class=None, seed=1,
            batch_size=100, meta_batch_size=100, eval_batch_size=None,
            cache_dir=None, train_subset=None, download=True,
            clothing1m_meta="clean_val", epoch=None, meta_source="auto",
            pseudo_clean_per_class=DEFAULT_PSEUDO_CLEAN_PER_CLASS,
            pseudo_clean_pool=1.0, labels_file=None, labels_key=None,
            clean_labels_key=None, label_classes=None):
    """Loads a data set and builds its noisy train, clean meta and test pipelines.

    All arguments are checked before anything is loaded. See the module
    docstring for the order of meta split, imbalance, subset and noise.

    Args:
        dataset: "cifar10", "cifar100" (tensorflow-datasets), "folder" (an
            image-folder tree or .tar.gz of one) or "clothing1m".
        data_dir: tensorflow-datasets data directory (cifar10/cifar100 only);
            None uses tfds' default.
        path: Image folder or archive ("folder"), or Clothing1M root.
        noise: Label noise type, one of `NOISE_TYPES`. Clothing1M needs "none"
            (its labels are noisy already).
        noise_rate: Corruption probability p in [0, 1] (ignored for "none").
        imbalance_factor: Long-tail imbalance factor IF >= 1; 1 = balanced.
        meta_per_class: Clean meta examples per class. None: the whole trusted
            split if the source has one, else 1000 / K per class (at least 1),
            the official code's 1000 meta images (100 per class for CIFAR-10,
            10 for CIFAR-100).
        seed: Non-negative integer; fixes the meta set, imbalance, subset,
            noise, shuffling and augmentation.
        batch_size: Training batch size.
        meta_batch_size: Meta batch size.
        eval_batch_size: Test batch size; None means `batch_size`.
        cache_dir: Cache for unpacked archives and decoded images ("folder");
            None means ~/.cache/mwnet_tf.
        train_subset: If given, keep only this many training examples (seeded
            random choice, after the meta split and imbalance).
        download: Whether tensorflow-datasets may download missing data.
        clothing1m_meta: Clean Clothing1M split used as the meta set:
            "clean_val" (default; Meta-Weight-Net takes its Clothing1M meta
            set from the clean validation data) or "clean_train".
        epoch: Optional scalar integer `tf.Variable` that holds the current
            epoch when an epoch's iteration starts (e.g. assigned by a
            callback in `on_epoch_begin`). The order and augmentation of the
            train and meta batches of epoch e are then a function of (seed, e)
            alone, so a resumed run sees the same batches as an uninterrupted
            one. None: each new iteration draws the next key of a sequence
            fixed by `seed`.
        meta_source: Where the meta set comes from, one of `META_SOURCES`
            (module docstring); "auto": the trusted split if there is one,
            else a clean draw where the labels are known to be clean
            (synthetic noise, CIFAR), else "pseudo_clean".
        pseudo_clean_per_class: k, the pseudo-clean meta set's examples
            per given class.
        pseudo_clean_pool: The fraction of the training split the
            pseudo-clean choice scores each epoch, a fresh seeded draw of
            each given class (at least k of each); 1: every example, as
            CMW-Net-SL does. Under 1, `selection_pool` holds the draw.
        labels_file: Training labels from a file instead (module
            `label_file`): a CSV table of `path,label[,split][,clean_label]`
            for dataset="folder" (paths under `path`, any tree), or a
            .npy/.npz of one label per training example in the data set's
            canonical order (CIFAR-N's). Labels from a file are taken as
            possibly wrong: "auto" gives a pseudo-clean meta set unless the
            CSV has trusted "meta" rows.
        labels_key: The CSV column or .npz array of the labels (default
            "label"; the only array of a .npz).
        clean_labels_key: The CSV column or .npz array of the true labels,
            if known (CSV default: "clean_label" when present); noise
            statistics and the audit's detection then use them. A label
            array on an image folder needs them to place each file.
        label_classes: Class names in label order, for a CSV's integer
            labels (default: names from the labels).

    Returns:
        A `PreparedData`.

    Raises:
        ValueError: For invalid arguments or combinations, data that cannot
            satisfy them (e.g. a class smaller than meta_per_class), or a
            malformed folder.
        FileNotFoundError: For a missing path.
        RuntimeError: If tensorflow-datasets cannot load or download the data.
    """
    _check_arguments(dataset, noise, noise_rate, imbalance_factor,
                     meta_per_class, seed, batch_size, meta_batch_size,
                     eval_batch_size, train_subset, clothing1m_meta, epoch,
                     meta_source, pseudo_clean_per_class, pseudo_clean_pool,
                     labels_file, labels_key, clean_labels_key, label_classes)
    check_data_paths(dataset, data_dir, path, download)
    eval_batch_size = eval_batch_size or batch_size
    table = None
    if labels_file is not None:
        table = load_label_table(dataset, noise, labels_file, labels_key,
                                 clean_labels_key, label_classes)
        resolve_meta_source(meta_source, dataset, noise,
                            trusted_split_before_loading(dataset),
                            labels_from_file=True,
                            truth_known=table.kind == "array"
                            or table.truth_known)

    source = _load(dataset, data_dir, path, cache_dir, download,
                   clothing1m_meta, table)
    num_classes = source.num_classes
    synthetic_noise = source.train.clean_labels is None
    true_matrix = None
    if synthetic_noise and noise == INSTANCE_NOISE:
        check_noise(noise, noise_rate, num_classes)
        if not source.in_memory:
            raise ValueError(
                "noise='instance' projects each image's pixels, so it needs "
                "images held in memory (CIFAR, or an image folder of small "
                "images); this source reads files per batch. Use another "
                "noise type.")
    elif synthetic_noise:
        # Fails early (e.g. "pair" on a folder without 10 classes, "asym"
        # on classes that are not CIFAR's).
        true_matrix = noise_transition_matrix(
            num_classes, noise, noise_rate, _stage_seed(seed, "noise"),
            source.class_names)

    # 2. Meta set.
    meta_source = resolve_meta_source(
        meta_source, dataset, noise, source.meta is not None,
        labels_from_file=table is not None,
        truth_known=None if table is None else (
            table.kind == "array" or table.truth_known))
    if meta_source == "trusted":
        meta = source.meta
        if meta_per_class is not None:
            meta = meta.take(sample_per_class(
                meta.labels, meta_per_class, _stage_seed(seed, "meta"),
                num_classes))
        train = source.train
        meta_origin = source.meta_origin
    elif meta_source != "pseudo_clean" or (synthetic_noise
                                           and noise != "none"):
        per_class = meta_per_class or max(1, DEFAULT_META_TOTAL // num_classes)
        # A clean draw from labels that came noisy (a label file) draws by
        # the true labels the file gives, and teaches with them.
        by_truth = meta_source == "clean_draw" and not synthetic_noise
        draw_labels = (source.train.clean_labels if by_truth
                       else source.train.labels)
        train_indices, meta_indices = split_meta(
            draw_labels, per_class, _stage_seed(seed, "meta"), num_classes)
        meta = source.train.take(meta_indices)
        if by_truth:
            meta = dataclasses.replace(meta, labels=meta.clean_labels)
        train = source.train.take(train_indices)
        meta_origin = {
            "clean_draw": f"clean: {per_class} per class drawn from the "
                          "training split " + (
                              "with the true labels the labels file gives"
                              if by_truth else
                              "before the noise was added"),
            "given_draw": f"given labels, which may be wrong: {per_class} "
                          "per class drawn from the training split",
            "pseudo_clean": None}[meta_source]
    else:
        train = source.train
    # 3. Imbalance.
    if imbalance_factor > 1:
        train = train.take(long_tailed_indices(
            train.labels, num_classes, imbalance_factor,
            _stage_seed(seed, "imbalance")))

    # 4. Subset.
    if train_subset is not None:
        if train_subset > len(train):
            raise ValueError(
                f"train_subset={train_subset} exceeds the {len(train)} "
                "training examples left after the meta split and imbalance.")
        rng = np.random.default_rng(_stage_seed(seed, "subset"))
        train = train.take(np.sort(rng.choice(len(train), train_subset,
                                              replace=False)))

    # 5. Noise.
    if synthetic_noise:
        clean = train.labels
        noisy = corrupt_labels(clean, num_classes, noise, noise_rate,
                               _stage_seed(seed, "noise"), source.class_names,
                               images=(train.images if noise == INSTANCE_NOISE
                                       else None))
    else:
        noisy, clean = train.labels, train.clean_labels
    known = clean >= 0
    noise_stats = label_noise_statistics(clean[known], noisy[known],
                                         num_classes)
    # Only noise injected here says which examples are corrupted. Labels that
    # came noisy (noise="none") get no flags: all-zero flags would make the
    # trainer log a corrupted_weight of 0 for a split nobody knows.
    corrupted = None if noise == "none" else noisy != clean

    if meta_source == "given_draw" and synthetic_noise:
        # The meta set as it would be drawn from the noisy training labels.
        meta = Split(
            labels=corrupt_labels(
                meta.labels, num_classes, noise, noise_rate,
                _stage_seed(seed, "meta_noise"), source.class_names,
                images=meta.images if noise == INSTANCE_NOISE else None),
            images=meta.images, paths=meta.paths,
            clean_labels=meta.labels, index=meta.index, files=meta.files)
    selection = None
    if meta_source == "pseudo_clean":
        per_class = pseudo_clean_per_class
        from mwnet_tf import pseudo_clean  # Keras; imported when used.
        pseudo_clean.check_labels_allow(noisy, per_class, num_classes)
        with tf.device("/cpu:0"):
            # Until the model first chooses (after its warm-up, before any
            # meta step): a seeded draw from the given labels.
            selection = tf.Variable(
                sample_per_class(noisy, per_class, _stage_seed(seed, "meta"),
                                 num_classes),
                trainable=False, dtype=tf.int64, name="meta_selection")
        scored = ("the training split" if pseudo_clean_pool == 1 else
                  f"a fresh {pseudo_clean_pool:.0%} of the training split")
        meta_origin = (f"pseudo-clean: the {per_class} examples per given "
                       "class with the lowest loss under the averaged "
                       f"model, chosen from {scored} each epoch (their "
                       "labels are as given)")
        meta = train
        meta_labels = noisy
    else:
        meta_labels = meta.labels
    num_meta = len(meta) if selection is None else int(selection.shape[0])

    if len(train) < batch_size:
        raise ValueError(
            f"Only {len(train)} training examples remain, fewer than "
            f"batch_size={batch_size}; lower batch_size or train on more data.")
    if num_meta < meta_batch_size:
        raise ValueError(
            f"The meta set has {num_meta} examples, fewer than "
            f"meta_batch_size={meta_batch_size}; lower meta_batch_size or "
            "raise meta_per_class.")

    if source.in_memory:
        # Each split's images become one host tensor, shared by all the
        # pipelines that read the split (training, evaluation, shards).
        host_images = {}

        def build(split, labels, batch, **kwargs):
            if id(split) not in host_images:
                with tf.device("/cpu:0"):
                    host_images[id(split)] = tf.convert_to_tensor(
                        np.asarray(split.images, np.uint8))
            return pipeline.array_dataset(host_images[id(split)], labels,
                                          batch, **kwargs)
        image_shape = tuple(int(d) for d in source.train.images.shape[1:])
    else:
        def build(split, labels, batch, **kwargs):
            return pipeline.file_dataset(split.paths, labels, batch, **kwargs)
        image_shape = (224, 224, 3)

    def training_shard(shard):
        train_ds = build(train, noisy, batch_size, corrupted=corrupted,
                         shuffle=True, augment=True, drop_remainder=True,
                         seed=_stage_seed(seed, "train_pipeline"),
                         epoch=epoch, shard=shard)
        meta_ds = build(meta, meta_labels, meta_batch_size, shuffle=True,
                        augment=True, drop_remainder=True, repeat=True,
                        seed=_stage_seed(seed, "meta_pipeline"), epoch=epoch,
                        shard=shard, subset=selection)
        return train_ds, meta_ds

    train_ds, meta_ds = training_shard(None)
    meta_eval_ds = build(meta, meta_labels, eval_batch_size,
                         subset=selection)
    test_ds = build(source.test, source.test.labels, eval_batch_size)
    train_eval_ds = build(train, noisy, eval_batch_size)
    pool = None
    if selection is not None and pseudo_clean_pool < 1:
        sizes = pool_sizes(noisy, pseudo_clean_pool, pseudo_clean_per_class,
                           num_classes)
        pool_seed = _stage_seed(seed, "pseudo_clean_pool")
        with tf.device("/cpu:0"):
            indices = tf.Variable(draw_pool(noisy, sizes, pool_seed, 0),
                                  trainable=False, dtype=tf.int64,
                                  name="pseudo_clean_pool")
        pool = ScoringPool(indices=indices, sizes=sizes, seed=pool_seed,
                           dataset=build(train, noisy, eval_batch_size,
                                         subset=indices))
    # The true labels are known where noise was injected here, and where the
    # source says (Clothing1M's images with a clean label); labels that came
    # as they are (noise="none" on CIFAR or a folder) are not known to be true.
    truth_known = noise != "none" or not synthetic_noise
    train_examples = Split(labels=noisy, images=train.images,
                           paths=train.paths,
                           clean_labels=clean if truth_known else None,
                           index=train.index, files=train.files)

    statistics = {
        "dataset": dataset,
        "class_names": list(source.class_names),
        "num_classes": num_classes,
        "noise": noise,
        "noise_rate": float(noise_rate),
        "imbalance_factor": float(imbalance_factor),
        "seed": int(seed),
        "meta_source": meta_source,
        "meta_origin": meta_origin,
        "labels_file": None if table is None else {
            "kind": table.kind, "file": os.path.basename(table.source),
            "labels_key": labels_key, "clean_labels_key": clean_labels_key},
        "order": "meta split, imbalance, train_subset, noise",
        "num_train": len(train),
        "num_meta": num_meta,
        "num_test": len(source.test),
        "train_counts_clean": _counts(clean[clean >= 0], num_classes),
        "train_counts_noisy": _counts(noisy, num_classes),
        "meta_counts": _counts(meta_labels if selection is None
                               else np.asarray(meta_labels)[
                                   selection.numpy()], num_classes),
        "test_counts": _counts(source.test.labels, num_classes),
        "realised_noise_rate": noise_stats["realised_noise_rate"],
        "corrupted_counts": noise_stats["corrupted_counts"],
        "num_train_with_clean_label": noise_stats["num_examples"],
        "transition_matrix_true": (None if true_matrix is None
                                   else true_matrix.tolist()),
        "transition_matrix_empirical": noise_stats["transition_matrix"],
    }
    label_table, train_table_rows = source.label_table, None
    if label_table is not None:
        train_table_rows = source.train_table_rows[train.index]
        if synthetic_noise and noise != "none":
            # The table says what the run trained on: the noisy labels, the
            # file's (or folder's) own labels as the truth.
            labels = label_table.labels.copy()
            labels[train_table_rows] = noisy
            label_table = dataclasses.replace(
                label_table, labels=labels,
                clean_labels=label_table.labels.copy())
    return PreparedData(
        train=train_ds, meta=meta_ds, meta_eval=meta_eval_ds, test=test_ds,
        num_classes=num_classes,
        class_names=tuple(source.class_names), image_shape=image_shape,
        steps_per_epoch=len(train) // batch_size,
        meta_steps_per_epoch=num_meta // meta_batch_size,
        num_train=len(train), num_meta=num_meta, num_test=len(source.test),
        statistics=statistics, train_eval=train_eval_ds,
        train_examples=train_examples, meta_source=meta_source,
        meta_selection=selection, selection_pool=pool,
        label_table=label_table,
        train_table_rows=train_table_rows,
        _training_shard=training_shard)
