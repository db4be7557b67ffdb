"""Where the meta set comes from: trusted, clean draw, given draw, and the
pipelines of the pseudo-clean set the model chooses (the choice itself:
tests/test_pseudo_clean.py)."""

import numpy as np
import pytest
from data_fakes import make_folder
from data_fakes import prepare_folder as _folder

from mwnet_tf import data as data_lib
from mwnet_tf.data import preparation


@pytest.mark.parametrize("dataset,noise,trusted,expected", [
    ("folder", "none", True, "trusted"),
    ("folder", "uniform", True, "trusted"),
    ("folder", "uniform", False, "clean_draw"),
    ("folder", "instance", False, "clean_draw"),
    ("folder", "none", False, "pseudo_clean"),
    ("cifar10", "none", False, "clean_draw"),
    ("clothing1m", "none", True, "trusted"),
])
def test_auto_names_what_the_labels_are(dataset, noise, trusted, expected):
    assert preparation.resolve_meta_source("auto", dataset, noise,
                                           trusted) == expected


@pytest.mark.parametrize("source,trusted,noise,message", [
    ("trusted", False, "uniform", "has no trusted split"),
    ("clean_draw", False, "none", "labels are as given .* may be wrong"),
    ("sideways", False, "none", "Unknown meta_source 'sideways'"),
])
def test_a_source_the_data_cannot_give_is_refused(source, trusted, noise,
                                                   message):
    with pytest.raises(ValueError, match=message):
        preparation.resolve_meta_source(source, "folder", noise, trusted)


def test_refused_before_loading(monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError("prepare loaded data before checking arguments")

    monkeypatch.setattr(preparation, "_load", no_loading)
    with pytest.raises(ValueError, match="has no trusted split"):
        data_lib.prepare("cifar10", meta_source="trusted")
    with pytest.raises(ValueError, match="pseudo_clean_per_class|meta "
                       "examples per class"):
        data_lib.prepare("cifar10", meta_source="pseudo_clean",
                         pseudo_clean_per_class=0)


def test_given_draw_is_the_clean_draw_with_noisy_meta_labels(tiny_folder,
                                                             cache_dir):
    clean = _folder(tiny_folder, cache_dir, meta_source="clean_draw")
    given = _folder(tiny_folder, cache_dir, meta_source="given_draw")
    # The same training examples and labels.
    np.testing.assert_array_equal(clean.train_examples.index,
                                  given.train_examples.index)
    np.testing.assert_array_equal(clean.train_examples.labels,
                                  given.train_examples.labels)
    clean_meta = np.concatenate([y.numpy() for _, y in clean.meta_eval])
    given_meta = np.concatenate([y.numpy() for _, y in given.meta_eval])
    # 6 meta labels at p = 0.6 over 3 classes: most changed.
    assert (clean_meta != given_meta).sum() >= 2
    assert given.statistics["meta_source"] == "given_draw"
    assert "may be wrong" in given.statistics["meta_origin"]
    assert clean.statistics["meta_origin"].startswith("clean")


def test_pseudo_clean_meta_batches_come_from_the_selection(tmp_path,
                                                          cache_dir):
    root = make_folder(tmp_path / "own", ("a", "b", "c"),
                       {"train": 8, "test": 2})
    data = _folder(root, cache_dir, noise="none", meta_source="auto",
                   pseudo_clean_per_class=2, meta_batch_size=6)
    assert data.meta_source == "pseudo_clean"
    assert data.num_train == 24  # Nothing held out: no trusted label.
    assert data.num_meta == 6
    assert "pseudo-clean" in data.statistics["meta_origin"]
    assert "as given" in data.statistics["meta_origin"]
    labels = data.train_examples.labels
    np.testing.assert_array_equal(labels, np.repeat([0, 1, 2], 8))

    def meta_labels():
        eval_labels = np.concatenate([y.numpy() for _, y in data.meta_eval])
        _, y_meta = next(iter(data.meta))
        return eval_labels, y_meta.numpy()

    # The initial draw: two of each given class.
    for y in meta_labels():
        np.testing.assert_array_equal(np.bincount(y, minlength=3), [2, 2, 2])
    # A new selection (all of class 1) is what the pipelines read next.
    data.meta_selection.assign(np.arange(8, 14))
    for y in meta_labels():
        np.testing.assert_array_equal(y, np.ones(6))
    x_meta, _ = next(iter(data.meta))
    assert x_meta.shape == (6, 8, 8, 3)


def test_prepare_scores_a_pool_read_through_its_variable(tmp_path,
                                                          cache_dir):
    root = make_folder(tmp_path / "own", ("a", "b", "c"),
                       {"train": 12, "test": 2})
    data = _folder(root, cache_dir, noise="none", meta_source="pseudo_clean",
                   pseudo_clean_per_class=2, meta_batch_size=6,
                   pseudo_clean_pool=0.25)
    assert "a fresh 25% of the training split" in (
        data.statistics["meta_origin"])
    pool = data.selection_pool
    np.testing.assert_array_equal(pool.sizes, [3, 3, 3])
    for epoch in (0, 5):
        scored = pool.draw(data.train_examples.labels, epoch)
        x = np.concatenate([batch.numpy() for batch, _ in pool.dataset])
        y = np.concatenate([batch.numpy() for _, batch in pool.dataset])
        np.testing.assert_array_equal(y, data.train_examples.labels[scored])
        # The same pixels as the whole split's evaluation pipeline gives
        # those examples.
        every = np.concatenate([batch.numpy()
                                for batch, _ in data.train_eval])
        np.testing.assert_allclose(x, every[scored])
    whole = _folder(root, cache_dir, noise="none", meta_source="pseudo_clean",
                    pseudo_clean_per_class=2, meta_batch_size=6)
    assert whole.selection_pool is None
    with pytest.raises(ValueError, match=r"pool .* in \(0, 1\]"):
        _folder(root, cache_dir, noise="none", meta_source="pseudo_clean",
                pseudo_clean_pool=0)


def test_instance_noise_through_prepare(tmp_path, cache_dir):
    root = make_folder(tmp_path / "inst", ("a", "b", "c"),
                       {"train": 40, "test": 2})
    data = _folder(root, cache_dir, noise="instance", noise_rate=0.4)
    stats = data.statistics
    assert stats["noise"] == "instance"
    assert stats["transition_matrix_true"] is None
    examples = data.train_examples
    realised = np.mean(examples.labels != examples.clean_labels)
    assert stats["realised_noise_rate"] == pytest.approx(realised)
    assert 0.2 < realised < 0.6
    # The flags of the training batches are the realised corruption.
    flags = np.concatenate([c.numpy() for _, _, c in data.train])
    assert 0 < flags.mean() < 1
