"""Containers for loaded data: a split (images or file paths, labels) and a source."""

import dataclasses
from typing import Optional, Tuple

import numpy as np


@dataclasses.dataclass(frozen=True)
class Split:
    """One split of a data set, held either as images or as file paths.

    Attributes:
        labels: int64 array [N], the labels the split comes with (for
            Clothing1M's noisy training set, the noisy labels).
        images: uint8 array [N, H, W, C] of decoded images, or None.
        paths: str array [N] of image files decoded on the fly, or None.
        clean_labels: int64 array [N] of known true labels, -1 where unknown,
            or None when `labels` are themselves the true labels.
        index: int64 array [N]: each example's position in the split as it
            was loaded, kept through `take`, so that an example can be found
            again after meta split, imbalance and subsetting. Defaults to
            0 .. N-1.
        files: str array [N] naming each example's image file (relative to
            the image folder's root, or the path of a file-backed split), or
            None when the source has no files (tensorflow-datasets).
    """

    labels: np.ndarray
    images: Optional[np.ndarray] = None
    paths: Optional[np.ndarray] = None
    clean_labels: Optional[np.ndarray] = None
    index: Optional[np.ndarray] = None
    files: Optional[np.ndarray] = None

    def __post_init__(self):
        if (self.images is None) == (self.paths is None):
            raise ValueError("A Split holds exactly one of images or paths.")
        if self.index is None:
            # Frozen: the default is set once, here.
            object.__setattr__(self, "index",
                               np.arange(len(self), dtype=np.int64))
        if self.files is None and self.paths is not None:
            object.__setattr__(self, "files", self.paths)

    def __len__(self):
        return int(self.labels.shape[0])

    def take(self, indices):
        """Returns the split restricted to `indices` (in that order)."""
        indices = np.asarray(indices, dtype=np.int64)

        def pick(array):
            return None if array is None else array[indices]

        return Split(labels=self.labels[indices], images=pick(self.images),
                     paths=pick(self.paths),
                     clean_labels=pick(self.clean_labels),
                     index=self.index[indices], files=pick(self.files))


@dataclasses.dataclass(frozen=True)
class Source:
    """A loaded data set, before meta split, imbalance and noise.

    Attributes:
        name: Data set name, e.g. "cifar10".
        class_names: Names of classes 0 .. K-1.
        train: The training split.
        test: The test split.
        meta: A trusted clean split to draw the meta set from, or None when the
            meta set is to be taken out of `train`.
        meta_origin: Human-readable origin of `meta`, for the statistics.
        label_table: The labels as the user holds them (a label file, or
            the class folders as a table), for writing them back out; None
            when they came from nowhere a user keeps (tensorflow-datasets).
        train_table_rows: int64 [len(train)]: the `label_table` row of each
            training example (None with no table).
    """

    name: str
    class_names: Tuple[str, ...]
    train: Split
    test: Split
    meta: Optional[Split] = None
    meta_origin: Optional[str] = None
    label_table: Optional[object] = None
    train_table_rows: Optional[np.ndarray] = None

    @property
    def num_classes(self):
        return len(self.class_names)

    @property
    def in_memory(self):
        """Whether the images are decoded arrays (else file paths)."""
        return self.train.images is not None
