"""Behaviour of the MetaWeightNet training step (mwnet_tf/trainer.py).

How a step learns its kind (host or tf.cond): test_fit_workarounds.py;
meta_scope: test_layer_scope.py; the logged metrics: test_step_metrics.py."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import mwnet_tf
import reference_math
import zoo

from reference_math import FEATURES, NUM_CLASSES
from reference_math import batches as _batches
from reference_math import classifier as _classifier
from reference_math import per_example_ce as _per_example_ce
from tiny_models import compiled as _compiled
from tiny_models import max_difference as _max_difference
from tiny_models import train as _train
from tiny_models import traces_of


def _reference_meta_loss(model, x, y, x_meta, y_meta, moved_layers=None):
    """The meta objective J(theta) of `model`'s settings, written out
    independently (tests/reference_math.py)."""
    return reference_math.meta_loss(
        model.classifier, reference_math.mwnet_coefficients(
            model.weighting_net, model.weight_normalization),
        x, y, x_meta, y_meta, model.optimizer, model.lookahead,
        model.weight_decay, moved_layers)


# The mathematics is tested case by case in test_meta_gradient.py; here,
# that the model wires its options into it.
@pytest.mark.parametrize("lookahead,weight_normalization,meta_scope,"
                         "moved_layers", [
                             ("sgd", "mean", "all", None),
                             ("optimizer", "sum", 2, ["norm", "logits"]),
                             ("sgd", "mean", ["hidden"], ["hidden"])])
def test_meta_gradient_matches_finite_differences(lookahead,
                                                  weight_normalization,
                                                  meta_scope, moved_layers):
    model = _compiled(lookahead, weight_normalization, dtype="float64",
                      meta_scope=meta_scope)
    rng = np.random.default_rng(1)
    # Non-zero momentum slots, so that the "optimizer" lookahead uses them.
    for slot in model.optimizer.momentums:
        slot.assign(rng.normal(scale=0.1, size=slot.shape))
    x, y, x_meta, y_meta = _batches(2, dtype="float64")

    analytic = model.compute_meta_gradients(x, y, x_meta, y_meta)
    numerics = reference_math.finite_difference_gradient(
        lambda: _reference_meta_loss(model, x, y, x_meta, y_meta,
                                     moved_layers),
        model.weighting_net.trainable_variables)
    for variable, grad, numeric in zip(model.weighting_net.trainable_variables,
                                       analytic, numerics):
        error = np.max(np.abs(grad.numpy() - numeric)) / np.max(np.abs(numeric))
        assert np.max(np.abs(numeric)) > 0
        assert error < 1e-4, (variable.path, error)


def test_l2rw_step_uses_clipped_normalised_finite_difference_weights():
    """Learning to Reweight (Ren et al., 2018), checked against its definition.

    The weights are max(-d J / d eps_i, 0) at eps = 0, normalised to sum 1,
    where J(eps) is the clean meta loss after one SGD step on sum_i eps_i l_i;
    the classifier then takes a plain step on the weighted loss. The weights
    come from central finite differences of an independent first-order J.
    """
    lr = 0.5
    model = _compiled(method="l2rw", dtype="float64", weight_decay=0.0,
                      optimizer=keras.optimizers.SGD(lr))
    classifier = model.classifier
    x, y, x_meta, y_meta = _batches(4, dtype="float64")
    state = [v.value for v in classifier.non_trainable_variables]
    variables = classifier.trainable_variables
    before = [v.numpy() for v in variables]

    def gradients_of_weighted_loss(weights):
        with tf.GradientTape() as tape:
            logits, _ = classifier.stateless_call(variables, state, x,
                                                  training=True)
            weighted = tf.reduce_sum(weights * _per_example_ce(y, logits))
        return tape.gradient(weighted, variables)

    def meta_loss(epsilon):
        looked_ahead = [w - lr * g for w, g in zip(
            variables, gradients_of_weighted_loss(epsilon))]
        logits, _ = classifier.stateless_call(looked_ahead, state, x_meta,
                                              training=True)
        return float(tf.reduce_mean(_per_example_ce(y_meta, logits)))

    step = 1e-5
    slopes = np.zeros(len(x))
    for i in range(len(x)):
        shift = np.zeros(len(x))
        shift[i] = step
        slopes[i] = (meta_loss(shift) - meta_loss(-shift)) / (2 * step)
    raw = np.maximum(-slopes, 0.0)
    # A batch with weights of both kinds, so clipping is exercised.
    assert 0 < np.count_nonzero(raw) < len(x)
    expected_weights = raw / raw.sum()
    expected_step = gradients_of_weighted_loss(
        tf.constant(expected_weights, tf.float64))

    logs = model.train_on_batch(((x, y), (x_meta, y_meta)), return_dict=True)
    for w0, g, variable in zip(before, expected_step, variables):
        np.testing.assert_allclose(variable.numpy(), w0 - lr * g.numpy(),
                                   rtol=1e-5, atol=1e-8)
    # Logged L2RW weights are scaled so that 1 is the batch average.
    assert logs["mean_weight"] == pytest.approx(1.0)


def test_compute_meta_gradients_changes_no_variable():
    model = _compiled()
    x, y, x_meta, y_meta = _batches(3)
    before = [v.numpy().copy() for v in model.variables]
    optimizer_before = [v.numpy().copy() for v in
                        model.optimizer.variables + model.meta_optimizer.variables]
    grads = model.compute_meta_gradients(x, y, x_meta, y_meta)
    assert any(np.any(g.numpy() != 0) for g in grads)
    for old, variable in zip(before, model.variables):
        np.testing.assert_array_equal(old, variable.numpy(), err_msg=variable.path)
    for old, variable in zip(optimizer_before, model.optimizer.variables
                             + model.meta_optimizer.variables):
        np.testing.assert_array_equal(old, variable.numpy())


def test_train_step_updates_batchnorm_statistics_once():
    """The real step writes the moving statistics of its one forward pass."""
    model = _compiled()
    x, y, x_meta, y_meta = _batches(4)
    batch_norm = [layer for layer in model.classifier.layers
                  if isinstance(layer, keras.layers.BatchNormalization)][0]
    dense = model.classifier.layers[1]
    expected_mean = 0.1 * np.mean(x @ dense.kernel.numpy() + dense.bias.numpy(),
                                  axis=0)
    model.train_on_batch(((x, y), (x_meta, y_meta)))
    np.testing.assert_allclose(batch_norm.moving_mean.numpy(), expected_mean,
                               rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", ["mwnet", "l2rw", "ce"])
@pytest.mark.parametrize("mode", ["graph", "jit"])
def test_graph_and_xla_training_agree_with_eager(method, mode):
    """tf.function, and XLA (Keras's jit_compile="auto" on a GPU), = eager."""
    data = ((_batches(5)[0], _batches(5)[1]), (_batches(5)[2], _batches(5)[3]))
    eager = _compiled(method=method, run_eagerly=True)
    compiled = _compiled(method=method, jit_compile=(mode == "jit"))
    _train(eager, data, 3)
    _train(compiled, data, 3)
    for a, b in zip(eager.variables, compiled.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5,
                                   err_msg=a.path)


@pytest.mark.parametrize("weight_normalization", ["mean", "sum"])
def test_two_replicas_match_one_device(weight_normalization,
                                       two_replica_strategy):
    strategy = two_replica_strategy
    x, y, x_meta, y_meta = _batches(6, n=16, n_meta=8)
    data = ((x, y), (x_meta, y_meta))

    single = _compiled(weight_normalization=weight_normalization,
                       batch_norm=False)
    _train(single, data, 2)
    with strategy.scope():
        mirrored = _compiled(weight_normalization=weight_normalization,
                             batch_norm=False)
    history = _train(mirrored, data, 2)
    assert np.isfinite(history.history["meta_loss"][-1])
    for a, b in zip(single.variables, mirrored.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5,
                                   err_msg=a.path)


def test_ce_method_is_plain_cross_entropy_training():
    """method="ce" takes exactly the step of a plain Keras classifier."""
    x, y, x_meta, y_meta = _batches(7)
    ours = _compiled(method="ce", weight_decay=0.0,
                     optimizer=keras.optimizers.SGD(0.1))
    plain = _classifier()
    plain.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    plain.set_weights(ours.classifier.get_weights())
    ours.train_on_batch(((x, y), (x_meta, y_meta)))
    plain.train_on_batch(x, y)
    for a, b in zip(ours.classifier.variables, plain.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def _learned_weighting_net(seed=3):
    """A V with a clearly non-constant curve, as a finished run leaves it."""
    net = mwnet_tf.WeightingNet(hidden_sizes=(8,), seed=seed)
    rng = np.random.default_rng(seed)
    net.set_weights([rng.normal(scale=2.0, size=w.shape).astype("float32")
                     for w in net.get_weights()])
    return net


@pytest.mark.parametrize("weight_normalization", ["mean", "sum"])
def test_fixed_weighting_net_step_is_a_weighted_cross_entropy_step(
        weight_normalization):
    """method="fixed": a CE step with V's weights as sample weights; V frozen."""
    x, y, x_meta, y_meta = _batches(11)
    net = _learned_weighting_net()
    theta = [w.copy() for w in net.get_weights()]
    ours = mwnet_tf.MetaWeightNet(_classifier(), net, method="fixed",
                                  weight_normalization=weight_normalization)
    ours.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                 weight_decay=0.0)
    # Summed, so that the sample weights are exactly the loss coefficients.
    plain = _classifier()
    plain.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(
                      from_logits=True, reduction="sum"))
    plain.set_weights(ours.classifier.get_weights())
    for _ in range(2):
        # The weights of the losses at the current w, in training mode
        # (stateless: the reference's BatchNorm statistics must move once).
        logits, _ = plain.stateless_call(
            plain.trainable_variables,
            [v.value for v in plain.non_trainable_variables], x, training=True)
        losses = _per_example_ce(y, logits)
        weights = net(losses).numpy()
        assert weights.std() > 0.05  # Not the trivial uniform weighting.
        weights /= (weights.sum() if weight_normalization == "sum"
                    else len(weights))
        logs = ours.train_on_batch(((x, y), (x_meta, y_meta)),
                                   return_dict=True)
        plain.train_on_batch(x, y, sample_weight=weights)
        for a, b in zip(ours.classifier.variables, plain.variables):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5,
                                       atol=1e-6, err_msg=a.path)
    for before, after in zip(theta, net.get_weights()):
        np.testing.assert_array_equal(before, after)
    assert "meta_loss" not in logs and "mean_weight" in logs


def test_fixed_method_needs_a_weighting_net():
    with pytest.raises(ValueError, match='method="fixed" .* give it as '
                       "weighting_net"):
        mwnet_tf.MetaWeightNet(_classifier(), method="fixed")


def test_weight_decay_is_l2_on_the_gradient():
    """One plain SGD step is w - lr * (grad + decay * w), as in PyTorch."""
    model = _compiled(method="ce", weight_decay=0.1,
                      optimizer=keras.optimizers.SGD(0.5))
    before = [v.numpy() for v in model.classifier.trainable_variables]
    x, y, x_meta, y_meta = _batches(8)
    with tf.GradientTape() as tape:
        outputs = model.classifier(x, training=True)
        loss = tf.reduce_mean(_per_example_ce(y, outputs))
    data_grads = tape.gradient(loss, model.classifier.trainable_variables)
    model.train_on_batch(((x, y), (x_meta, y_meta)))
    for w0, g, variable in zip(before, data_grads,
                               model.classifier.trainable_variables):
        np.testing.assert_allclose(variable.numpy(),
                                   w0 - 0.5 * (g.numpy() + 0.1 * w0),
                                   rtol=1e-4, atol=1e-6)


def test_meta_interval_updates_theta_every_kth_step():
    model = mwnet_tf.MetaWeightNet(_classifier(), meta_interval=2)
    model.compile()
    x, y, x_meta, y_meta = _batches(9)
    thetas = [model.weighting_net.get_weights()]
    for _ in range(4):
        model.train_on_batch(((x, y), (x_meta, y_meta)))
        thetas.append(model.weighting_net.get_weights())
    changed = [not all(np.array_equal(a, b) for a, b in zip(t0, t1))
               for t0, t1 in zip(thetas, thetas[1:])]
    assert changed == [True, False, True, False]
    # V counts the meta steps that trained it, and saves the count.
    assert model.weighting_net.meta_steps == 2
    assert model.weighting_net.get_config()["meta_steps"] == 2


def test_a_frozen_v_keeps_its_meta_step_count():
    """method="fixed" trains with a learned V without training it: the count
    it came with stays (an mwnet run adds its own steps to it)."""
    learned = mwnet_tf.WeightingNet(meta_steps=7)
    x, y, x_meta, y_meta = _batches(9)
    for method, expected in (("fixed", 7), ("mwnet", 8)):
        net = mwnet_tf.WeightingNet.from_config(learned.get_config())
        model = mwnet_tf.MetaWeightNet(_classifier(), net, method=method)
        model.compile()
        model.train_on_batch(((x, y), (x_meta, y_meta)))
        assert net.meta_steps == expected, method


def test_bad_arguments_are_rejected_with_clear_messages():
    with pytest.raises(ValueError, match="method must be one of"):
        mwnet_tf.MetaWeightNet(_classifier(), method="mentornet")
    with pytest.raises(ValueError, match="meta_interval"):
        mwnet_tf.MetaWeightNet(_classifier(), meta_interval=0)
    with pytest.raises(ValueError, match="meta_warmup_steps"):
        mwnet_tf.MetaWeightNet(_classifier(), meta_warmup_steps=-1)
    with pytest.raises(ValueError, match="real_step_weights must be one of"):
        mwnet_tf.MetaWeightNet(_classifier(), real_step_weights="old")
    with pytest.raises(ValueError, match="meta_scope='all'; got "
                       "meta_scope='head'"):
        mwnet_tf.MetaWeightNet(_classifier(), meta_scope="head",
                               real_step_weights="lookahead")
    # A malformed scope is reported as such, not as the reuse's need.
    with pytest.raises(ValueError, match="meta_scope=0 must be between"):
        mwnet_tf.MetaWeightNet(_classifier(), meta_scope=0,
                               real_step_weights="lookahead")
    with pytest.raises(ValueError, match="must be built"):
        mwnet_tf.MetaWeightNet(keras.Sequential([keras.layers.Dense(2)]))
    with pytest.raises(ValueError, match="keras.optimizers.SGD"):
        mwnet_tf.MetaWeightNet(_classifier(), lookahead="optimizer").compile(
            optimizer="adam")
    model = _compiled()
    with pytest.raises(ValueError, match="with_meta"):
        model.train_on_batch((_batches(0)[0], _batches(0)[1]))


def test_subclassed_and_sequential_classifiers_train():
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = keras.layers.Dense(4, activation="relu")
            self.dropout = keras.layers.Dropout(0.2, seed=1)
            self.logits = keras.layers.Dense(NUM_CLASSES)

        def call(self, x, training=None):
            return self.logits(self.dropout(self.hidden(x), training=training))

    sequential = keras.Sequential([keras.Input((FEATURES,)),
                                   keras.layers.Dense(4, activation="relu"),
                                   keras.layers.Dense(NUM_CLASSES)])
    subclassed = Subclassed()
    subclassed(np.zeros((1, FEATURES), "float32"))
    x, y, x_meta, y_meta = _batches(11)
    for classifier in (sequential, subclassed):
        model = mwnet_tf.MetaWeightNet(classifier)
        model.compile()
        before = [v.numpy() for v in model.trainable_variables]
        history = _train(model, ((x, y), (x_meta, y_meta)), 2)
        assert np.isfinite(history.history["loss"][-1])
        assert all(not np.array_equal(b, v.numpy())
                   for b, v in zip(before, model.trainable_variables))


def test_mixed_bfloat16_keeps_losses_and_weights_in_float32():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        inputs = keras.Input((FEATURES,))
        hidden = keras.layers.Dense(8, activation="relu")(inputs)
        outputs = keras.layers.Dense(NUM_CLASSES, dtype="float32")(hidden)
        model = mwnet_tf.MetaWeightNet(keras.Model(inputs, outputs))
        model.compile()
        x, y, x_meta, y_meta = _batches(12)
        history = _train(model, ((x, y), (x_meta, y_meta)), 2)
        assert np.isfinite(history.history["meta_loss"][-1])
        # V's weights are computed in float32, not at bfloat16's 3 digits:
        # they match V written out in float64 to float32 precision.
        losses = np.array([0.1234567, 1.2345678, 3.4567891], "float32")
        (w1, b1), (w2, b2) = [layer.get_weights() for layer in (
            model.weighting_net.hidden_layers[0],
            model.weighting_net.output_layer)]
        hidden = np.maximum(losses[:, None] * w1.astype("float64") + b1, 0)
        expected = 1 / (1 + np.exp(-(hidden @ w2 + b2)[:, 0]))
        np.testing.assert_allclose(model.weighting_function(losses), expected,
                                   rtol=1e-6)
        weights = model.sample_weights(x, y)
        assert weights.dtype == tf.float32
    finally:
        keras.config.set_dtype_policy(previous)


@pytest.mark.parametrize("method,real_step_weights", [
    ("mwnet", "updated"), ("mwnet", "lookahead"), ("l2rw", "updated"),
    ("ce", "updated")])
def test_mixed_float16_step_matches_the_float32_step(method,
                                                     real_step_weights):
    """Loss scaling is applied and undone: the update is float32's.

    Without it, the LossScaleOptimizer that compile adds under mixed_float16
    divides by the loss scale (2**15) gradients that were never scaled.
    """
    x, y, x_meta, y_meta = _batches(18)
    updates = {}
    previous = keras.config.dtype_policy()
    for policy in ("float32", "mixed_float16"):
        keras.config.set_dtype_policy(policy)
        try:
            inputs = keras.Input((FEATURES,))
            hidden = keras.layers.Dense(
                8, kernel_initializer=keras.initializers.GlorotUniform(0))(
                    inputs)
            hidden = keras.layers.BatchNormalization()(hidden)
            hidden = keras.layers.Activation("tanh")(hidden)
            outputs = keras.layers.Dense(
                NUM_CLASSES, dtype="float32",
                kernel_initializer=keras.initializers.GlorotUniform(1))(hidden)
            model = mwnet_tf.MetaWeightNet(
                keras.Model(inputs, outputs),
                mwnet_tf.WeightingNet(hidden_sizes=(8,), seed=0),
                method=method, lookahead="optimizer",
                real_step_weights=real_step_weights)
            model.compile(optimizer=keras.optimizers.SGD(0.5, momentum=0.9))
        finally:
            keras.config.set_dtype_policy(previous)
        before = [v.numpy().copy() for v in model.trainable_variables]
        model.train_on_batch(((x, y), (x_meta, y_meta)))
        updates[policy] = [v.numpy() - b for v, b in
                           zip(model.trainable_variables, before)]
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    # float16 resolution relative to the size of the step (a bias before
    # BatchNorm has zero gradient: its update is rounding noise in both).
    largest = max(np.max(np.abs(u)) for u in updates["float32"])
    assert largest > 0
    for full, half in zip(updates["float32"], updates["mixed_float16"]):
        np.testing.assert_allclose(half, full, rtol=0, atol=1e-2 * largest)


def test_save_and_load_round_trip(tmp_path):
    model = _compiled(meta_scope=["norm", "logits"], meta_interval=2,
                      meta_warmup_steps=1)
    x, y, x_meta, y_meta = _batches(13)
    _train(model, ((x, y), (x_meta, y_meta)), 4)  # Meta steps at 1 and 3.
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, mwnet_tf.MetaWeightNet)
    np.testing.assert_allclose(loaded.predict(x, verbose=0),
                               model.predict(x, verbose=0), rtol=1e-6)
    np.testing.assert_allclose(loaded.weighting_function([0.0, 1.0, 4.0]),
                               model.weighting_function([0.0, 1.0, 4.0]))
    assert loaded.weight_decay == model.weight_decay
    assert loaded.meta_scope == ["norm", "logits"]
    assert (loaded.meta_interval, loaded.meta_warmup_steps) == (2, 1)
    assert loaded.real_step_weights == "updated"
    assert ([v.path for v in loaded.lookahead_variables]
            == [v.path for v in model.lookahead_variables])
    assert "logits" not in [layer.name for layer in loaded.layers]
    # Both nets save and load on their own too.
    model.weighting_net.save(tmp_path / "v.keras")
    net = keras.saving.load_model(tmp_path / "v.keras")
    np.testing.assert_allclose(net(np.array([0.5, 2.0])),
                               model.weighting_function([0.5, 2.0]))
    reusing = _compiled(real_step_weights="lookahead")
    _train(reusing, ((x, y), (x_meta, y_meta)), 1)
    reusing.save(tmp_path / "reusing.keras")
    assert keras.saving.load_model(
        tmp_path / "reusing.keras").real_step_weights == "lookahead"
    # V's meta-step count survives every way of saving, once: V alone
    # (its config), the whole model (config + the meta optimiser's state),
    # and a second compile (the old optimiser's steps stay counted).
    assert model.weighting_net.meta_steps == 2
    assert net.meta_steps == 2
    assert loaded.weighting_net.meta_steps == 2
    model.compile()  # A new optimiser counts steps from 0: warm-up, meta.
    _train(model, ((x, y), (x_meta, y_meta)), 2)
    assert model.weighting_net.meta_steps == 3
    # V's file holds V's weights only, not the optimiser that trained it.
    import zipfile
    with zipfile.ZipFile(tmp_path / "v.keras") as archive:
        import h5py
        with archive.open("model.weights.h5") as file, h5py.File(
                file) as weights:
            names = []
            weights.visit(names.append)
    assert not [n for n in names if "optimizer" in n or "adam" in n], names


@pytest.mark.parametrize("lookahead,weight_normalization",
                         [("sgd", "mean"), ("optimizer", "sum")])
def test_real_step_weights_lookahead_steps_with_v_before_its_update(
        lookahead, weight_normalization):
    """real_step_weights="lookahead": the meta update is the paper's, and
    every real step (meta step or not) is the step a frozen V at theta
    before that step would take."""
    x, y, x_meta, y_meta = _batches(23, n=16, n_meta=8)
    options = dict(lookahead=lookahead,
                   weight_normalization=weight_normalization, meta_interval=2)
    reusing = _compiled(real_step_weights="lookahead", **options)
    updated = _compiled(**options)
    frozen_v = mwnet_tf.WeightingNet(hidden_sizes=(8,), seed=0)
    frozen = mwnet_tf.MetaWeightNet(
        _classifier(), frozen_v, method="fixed", lookahead=lookahead,
        weight_normalization=weight_normalization)
    frozen.compile(optimizer=keras.optimizers.SGD(0.5, momentum=0.9,
                                                  nesterov=True))
    data = ((x, y), (x_meta, y_meta))
    meta_steps = []
    for step in range(4):
        theta = [w.copy() for w in reusing.weighting_net.get_weights()]
        frozen_v.set_weights(theta)
        reusing.train_on_batch(data)
        frozen.train_on_batch(data)
        for a, b in zip(reusing.classifier.variables,
                        frozen.classifier.variables):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5,
                                       atol=1e-6, err_msg=f"{step} {a.path}")
        meta_steps.append(any(
            np.any(before != after) for before, after in
            zip(theta, reusing.weighting_net.get_weights())))
        if step == 0:
            # The first meta update, from the same w and theta: the paper's.
            updated.train_on_batch(data)
            for a, b in zip(reusing.weighting_net.variables,
                            updated.weighting_net.variables):
                np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5,
                                           atol=1e-7)
            # Its real step used V after the update: another step.
            assert _max_difference(reusing.classifier,
                                   updated.classifier) > 1e-4
    assert meta_steps == [True, False, True, False]


# MW-Net with the kind of step chosen on the host, L2RW with tf.cond.
@pytest.mark.parametrize("method,like,steps_per_execution",
                         [("mwnet", "fixed", 1), ("l2rw", "ce", 3)])
def test_warmup_steps_take_no_meta_step(method, like, steps_per_execution):
    """The first meta_warmup_steps train as a fixed V at its start (MW-Net)
    or as CE (L2RW); the meta steps start after them, counted from there."""
    x, y, x_meta, y_meta = _batches(23, n=16, n_meta=8)
    # With corruption flags, as from mwnet_tf.data: the step's logs then
    # have the model's metrics' keys and Keras ends an epoch with
    # get_metrics_result() instead of them.
    corrupted = np.tile(np.float32([0.0, 1.0]), 8)
    data = ((x, y, corrupted), (x_meta, y_meta))
    warm = _compiled(method=method, meta_warmup_steps=3, meta_interval=2,
                     steps_per_execution=steps_per_execution)
    traces = traces_of(warm)
    # The keys of each call's logs, as the progress bar sees them.
    call_logs = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: call_logs.append(set(logs)))
    reference = mwnet_tf.MetaWeightNet(
        _classifier(), mwnet_tf.WeightingNet(hidden_sizes=(8,), seed=0),
        method=like)
    reference.compile(optimizer=keras.optimizers.SGD(0.5, momentum=0.9,
                                                     nesterov=True))
    theta = [v.numpy() for v in warm.weighting_net.variables]
    history = _train(warm, data, 3, [record]).history
    _train(reference, data, 3)
    assert _max_difference(warm.classifier, reference.classifier) < 1e-6
    for before, variable in zip(theta, warm.weighting_net.variables):
        np.testing.assert_array_equal(before, variable.numpy())
    # No meta step in the epoch: no meta metrics in its logs or in any
    # call's (not 0, not NaN: nothing was measured).
    meta_metrics = {"meta_loss", "meta_accuracy"}
    assert not meta_metrics & set(history)
    assert call_logs and not any(meta_metrics & keys for keys in call_logs)
    assert {"loss", "mean_weight", "clean_weight"} <= set(history)
    # Steps 3-5: meta steps at 3 and 5 (the interval counts from the end
    # of the warm-up; counted from 0 it would be step 4 alone).
    call_logs.clear()
    history = _train(warm, data, 3, [record]).history
    _train(reference, data, 3)
    assert _max_difference(warm.classifier, reference.classifier) > 1e-5
    assert np.isfinite(history["meta_loss"][0])
    assert np.isfinite(history["meta_accuracy"][0])
    # Measured from the first step of the epoch (a meta step) on.
    assert all(meta_metrics <= keys for keys in call_logs)
    if method == "mwnet":
        assert int(warm.meta_optimizer.iterations) == 2
    # One function per kind of step (warm-up, meta step) when the host
    # chooses, one under tf.cond with several steps per call.
    assert len(traces) == (2 if steps_per_execution == 1 else 1)


def _resnet8(synchronized_batch_norm):
    classifier = zoo.build("resnet8", 4, input_shape=(8, 8, 3), seed=0,
                           synchronized_batch_norm=synchronized_batch_norm)
    model = mwnet_tf.MetaWeightNet(
        classifier, mwnet_tf.WeightingNet(hidden_sizes=(8,), seed=0))
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9,
                                                 nesterov=True))
    return model


@pytest.mark.slow
def test_synchronized_batch_norm_makes_two_replicas_match_one_device(
        two_replica_strategy):
    """ResNet-8, MW-Net: every BatchNorm sees the global batch (and meta
    batch), in the training pass, the lookahead and its meta-gradient."""
    rng = np.random.default_rng(4)
    data = ((rng.normal(size=(16, 8, 8, 3)).astype("float32"),
             rng.integers(0, 4, 16)),
            (rng.normal(size=(8, 8, 8, 3)).astype("float32"),
             rng.integers(0, 4, 8)))
    single = _resnet8(synchronized_batch_norm=True)
    _train(single, data, 2)
    with two_replica_strategy.scope():
        synchronized = _resnet8(synchronized_batch_norm=True)
        per_replica = _resnet8(synchronized_batch_norm=False)
    _train(synchronized, data, 2)
    _train(per_replica, data, 2)
    assert _max_difference(single, synchronized) < 1e-5
    # Without synchronization the replicas normalise with their own halves.
    assert _max_difference(single, per_replica) > 1e-3
