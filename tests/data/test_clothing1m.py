import json
import os

import numpy as np
import pytest
from data_fakes import listing, make_clothing1m

from mwnet_tf import data as data_lib
from mwnet_tf.data import clothing1m


@pytest.fixture
def root(tmp_path):
    return make_clothing1m(tmp_path / "clothing1m")


def test_loads_splits_with_right_labels(root):
    source = clothing1m.load_clothing1m(root)
    assert source.num_classes == 14 and not source.in_memory
    assert len(source.train) == len(source.meta) == len(source.test) == 42
    true = np.repeat(np.arange(14), 3)
    np.testing.assert_array_equal(source.test.labels, true)
    np.testing.assert_array_equal(source.meta.labels, true)
    assert all("clean_val" in p for p in source.meta.paths)
    noisy = np.where(np.tile([True, False, False], 14), (true + 1) % 14, true)
    np.testing.assert_array_equal(source.train.labels, noisy)
    known = np.where(np.tile([True, True, False], 14), true, -1)
    np.testing.assert_array_equal(source.train.clean_labels, known)
    other = clothing1m.load_clothing1m(root, meta_split="clean_train")
    assert all("clean_train" in p for p in other.meta.paths)


def test_prepare_clothing1m(root):
    before = listing(root)
    data = data_lib.prepare("clothing1m", path=root, noise="none",
                            batch_size=4, meta_batch_size=3,
                            meta_per_class=1, seed=0)
    assert listing(root) == before
    assert data.image_shape == (224, 224, 3)
    assert data.num_meta == 14 and data.num_train == 42
    assert data.steps_per_epoch == 10 and data.meta_steps_per_epoch == 4
    # The labels came noisy and no noise was injected: no corrupted flag.
    x, y = next(iter(data.train))
    assert x.shape == (4, 224, 224, 3) and y.shape == (4,)
    stats = data.statistics
    json.dumps(stats)
    # 28 training images have a clean label; 14 of those are mislabelled.
    assert stats["num_train_with_clean_label"] == 28
    assert stats["realised_noise_rate"] == 0.5
    x_m, y_m = next(iter(data.meta))
    assert x_m.shape == (3, 224, 224, 3)
    assert sum(len(y) for _, y in data.meta_eval) == 14
    x_t, y_t = next(iter(data.test.take(1)))
    np.testing.assert_array_equal(y_t, [0, 0, 0, 1])
    # For an audit: every training image's file, its given label, and the
    # clean label where the annotations have one (-1 elsewhere).
    examples = data.train_examples
    source = clothing1m.load_clothing1m(root)
    np.testing.assert_array_equal(examples.files, source.train.paths)
    np.testing.assert_array_equal(examples.labels, source.train.labels)
    np.testing.assert_array_equal(examples.clean_labels,
                                  source.train.clean_labels)
    assert all(os.path.isfile(path) for path in examples.files)
    audited = np.concatenate([y for _, y in data.train_eval])
    np.testing.assert_array_equal(audited, examples.labels)


def test_missing_annotation(root):
    os.remove(os.path.join(root, "annotations", "clean_val_key_list.txt"))
    with pytest.raises(FileNotFoundError, match="clean_val_key_list.txt"):
        data_lib.prepare("clothing1m", path=root, noise="none")


def test_missing_image(root):
    os.remove(os.path.join(root, "images", "3", "05", "clean_test_5_1.jpg"))
    with pytest.raises(FileNotFoundError, match="clean_test_5_1.jpg"):
        clothing1m.load_clothing1m(root)


def test_clothing1m_needs_no_synthetic_noise(root):
    with pytest.raises(ValueError, match="already noisy; use noise='none'"):
        data_lib.prepare("clothing1m", path=root, noise="uniform")
