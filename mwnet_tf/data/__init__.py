"""Data for Meta-Weight-Net: sources, clean meta set, label noise, imbalance, tf.data.

The experiment runner needs one call:

    data = mwnet_tf.data.prepare("cifar10", noise="uniform", noise_rate=0.4)
    data.train      # (image, noisy_label, is_corrupted) batches, one epoch;
                    # (image, label) with noise="none" (corruption unknown)
    data.meta       # (image, label) batches of the clean meta set, endless
    data.meta_eval  # (image, label) batches of the meta set, plain, one pass
    data.test       # (image, label) batches

The pieces are usable on their own: `corrupt_labels` and
`noise_transition_matrix` (noise.py), `long_tailed_counts` (imbalance.py),
`split_meta` (meta_split.py), the loaders (tfds_source.py, image_folder.py,
clothing1m.py), label files (label_file.py: CSV tables and label arrays in,
the audited labels out), the tf.data builders (pipeline.py) and `prepare`
(preparation.py), which chains them. `check_data_paths` checks the paths a
data set reads without reading it, for callers that must fail fast.
"""

from mwnet_tf.data.clothing1m import load_clothing1m
from mwnet_tf.data.image_folder import load_image_folder, load_labelled_files
from mwnet_tf.data.label_file import (LabelFileError, LabelTable,
                                      read_label_array, read_label_csv,
                                      write_labels)
from mwnet_tf.data.imbalance import long_tailed_counts, long_tailed_indices
from mwnet_tf.data.meta_split import sample_per_class, split_meta
from mwnet_tf.data.noise import (NOISE_TYPES, corrupt_labels,
                                 label_noise_statistics,
                                 noise_transition_matrix)
from mwnet_tf.data.pipeline import (CIFAR_MEAN, CIFAR_STD, IMAGENET_MEAN,
                                    IMAGENET_STD, array_dataset, file_dataset,
                                    normalize, pad_crop_flip)
from mwnet_tf.data.preparation import (DATASETS, META_SOURCES, PreparedData,
                                       check_data_paths,
                                       check_label_file_arguments,
                                       check_noise_of_dataset,
                                       load_label_table,
                                       check_path_given, prepare,
                                       resolve_meta_source)
from mwnet_tf.data.source import Source, Split
from mwnet_tf.data.tfds_source import load_tfds

__all__ = [
    "CIFAR_MEAN", "CIFAR_STD", "DATASETS", "IMAGENET_MEAN", "IMAGENET_STD",
    "META_SOURCES", "resolve_meta_source",
    "NOISE_TYPES", "PreparedData", "Source", "Split", "array_dataset",
    "check_data_paths", "check_label_file_arguments",
    "check_noise_of_dataset", "check_path_given", "load_label_table",
    "LabelTable", "LabelFileError", "read_label_csv", "read_label_array",
    "write_labels", "load_labelled_files",
    "corrupt_labels", "file_dataset",
    "label_noise_statistics", "load_clothing1m", "load_image_folder",
    "load_tfds", "long_tailed_counts", "long_tailed_indices",
    "noise_transition_matrix", "normalize", "pad_crop_flip", "prepare",
    "sample_per_class", "split_meta",
]
