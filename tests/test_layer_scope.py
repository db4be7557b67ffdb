"""meta_scope: which classifier layers the lookahead moves
(mwnet_tf/layer_scope.py), through MetaWeightNet's step."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import mwnet_tf
from reference_math import FEATURES, NUM_CLASSES
from reference_math import batches as _batches
from reference_math import classifier as _classifier
from reference_math import per_example_ce as _per_example_ce
from tiny_models import compiled as _compiled
from tiny_models import train as _train


class _CountingIdentity(keras.layers.Layer):
    """Identity whose backward pass counts how often it runs (eagerly)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.backward_calls = 0

    def call(self, inputs):
        @tf.custom_gradient
        def identity(x):
            def backward(upstream):
                self.backward_calls += 1
                return upstream
            return tf.identity(x), backward
        return identity(inputs)


@pytest.mark.parametrize("method", ["mwnet", "l2rw"])
@pytest.mark.parametrize("lookahead", ["sgd", "optimizer"])
def test_partial_lookahead_never_differentiates_below_its_scope(method,
                                                                lookahead):
    """With meta_scope="head" only the real step runs the lower backward.

    A counting identity sits between the bottom layers and the head. The
    exact algorithm runs its backward for the lookahead gradient, the meta
    backward and the real step; the head-only lookahead must run it once.
    """
    calls = {}
    for meta_scope in ("all", "head"):
        inputs = keras.Input((FEATURES,))
        hidden = keras.layers.Dense(6, activation="tanh")(inputs)
        counter = _CountingIdentity()
        outputs = keras.layers.Dense(NUM_CLASSES)(counter(hidden))
        model = mwnet_tf.MetaWeightNet(keras.Model(inputs, outputs),
                                       method=method, lookahead=lookahead,
                                       meta_scope=meta_scope)
        model.compile(run_eagerly=True)
        x, y, x_meta, y_meta = _batches(14)
        model.train_on_batch(((x, y), (x_meta, y_meta)))
        calls[meta_scope] = counter.backward_calls
    assert calls["head"] == 1
    assert calls["all"] >= 3


@pytest.mark.parametrize("method", ["mwnet", "l2rw"])
def test_scope_naming_every_layer_is_the_exact_algorithm(method):
    """Listing every layer takes the separate-tape path to the same numbers."""
    x, y, x_meta, y_meta = _batches(15)
    data = ((x, y), (x_meta, y_meta))
    exact = _compiled(method=method, dtype="float64")
    listed = _compiled(method=method, dtype="float64",
                       meta_scope=["hidden", "norm", "logits"])
    assert len(listed.lookahead_variables) == len(
        listed.classifier.trainable_variables)
    _train(exact, data, 2)
    _train(listed, data, 2)
    for a, b in zip(exact.variables, listed.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10,
                                   atol=1e-12, err_msg=a.path)


@pytest.mark.parametrize("meta_scope", ["head", 2])
def test_partial_meta_step_changes_only_the_weighting_net(meta_scope):
    """The meta step moves V and nothing of the classifier.

    After one step, V equals one Adam step on the partial meta-gradient
    (no L2), and the classifier (BatchNorm statistics included) equals one
    plain SGD step on the loss weighted by the new V: the lookahead left
    nothing of it moved.
    """
    model = _compiled(meta_scope=meta_scope, weight_decay=0.0,
                      meta_weight_decay=0.0, optimizer=keras.optimizers.SGD(0.5))
    x, y, x_meta, y_meta = _batches(16)
    classifier_before = [v.numpy().copy()
                         for v in model.classifier.variables]
    grads = model.compute_meta_gradients(x, y, x_meta, y_meta)
    for old, variable in zip(classifier_before, model.classifier.variables):
        np.testing.assert_array_equal(old, variable.numpy())
    reference = keras.optimizers.Adam(1e-3)
    theta = [keras.Variable(v.numpy()) for v in
             model.weighting_net.trainable_variables]
    reference.apply(grads, theta)
    # The classifier's reference: summed, so that the sample weights are
    # the loss coefficients V(l_i) / n of the "mean" normalisation.
    plain = _classifier()
    plain.compile(optimizer=keras.optimizers.SGD(0.5),
                  loss=keras.losses.SparseCategoricalCrossentropy(
                      from_logits=True, reduction="sum"))
    plain.set_weights(model.classifier.get_weights())
    logits, _ = plain.stateless_call(
        plain.trainable_variables,
        [v.value for v in plain.non_trainable_variables], x, training=True)
    losses = _per_example_ce(y, logits)
    model.train_on_batch(((x, y), (x_meta, y_meta)))
    for expected, variable in zip(theta,
                                  model.weighting_net.trainable_variables):
        np.testing.assert_allclose(variable.numpy(), expected.numpy(),
                                   rtol=1e-5, atol=1e-7)
    weights = model.weighting_function(losses).numpy() / len(x)
    plain.train_on_batch(x, y, sample_weight=weights)
    moved = False
    for before, a, b in zip(classifier_before, model.classifier.variables,
                            plain.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5,
                                   atol=1e-6, err_msg=a.path)
        moved |= bool(np.any(np.abs(a.numpy() - before) > 1e-4))
    assert moved  # The real step did train it.


def test_weight_layers_and_scopes_of_sequential_and_subclassed_models():
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = keras.layers.Dense(4, activation="relu")
            self.norm = keras.layers.BatchNormalization()
            self.logits = keras.layers.Dense(NUM_CLASSES)

        def call(self, x, training=None):
            return self.logits(self.norm(self.hidden(x), training=training))

    subclassed = Subclassed()
    subclassed(np.zeros((2, FEATURES), "float32"))
    sequential = keras.Sequential([keras.Input((FEATURES,)),
                                   keras.layers.Dense(4, name="a"),
                                   keras.layers.Dropout(0.1),
                                   keras.layers.Dense(NUM_CLASSES, name="b")])
    assert ([l.name for l in mwnet_tf.weight_layers(sequential)]
            == ["a", "b"])
    assert ([l for l in mwnet_tf.weight_layers(subclassed)]
            == [subclassed.hidden, subclassed.norm, subclassed.logits])
    head = mwnet_tf.MetaWeightNet(subclassed, meta_scope="head")
    assert ([id(v) for v in head.lookahead_variables]
            == [id(v) for v in subclassed.logits.trainable_weights])
    top2 = mwnet_tf.MetaWeightNet(subclassed, meta_scope=2)
    assert len(top2.lookahead_variables) == 4  # gamma, beta, kernel, bias
    # A nested model named in the scope contributes all its weights.
    inner = keras.Sequential([keras.Input((FEATURES,)),
                              keras.layers.Dense(4, name="first"),
                              keras.layers.Dense(4, name="second")],
                             name="block")
    inputs = keras.Input((FEATURES,))
    outer = keras.Model(inputs, keras.layers.Dense(
        NUM_CLASSES, name="top")(inner(inputs)))
    # Input to output through the nested model too (a nested backbone's
    # stem must not count as the top of the network).
    assert ([l.name for l in mwnet_tf.weight_layers(outer)]
            == ["first", "second", "top"])
    top2 = mwnet_tf.MetaWeightNet(outer, meta_scope=2)
    assert ([id(v) for v in top2.lookahead_variables] == [
        id(v) for layer in (inner.layers[1], outer.layers[-1])
        for v in layer.trainable_weights])
    nested = mwnet_tf.MetaWeightNet(outer, meta_scope=["block"])
    assert len(nested.lookahead_variables) == 4


@pytest.mark.parametrize("meta_scope,message", [
    (0, "between 1 and 3"), (4, "between 1 and 3"), ("top", "must be"),
    (True, "must be"), (["nope"], "'nope', not layers"), ([], "must be")])
def test_bad_meta_scope_is_rejected_with_a_clear_message(meta_scope, message):
    with pytest.raises(ValueError, match=message):
        mwnet_tf.MetaWeightNet(_classifier(), meta_scope=meta_scope)


def test_two_replicas_match_one_device_with_a_partial_lookahead(
        two_replica_strategy):
    x, y, x_meta, y_meta = _batches(17, n=16, n_meta=8)
    data = ((x, y), (x_meta, y_meta))
    single = _compiled(batch_norm=False, meta_scope="head")
    _train(single, data, 2)
    with two_replica_strategy.scope():
        mirrored = _compiled(batch_norm=False, meta_scope="head")
    _train(mirrored, data, 2)
    for a, b in zip(single.variables, mirrored.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5,
                                   err_msg=a.path)
