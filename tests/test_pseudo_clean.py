"""The pseudo-clean meta set's choice (mwnet_tf.pseudo_clean): the lowest
averaged losses per class, from every example or from a part of each class
drawn afresh each epoch (`pseudo_clean_pool` under 1), and a resumed choice.
(The prepared pipelines: tests/data/test_meta_source.py.)"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import mwnet_tf
from mwnet_tf import pseudo_clean
from mwnet_tf.data import meta_split
from mwnet_tf.data.preparation import ScoringPool


def test_pool_sizes_take_the_fraction_of_each_class_at_least_k():
    labels = np.repeat([0, 1, 2], [100, 7, 30])
    np.testing.assert_array_equal(
        meta_split.pool_sizes(labels, 0.25, 10, 4), [25, 7, 10, 0])
    np.testing.assert_array_equal(
        meta_split.pool_sizes(labels, 1.0, 10, 3), [100, 7, 30])
    for bad in (0, -0.5, 1.01, True, "0.5"):
        with pytest.raises(ValueError, match=r"in \(0, 1\]"):
            meta_split.pool_sizes(labels, bad, 10, 3)


def test_each_epoch_draws_a_fresh_pool_of_each_class_and_a_seed_repeats_it():
    labels = np.random.default_rng(3).integers(0, 4, 400)
    sizes = meta_split.pool_sizes(labels, 0.25, 5, 4)
    pools = [meta_split.draw_pool(labels, sizes, seed=7, epoch=e)
             for e in range(3)]
    for pool in pools:
        assert (np.diff(pool) > 0).all()  # Sorted, no repeats.
        np.testing.assert_array_equal(
            np.bincount(labels[pool], minlength=4), sizes)
    assert not np.array_equal(pools[0], pools[1])
    np.testing.assert_array_equal(
        pools[2], meta_split.draw_pool(labels, sizes, seed=7, epoch=2))
    assert not np.array_equal(
        pools[2], meta_split.draw_pool(labels, sizes, seed=8, epoch=2))
    # Over many epochs every example gets scored: the pool moves.
    seen = np.unique(np.concatenate([
        meta_split.draw_pool(labels, sizes, 7, e) for e in range(40)]))
    assert seen.size == labels.size


def _model_on(x, seed=0):
    """A linear classifier whose averaged copy differs from it."""
    rng = np.random.default_rng(seed)
    inputs = keras.Input((x.shape[1],))
    classifier = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    model = mwnet_tf.MetaWeightNet(classifier, ema_decay=0.5)
    model.compile()
    for variable in classifier.trainable_variables:
        variable.assign(variable.numpy() + rng.normal(
            scale=3.0, size=variable.shape).astype("float32"))
    return model


def test_lowest_loss_per_class():
    losses = np.array([0.5, 0.1, 0.9, 0.3, 0.2, 0.8, 0.05])
    labels = np.array([0, 0, 0, 1, 1, 1, 0])
    np.testing.assert_array_equal(
        pseudo_clean.lowest_loss_per_class(losses, labels, 2, 2),
        [1, 3, 4, 6])
    with pytest.raises(ValueError, match="needs 4 examples labelled 1"):
        pseudo_clean.lowest_loss_per_class(losses, labels, 4, 2)


def test_selection_callback_picks_the_averaged_models_lowest_losses():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 4)).astype("float32")
    labels = rng.integers(0, 3, 30)
    clean = labels.copy()
    clean[:5] = (labels[:5] + 1) % 3  # Five wrong labels.
    # The classifier moved away from its average: the choice must follow
    # the average.
    model = _model_on(x, seed=1)
    classifier = model.classifier
    selection = tf.Variable(np.zeros(6, np.int64))
    dataset = tf.data.Dataset.from_tensor_slices((x, labels)).batch(7)
    callback = pseudo_clean.PseudoCleanSelection(
        dataset, labels, 2, selection, first_epoch=1, clean_labels=clean)
    callback.set_model(model)
    callback.on_epoch_begin(0)
    np.testing.assert_array_equal(selection.numpy(), np.zeros(6))
    logs = {"loss": 1.0}
    callback.on_epoch_end(0, logs)
    assert logs == {"loss": 1.0}  # Nothing chosen yet: no precision.
    callback.on_epoch_begin(1)
    losses = keras.losses.sparse_categorical_crossentropy(
        labels, model.averaged_outputs(x), from_logits=True).numpy()
    expected = pseudo_clean.lowest_loss_per_class(losses, labels, 2, 3)
    np.testing.assert_array_equal(selection.numpy(), expected)
    by_classifier = pseudo_clean.lowest_loss_per_class(
        keras.losses.sparse_categorical_crossentropy(
            labels, classifier(x), from_logits=True).numpy(), labels, 2, 3)
    assert (by_classifier != expected).any()
    logs = {}
    callback.on_epoch_end(1, logs)
    assert logs["meta_label_precision"] == pytest.approx(
        np.mean(clean[expected] == labels[expected]))
    # The averaged model's top class against the true labels of every
    # scored example, not the classifier's.
    top = np.argmax(model.averaged_outputs(x), axis=-1)
    assert logs["averaged_model_accuracy"] == pytest.approx(
        np.mean(top == clean))
    assert (np.argmax(classifier(x), axis=-1) != top).any()


def test_the_choice_is_the_lowest_averaged_losses_within_the_pool():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4)).astype("float32")
    labels = rng.integers(0, 3, 60)
    model = _model_on(x)
    sizes = meta_split.pool_sizes(labels, 0.4, 2, 3)
    indices = tf.Variable(np.zeros(int(sizes.sum()), np.int64))
    # What the prepared pipeline does: read the examples through the
    # variable when iterated.
    pool_dataset = tf.data.Dataset.range(int(sizes.sum())).batch(7).map(
        lambda i: (tf.gather(x, tf.gather(indices, i)),
                   tf.gather(labels, tf.gather(indices, i))))
    pool = ScoringPool(indices=indices, sizes=sizes, seed=11,
                       dataset=pool_dataset)
    selection = tf.Variable(np.zeros(6, np.int64))
    every = tf.data.Dataset.from_tensor_slices((x, labels)).batch(7)
    # True labels known for the first 40 examples only.
    clean = np.where(np.arange(60) < 40, (labels + (np.arange(60) % 3 == 0))
                     % 3, -1)
    callback = pseudo_clean.PseudoCleanSelection(
        every, labels, 2, selection, first_epoch=1, pool=pool,
        clean_labels=clean)
    callback.set_model(model)
    losses = keras.losses.sparse_categorical_crossentropy(
        labels, model.averaged_outputs(x), from_logits=True).numpy()
    chosen = {}
    for epoch in (1, 2):
        callback.on_epoch_begin(epoch)
        scored = meta_split.draw_pool(labels, sizes, 11, epoch)
        np.testing.assert_array_equal(indices.numpy(), scored)
        # Independently: the two lowest averaged losses of each class among
        # the scored examples, never an unscored one.
        expected = np.sort(np.concatenate([
            scored[labels[scored] == c][np.argsort(
                losses[scored][labels[scored] == c], kind="stable")[:2]]
            for c in range(3)]))
        np.testing.assert_array_equal(selection.numpy(), expected)
        assert np.isin(selection.numpy(), scored).all()
        chosen[epoch] = selection.numpy().copy()
        # The averaged model's accuracy: over the scored examples whose
        # true label is known, not the whole split.
        top = np.argmax(model.averaged_outputs(x), axis=-1)[scored]
        truth = clean[scored]
        logs = {}
        callback.on_epoch_end(epoch, logs)
        assert logs["averaged_model_accuracy"] == pytest.approx(
            np.mean(top[truth >= 0] == truth[truth >= 0]))
    # The whole split's lowest losses differ from the pool's at one of the
    # epochs (else this test could not tell the pool was used).
    everywhere = pseudo_clean.lowest_loss_per_class(losses, labels, 2, 3)
    assert any(not np.array_equal(everywhere, c) for c in chosen.values())
    # A resumed callback (a new object, same epoch) chooses the same.
    resumed = pseudo_clean.PseudoCleanSelection(
        every, labels, 2, selection, first_epoch=1, pool=pool)
    resumed.set_model(model)
    selection.assign(np.zeros(6, np.int64))
    resumed.on_epoch_begin(2)
    np.testing.assert_array_equal(selection.numpy(), chosen[2])
