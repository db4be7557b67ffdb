"""Soft label correction (CMW-Net-SL) and the EMA classifier it trusts."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import mwnet_tf
from reference_math import FEATURES, NUM_CLASSES
from reference_math import batches as _batches
from reference_math import classifier as _classifier
from tiny_models import max_difference as _max_difference
from tiny_models import train as _train
from tiny_models import traces_of

DECAY = 0.9  # Far from 1, so that a few steps move the average visibly.


def _learned_weighting_net(seed=3, class_aware=False):
    families = (dict(class_families=[0, 1, 1], num_families=2)
                if class_aware else {})
    net = mwnet_tf.WeightingNet(hidden_sizes=(8,), seed=seed, **families)
    rng = np.random.default_rng(seed)
    net.set_weights([rng.normal(scale=2.0, size=w.shape).astype("float32")
                     for w in net.get_weights()])
    return net


def _model(method="mwnet", batch_norm=True, steps_per_execution=1,
           class_aware=False, **options):
    net = (_learned_weighting_net(class_aware=class_aware)
           if method == "fixed"
           else mwnet_tf.WeightingNet(hidden_sizes=(8,), seed=0))
    model = mwnet_tf.MetaWeightNet(_classifier(batch_norm=batch_norm), net,
                                   method=method, label_correction=True,
                                   ema_decay=DECAY, **options)
    model.compile(optimizer=keras.optimizers.SGD(0.3, momentum=0.9),
                  weight_decay=0.0, steps_per_execution=steps_per_execution)
    return model


@pytest.mark.parametrize("class_aware", [False, True])
def test_fixed_v_corrected_step_is_cross_entropy_to_the_mixed_target(
        class_aware):
    """Each step descends mean CE(f(x), v onehot(y) + (1 - v) p), p the
    softmax of the classifier at the EMA weights (inference mode), and the
    EMA follows average <- d * average + (1 - d) * w after each step; with
    CMW-Net's class-aware V, v is each label's family's weight."""
    x, y, x_meta, y_meta = _batches(31)
    ours = _model(method="fixed", class_aware=class_aware)
    plain = _classifier()
    plain.compile(optimizer=keras.optimizers.SGD(0.3, momentum=0.9),
                  loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    plain.set_weights(ours.classifier.get_weights())
    averaged = _classifier()  # The EMA, kept by hand.
    averaged.set_weights(ours.classifier.get_weights())
    for _ in range(3):
        logits, _ = plain.stateless_call(
            plain.trainable_variables,
            [v.value for v in plain.non_trainable_variables], x, training=True)
        losses = keras.losses.sparse_categorical_crossentropy(
            y, logits, from_logits=True)
        v = ours.weighting_net(losses, y).numpy()[:, None]
        assert v.std() > 0.01  # Not the trivial uniform weighting.
        p = tf.nn.softmax(averaged(x, training=False)).numpy()
        target = v * np.eye(NUM_CLASSES)[y] + (1 - v) * p
        ours.train_on_batch(((x, y), (x_meta, y_meta)))
        plain.train_on_batch(x, target)
        for a, b in zip(ours.classifier.variables, plain.variables):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5,
                                       atol=1e-6, err_msg=a.path)
        averaged.set_weights([DECAY * a + (1 - DECAY) * w for a, w in zip(
            averaged.get_weights(), plain.get_weights())])
        np.testing.assert_allclose(
            ours.averaged_outputs(x).numpy(),
            averaged(x, training=False).numpy(), rtol=1e-5, atol=1e-6)
    # The average is not the classifier: it lags behind it.
    assert np.max(np.abs(ours.averaged_outputs(x).numpy()
                         - ours.classifier(x, training=False).numpy())) > 1e-3
    copy = ours.averaged_classifier()
    np.testing.assert_allclose(copy(x, training=False).numpy(),
                               averaged(x, training=False).numpy(),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("debias", [False, True])
def test_average_is_the_exponentially_weighted_mean_of_the_steps(debias):
    """After steps 1..T with weights w_1..w_T from w_0, the plain average is
    d^T w_0 + sum_t (1 - d) d^(T - t) w_t; debiased, the same sum without
    the initial weights' term, divided by 1 - d^T (the weights' shares
    summing to 1)."""
    x, y, x_meta, y_meta = _batches(37)
    model = mwnet_tf.MetaWeightNet(_classifier(), method="ce",
                                   ema_decay=DECAY, ema_debias=debias)
    model.compile(optimizer=keras.optimizers.SGD(0.3, momentum=0.9),
                  weight_decay=0.0)
    reached = [model.classifier.get_weights()]
    steps = 4
    for _ in range(steps):
        _train(model, ((x, y), (x_meta, y_meta)), 1)
        reached.append(model.classifier.get_weights())
    shares = [(1 - DECAY) * DECAY ** (steps - t) for t in range(1, steps + 1)]
    if debias:
        shares = [0.0] + [share / (1 - DECAY ** steps) for share in shares]
    else:
        shares = [DECAY ** steps] + shares
    assert sum(shares) == pytest.approx(1.0)
    expected = [sum(share * weights[i] for share, weights in
                    zip(shares, reached)) for i in range(len(reached[0]))]
    averaged = model.averaged_classifier().get_weights()
    # (The two rules differ by the initial weights' share, d^T = 0.66.)
    for a, b in zip(averaged, expected):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_warmup_steps_are_plain_cross_entropy():
    """During meta_warmup_steps the soft target is the given label: the
    step is CE's (CMW-Net-SL warms up with CE); afterwards it is not."""
    x, y, x_meta, y_meta = _batches(32)
    data = ((x, y), (x_meta, y_meta))
    corrected = _model(meta_warmup_steps=2, meta_interval=2)
    ce = mwnet_tf.MetaWeightNet(_classifier(), method="ce")
    ce.compile(optimizer=keras.optimizers.SGD(0.3, momentum=0.9),
               weight_decay=0.0)
    _train(corrected, data, 2)
    _train(ce, data, 2)
    assert _max_difference(corrected.classifier, ce.classifier) < 1e-6
    assert int(corrected.meta_optimizer.iterations) == 0
    _train(corrected, data, 1)
    _train(ce, data, 1)
    assert _max_difference(corrected.classifier, ce.classifier) > 1e-4
    assert int(corrected.meta_optimizer.iterations) == 1


def test_correction_changes_the_meta_step():
    x, y, x_meta, y_meta = _batches(33)
    data = ((x, y), (x_meta, y_meta))
    corrected = _model()
    plain = mwnet_tf.MetaWeightNet(
        _classifier(), mwnet_tf.WeightingNet(hidden_sizes=(8,), seed=0))
    plain.compile(optimizer=keras.optimizers.SGD(0.3, momentum=0.9),
                  weight_decay=0.0)
    # Move the classifier away from its average first (same steps for both:
    # the average's first steps only lag).
    _train(corrected, data, 3)
    _train(plain, data, 3)
    assert _max_difference(corrected.weighting_net,
                           plain.weighting_net) > 1e-6


@pytest.mark.parametrize("real_step_weights", ["updated", "lookahead"])
def test_two_replicas_match_one_device(real_step_weights,
                                       two_replica_strategy):
    x, y, x_meta, y_meta = _batches(34, n=16, n_meta=8)
    data = ((x, y), (x_meta, y_meta))
    options = dict(batch_norm=False, meta_interval=2, meta_warmup_steps=1,
                   real_step_weights=real_step_weights)
    single = _model(**options)
    _train(single, data, 5)
    in_graph = _model(steps_per_execution=5, **options)
    in_graph_traces = traces_of(in_graph)
    _train(in_graph, data, 5)
    with two_replica_strategy.scope():
        mirrored = _model(**options)
    mirrored_traces = traces_of(mirrored)
    _train(mirrored, data, 5)
    # Every kind of step in one function (tf.cond); on two replicas one
    # function per kind (warm-up, meta step, neither), each traced on
    # both replicas.
    assert (len(in_graph_traces), len(mirrored_traces)) == (1, 6)
    assert int(mirrored.meta_optimizer.iterations.numpy()) == 2
    assert _max_difference(single, in_graph) < 1e-5
    assert _max_difference(single, mirrored) < 1e-5
    np.testing.assert_allclose(mirrored.averaged_outputs(x).numpy(),
                               single.averaged_outputs(x).numpy(),
                               rtol=1e-5, atol=1e-5)


def test_save_and_load_keep_the_average_and_the_options(tmp_path):
    x, y, x_meta, y_meta = _batches(35)
    model = _model(ema_debias=True)
    _train(model, ((x, y), (x_meta, y_meta)), 3)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert loaded.label_correction and loaded.ema_decay == DECAY
    assert loaded.ema_debias
    np.testing.assert_allclose(loaded.averaged_outputs(x).numpy(),
                               model.averaged_outputs(x).numpy(), rtol=1e-6)
    # Resuming from the saved model trains as the original goes on.
    _train(model, ((x, y), (x_meta, y_meta)), 2)
    _train(loaded, ((x, y), (x_meta, y_meta)), 2)
    assert _max_difference(model, loaded) < 1e-5


def test_mixed_float16_corrected_step_matches_float32():
    x, y, x_meta, y_meta = _batches(36)
    updates = {}
    previous = keras.config.dtype_policy()
    for policy in ("float32", "mixed_float16"):
        keras.config.set_dtype_policy(policy)
        try:
            inputs = keras.Input((FEATURES,))
            hidden = keras.layers.Dense(
                8, kernel_initializer=keras.initializers.GlorotUniform(0))(
                    inputs)
            hidden = keras.layers.Activation("tanh")(hidden)
            outputs = keras.layers.Dense(
                NUM_CLASSES, dtype="float32",
                kernel_initializer=keras.initializers.GlorotUniform(1))(hidden)
            model = mwnet_tf.MetaWeightNet(
                keras.Model(inputs, outputs),
                mwnet_tf.WeightingNet(hidden_sizes=(8,), seed=0),
                label_correction=True, ema_decay=DECAY)
            model.compile(optimizer=keras.optimizers.SGD(0.5, momentum=0.9))
        finally:
            keras.config.set_dtype_policy(previous)
        # A classifier away from its average, the same in both.
        rng = np.random.default_rng(2)
        for variable in model.classifier.trainable_variables:
            variable.assign(variable.numpy() + rng.normal(
                scale=0.3, size=variable.shape).astype("float32"))
        before = [v.numpy().copy() for v in model.classifier.variables]
        model.train_on_batch(((x, y), (x_meta, y_meta)))
        updates[policy] = [v.numpy() - b for v, b in
                           zip(model.classifier.variables, before)]
    largest = max(np.max(np.abs(u)) for u in updates["float32"])
    assert largest > 0
    for full, half in zip(updates["float32"], updates["mixed_float16"]):
        np.testing.assert_allclose(half, full, rtol=0, atol=1e-2 * largest)


@pytest.mark.parametrize("options,message", [
    (dict(method="l2rw", label_correction=True), "needs method='mwnet'"),
    (dict(method="ce", label_correction=True), "needs method='mwnet'"),
    (dict(ema_decay=1.0), r"ema_decay must be a number in \(0, 1\)"),
    (dict(label_correction="yes"), "label_correction must be True or False"),
    (dict(ema_debias=1), "ema_debias must be True or False"),
])
def test_bad_correction_arguments_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        mwnet_tf.MetaWeightNet(_classifier(), **options)


def test_no_average_is_refused_in_one_line():
    model = mwnet_tf.MetaWeightNet(_classifier())
    with pytest.raises(ValueError, match="build it with ema_decay="):
        model.averaged_outputs(np.zeros((2, FEATURES), "float32"))
