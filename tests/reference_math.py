"""The meta objective written out independently of mwnet_tf, for tests.

First-order code with plain tapes: finite differences of these functions
check the second-order tape code of `mwnet_tf.meta_gradient`.
"""

import keras
import numpy as np
import tensorflow as tf

from mwnet_tf import keras_compat

NUM_CLASSES = 3
FEATURES = 5


def classifier(dtype="float32", batch_norm=True, seed=0):
    inputs = keras.Input((FEATURES,), dtype=dtype)
    hidden = keras.layers.Dense(
        6, dtype=dtype, name="hidden",
        kernel_initializer=keras.initializers.GlorotUniform(seed))(inputs)
    if batch_norm:
        hidden = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5,
                                                 dtype=dtype, name="norm")(hidden)
    hidden = keras.layers.Activation("tanh", dtype=dtype)(hidden)
    outputs = keras.layers.Dense(
        NUM_CLASSES, dtype=dtype, name="logits",
        kernel_initializer=keras.initializers.GlorotUniform(seed + 1))(hidden)
    return keras.Model(inputs, outputs)


def batches(seed, n=12, n_meta=8, dtype="float32"):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, FEATURES)).astype(dtype),
            rng.integers(0, NUM_CLASSES, n),
            rng.normal(size=(n_meta, FEATURES)).astype(dtype),
            rng.integers(0, NUM_CLASSES, n_meta))


def per_example_ce(y, logits):
    return keras.losses.sparse_categorical_crossentropy(y, logits,
                                                        from_logits=True)


def meta_loss(classifier, coefficients_of, x, y, x_meta, y_meta, optimizer,
              rule="sgd", weight_decay=0.0, moved_layers=None,
              soft_targets=None):
    """J: the clean meta loss after one lookahead step on sum_i c_i l_i.

    Args:
        coefficients_of: Maps the per-example losses l (a tensor) to the
            coefficients c (their weights, normalised).
        optimizer: The classifier's SGD (learning rate; for rule="optimizer"
            its momentum slots, momentum and Nesterov).
        rule: "sgd" (w - lr g) or "optimizer" (Keras SGD with Nesterov
            momentum and L2 on the gradient).
        moved_layers: Names of the layers whose variables move (None: all).
        soft_targets: With label correction, the distributions p [B, K]:
            `coefficients_of` then returns (c, d) and the lookahead descends
            sum_i c_i l_i + d_i CE(f(x_i), p_i).
    """
    state = [v.value for v in classifier.non_trainable_variables]
    all_variables = classifier.trainable_variables
    variables = [v for v in all_variables if moved_layers is None
                 or v.path.split("/")[0] in moved_layers]
    with tf.GradientTape() as tape:
        logits, _ = classifier.stateless_call(all_variables, state, x,
                                              training=True)
        losses = per_example_ce(y, logits)
        if soft_targets is None:
            weighted = tf.reduce_sum(coefficients_of(losses) * losses)
        else:
            label, model = coefficients_of(losses)
            to_targets = keras.losses.categorical_crossentropy(
                soft_targets, logits, from_logits=True)
            weighted = tf.reduce_sum(label * losses + model * to_targets)
    grads = tape.gradient(weighted, variables)
    lr = float(optimizer.learning_rate.numpy())
    if rule == "sgd":
        looked_ahead = [w - lr * g for w, g in zip(variables, grads)]
    else:
        mu = optimizer.momentum
        looked_ahead = []
        for w, g in zip(variables, grads):
            g = g + weight_decay * w
            velocity = optimizer.momentums[
                keras_compat.optimizer_variable_index(optimizer, w)]
            new_velocity = mu * velocity - lr * g
            looked_ahead.append(w + mu * new_velocity - lr * g)
    moved = dict(zip(map(id, variables), looked_ahead))
    meta_logits, _ = classifier.stateless_call(
        [moved.get(id(v), v) for v in all_variables], state, x_meta,
        training=True)
    return float(tf.reduce_mean(per_example_ce(y_meta, meta_logits)))


def mwnet_coefficients(weighting_net, normalization):
    """c = V(stop_grad(l)) / B ("mean") or / sum V ("sum")."""
    def coefficients_of(losses):
        weights = weighting_net(tf.stop_gradient(losses))
        if normalization == "sum":
            return weights / tf.reduce_sum(weights)
        return weights / tf.cast(tf.size(weights), weights.dtype)
    return coefficients_of


def corrected_coefficients(weighting_net, normalization):
    """(n v, n (1 - v)) with n = 1 / B ("mean") or 1 / sum v ("sum")."""
    def coefficients_of(losses):
        weights = weighting_net(tf.stop_gradient(losses))
        if normalization == "sum":
            normaliser = 1.0 / tf.reduce_sum(weights)
        else:
            normaliser = 1.0 / tf.cast(tf.size(weights), weights.dtype)
        return weights * normaliser, (1.0 - weights) * normaliser
    return coefficients_of


def finite_difference_gradient(function, variables, epsilon=1e-6):
    """Central differences of a scalar `function()` w.r.t. each variable."""
    gradients = []
    for variable in variables:
        original = variable.numpy()
        numeric = np.zeros_like(original)
        for index in np.ndindex(original.shape):
            for sign in (1, -1):
                shifted = original.copy()
                shifted[index] += sign * epsilon
                variable.assign(shifted)
                numeric[index] += sign * function() / (2 * epsilon)
        variable.assign(original)
        gradients.append(numeric)
    return gradients
