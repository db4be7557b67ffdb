"""The functions of mwnet_tf.meta_gradient, each against its definition.

These test the mathematics without MetaWeightNet, Keras's fit or a strategy
(test_trainer.py tests the step that composes them).
"""

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

import mwnet_tf
from mwnet_tf import meta_gradient as mg
import reference_math as ref

CE = functools.partial(mg.cross_entropy, dtype="float64")


def _parts(seed=0, lr=0.5, momentum=0.9):
    """A float64 classifier, V and a built SGD whose slots are non-zero (so
    that the "optimizer" lookahead uses them)."""
    classifier = ref.classifier("float64", seed=seed)
    net = mwnet_tf.WeightingNet(hidden_sizes=(8,), seed=seed, dtype="float64")
    optimizer = keras.optimizers.SGD(lr, momentum=momentum, nesterov=True)
    optimizer.build(classifier.trainable_variables)
    rng = np.random.default_rng(seed + 1)
    for slot in optimizer.momentums:
        slot.assign(rng.normal(scale=0.1, size=slot.shape))
    return classifier, net, optimizer


def _forward(classifier, x, y, moved_layers=None, loss_scale=1.0):
    moved = None if moved_layers is None else [
        v for v in classifier.trainable_variables
        if v.path.split("/")[0] in moved_layers]
    return mg.Forward(classifier, x, y, CE, lookahead_variables=moved,
                      loss_scale=loss_scale)


def _assert_matches_finite_differences(grads, objective, net):
    """`grads` w.r.t. V's variables equal central differences of
    `objective()` to 1e-4 of their largest entry, none of them all zero."""
    numeric = ref.finite_difference_gradient(objective,
                                             net.trainable_variables)
    for variable, grad, expected in zip(net.trainable_variables, grads,
                                        numeric):
        assert np.max(np.abs(expected)) > 0
        error = (np.max(np.abs(grad.numpy() - expected))
                 / np.max(np.abs(expected)))
        assert error < 1e-4, (variable.path, error)


@pytest.mark.parametrize("rule", mg.LOOKAHEADS)
@pytest.mark.parametrize("normalization,moved_layers", [
    ("mean", None), ("sum", None),
    # Partial lookaheads: the top layer, the top two (BatchNorm included),
    # a bottom layer alone.
    ("mean", ["logits"]), ("sum", ["norm", "logits"]), ("mean", ["hidden"])])
def test_meta_gradients_match_finite_differences(rule, normalization,
                                                 moved_layers):
    classifier, net, optimizer = _parts()
    x, y, x_meta, y_meta = ref.batches(2, dtype="float64")
    lookahead = mg.Lookahead(optimizer, rule, weight_decay=5e-4)
    grads, meta_loss, *_ = mg.meta_gradients(
        _forward(classifier, x, y, moved_layers), net, lookahead, x_meta,
        y_meta, CE, normalization)

    def objective():
        return ref.meta_loss(classifier,
                             ref.mwnet_coefficients(net, normalization), x, y,
                             x_meta, y_meta, optimizer, rule, 5e-4,
                             moved_layers)

    assert float(meta_loss) == pytest.approx(objective(), rel=1e-10)
    _assert_matches_finite_differences(grads, objective, net)


def test_l2rw_weights_are_clipped_negative_slopes_of_the_meta_loss():
    classifier, _, optimizer = _parts(seed=3, momentum=0.0)
    x, y, x_meta, y_meta = ref.batches(4, dtype="float64")
    weights, *_ = mg.l2rw_weights(_forward(classifier, x, y),
                                    mg.Lookahead(optimizer), x_meta, y_meta,
                                    CE)
    step = 1e-5
    slopes = np.zeros(len(x))
    for i in range(len(x)):
        shift = np.zeros(len(x))
        shift[i] = step
        slopes[i] = (ref.meta_loss(classifier, lambda l: shift, x, y, x_meta,
                                   y_meta, optimizer)
                     - ref.meta_loss(classifier, lambda l: -shift, x, y,
                                     x_meta, y_meta, optimizer)) / (2 * step)
    expected = np.maximum(-slopes, 0.0)
    assert 0 < np.count_nonzero(expected) < len(x)  # Both kinds, clipped.
    np.testing.assert_allclose(weights.numpy(), expected, rtol=1e-5,
                               atol=1e-9)


@pytest.mark.parametrize("nesterov", [True, False])
def test_the_optimizer_lookahead_is_the_step_keras_sgd_takes(nesterov):
    classifier, _, _ = _parts()
    optimizer = keras.optimizers.SGD(0.3, momentum=0.8, nesterov=nesterov)
    variables = classifier.trainable_variables
    optimizer.build(variables)
    rng = np.random.default_rng(5)
    for slot in optimizer.momentums:
        slot.assign(rng.normal(size=slot.shape))
    grads = [tf.constant(rng.normal(size=v.shape)) for v in variables]
    looked_ahead = mg.Lookahead(optimizer, "optimizer", weight_decay=0.01)(
        variables, grads)
    optimizer.apply([g + 0.01 * v for g, v in zip(grads, variables)],
                    variables)
    # Keras keeps the learning rate in float32, hence the tolerance.
    for expected, variable in zip(looked_ahead, variables):
        np.testing.assert_allclose(variable.numpy(), expected.numpy(),
                                   rtol=1e-5, atol=1e-7)


def test_loss_coefficients_reduce_as_named():
    weights = tf.constant([0.5, 1.0, 0.25, 0.25], tf.float64)
    np.testing.assert_allclose(mg.loss_coefficients(weights, "mean"),
                               weights.numpy() / 4)
    np.testing.assert_allclose(mg.loss_coefficients(weights, "sum"),
                               weights.numpy() / 2)
    with pytest.raises(ValueError, match="normalization must be one of"):
        mg.loss_coefficients(weights, "median")


def test_loss_coefficients_on_two_replicas_are_one_device_s(
        two_replica_strategy):
    weights = np.array([0.5, 1.0, 0.25, 0.25, 2.0, 0.0], "float32")
    halves = iter([weights[:3], weights[3:]])
    values = two_replica_strategy.experimental_distribute_values_from_function(
        lambda context: tf.constant(next(halves)))
    for normalization in mg.WEIGHT_NORMALIZATIONS:
        per_replica = two_replica_strategy.run(
            lambda w: mg.loss_coefficients(w, normalization), args=(values,))
        joined = np.concatenate([v.numpy() for v in
                                 two_replica_strategy.experimental_local_results(
                                     per_replica)])
        np.testing.assert_allclose(
            joined, mg.loss_coefficients(tf.constant(weights),
                                         normalization).numpy(), rtol=1e-6)


def test_forward_gradients_carry_the_loss_scale_and_the_lookahead_not():
    classifier, _, _ = _parts()
    x, y, _, _ = ref.batches(6, dtype="float64")
    coefficients = tf.constant(np.linspace(0.0, 1.0, len(x)))
    with tf.GradientTape() as tape:
        logits = classifier(x, training=True)
        weighted = tf.reduce_sum(coefficients * ref.per_example_ce(y, logits))
    expected = tape.gradient(weighted, classifier.trainable_variables)
    forward = _forward(classifier, x, y, moved_layers=["logits"],
                       loss_scale=1024.0)
    for got, want in zip(forward.scaled_gradients(coefficients), expected):
        np.testing.assert_allclose(got.numpy(), 1024.0 * want.numpy(),
                                   rtol=1e-10)
    # The lookahead's gradients are the true ones, of its variables only.
    lookahead = forward.lookahead_gradients(coefficients)
    assert len(lookahead) == 2  # The logits layer's kernel and bias.
    for got, want in zip(lookahead, expected[-2:]):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-10)


def _soft_targets(seed, n=12):
    """Distributions over the classes, as an EMA model's softmax gives."""
    logits = np.random.default_rng(seed).normal(size=(n, ref.NUM_CLASSES))
    return tf.nn.softmax(tf.constant(logits, tf.float64))


@pytest.mark.parametrize("normalization", mg.WEIGHT_NORMALIZATIONS)
def test_corrected_meta_gradients_match_finite_differences(normalization):
    classifier, net, optimizer = _parts(seed=4)
    x, y, x_meta, y_meta = ref.batches(5, dtype="float64")
    targets = _soft_targets(6)
    lookahead = mg.Lookahead(optimizer, "sgd")
    forward = mg.Forward(classifier, x, y, CE, soft_targets=targets)
    assert forward.corrected
    grads, meta_loss, *_ = mg.meta_gradients(forward, net, lookahead, x_meta,
                                            y_meta, CE, normalization)

    def objective():
        return ref.meta_loss(
            classifier, ref.corrected_coefficients(net, normalization), x, y,
            x_meta, y_meta, optimizer, soft_targets=targets)

    assert float(meta_loss) == pytest.approx(objective(), rel=1e-10)
    # The correction changes the objective: not the uncorrected one.
    uncorrected = ref.meta_loss(classifier,
                                ref.mwnet_coefficients(net, normalization),
                                x, y, x_meta, y_meta, optimizer)
    assert abs(uncorrected - objective()) > 1e-6
    _assert_matches_finite_differences(grads, objective, net)


def test_corrected_step_is_cross_entropy_to_the_soft_target():
    """v CE(f, y) + (1 - v) CE(f, p) = CE(f, v onehot(y) + (1 - v) p): the
    real step's gradient is that of the mean CE to the mixed target."""
    classifier, _, _ = _parts(seed=7)
    x, y, _, _ = ref.batches(8, dtype="float64")
    targets = _soft_targets(9)
    weights = tf.constant(np.random.default_rng(10).uniform(size=12))
    forward = mg.Forward(classifier, x, y, CE, soft_targets=targets,
                         loss_scale=4.0)
    coefficients = mg.loss_coefficients(weights, "mean", corrected=True)
    grads = forward.scaled_gradients(coefficients)
    mixed = (weights[:, None] * tf.one_hot(y, ref.NUM_CLASSES, dtype=tf.float64)
             + (1 - weights[:, None]) * targets)
    state = [v.value for v in classifier.non_trainable_variables]
    with tf.GradientTape() as tape:
        logits, _ = classifier.stateless_call(
            classifier.trainable_variables, state, x, training=True)
        loss = tf.reduce_mean(keras.losses.categorical_crossentropy(
            mixed, logits, from_logits=True))
    expected = tape.gradient(loss, classifier.trainable_variables)
    for got, want in zip(grads, expected):
        np.testing.assert_allclose(got.numpy() / 4.0, want.numpy(),
                                   rtol=1e-10, atol=1e-12)
    assert float(forward.objective(coefficients)) == pytest.approx(
        float(loss), rel=1e-10)
