"""CMW-Net's class-aware V: task families, the head each example gets, its
meta-gradient, training and saving."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

import mwnet_tf
import reference_math as ref
from mwnet_tf import meta_gradient as mg
from mwnet_tf.weighting_net import task_families

# reference_math's classifier has 3 classes: classes 0 and 2 share family 1,
# class 1 is family 0, and family 2 serves no class.
FAMILIES = (1, 0, 1)


def _class_aware(seed=0, dtype="float64", families=FAMILIES, heads=3):
    return mwnet_tf.WeightingNet(hidden_sizes=(8,), seed=seed, dtype=dtype,
                                 class_families=families, num_families=heads)


def _sum_of_squares(counts, assignment):
    counts = np.asarray(counts, float)
    return sum(((counts[assignment == f] - counts[assignment == f].mean()) ** 2
                ).sum() for f in set(assignment.tolist()))


def test_families_of_asymmetric_noise_counts():
    """CIFAR-10, 40% asym: receivers (airplane, automobile, horse), the
    untouched classes (and cat/dog, which swap), the emptied sources."""
    counts = [700, 700, 300, 500, 300, 500, 500, 700, 500, 300]
    assert task_families(counts) == (2, 2, 0, 1, 0, 1, 1, 2, 1, 0)


@pytest.mark.parametrize("seed", range(5))
def test_families_are_the_best_k_means_partition(seed):
    """Against every assignment of 7 classes to 3 families: none has a
    smaller within-family sum of squares; families ordered by count."""
    counts = np.random.default_rng(seed).integers(0, 60, size=7)
    ours = np.array(task_families(counts))
    best = min(_sum_of_squares(counts, np.array(assignment))
               for assignment in itertools.product(range(3), repeat=7))
    assert _sum_of_squares(counts, ours) == pytest.approx(best)
    means = [counts[ours == f].mean() for f in sorted(set(ours.tolist()))]
    assert means == sorted(means)


def test_families_of_equal_counts_and_bad_counts():
    assert task_families([50] * 10) == (0,) * 10
    assert task_families([5, 5, 9, 9], num_families=3) == (0, 0, 1, 1)
    with pytest.raises(ValueError, match="non-negative counts"):
        task_families([3, -1])


def test_each_example_gets_its_label_s_family_head():
    net = _class_aware(dtype="float32")
    losses = np.array([0.1, 0.7, 2.0, 5.0, 0.3], np.float32)
    labels = np.array([0, 1, 2, 1, 0])
    kernel, bias = [v.numpy() for v in net.hidden_layers[0].weights]
    head_kernel, head_bias = [v.numpy() for v in net.output_layer.weights]
    hidden = np.maximum(losses[:, None] @ kernel + bias, 0.0)
    heads = 1.0 / (1.0 + np.exp(-(hidden @ head_kernel + head_bias)))
    expected = [heads[i, FAMILIES[label]] for i, label in enumerate(labels)]
    np.testing.assert_allclose(net(losses, labels), expected, rtol=1e-6)
    # Heads differ, so the label matters for the same loss.
    assert not np.allclose(net(losses, np.zeros(5)), net(losses, np.ones(5)))
    with pytest.raises(ValueError, match="call it with the examples' labels"):
        net(losses)


def test_bad_families_are_refused():
    with pytest.raises(ValueError, match="families must lie in"):
        _class_aware(families=(0, 3, 1), heads=3)
    with pytest.raises(ValueError, match="needs class_families"):
        mwnet_tf.WeightingNet(num_families=2)
    with pytest.raises(ValueError, match="families for 2 classes, but the "
                       "classifier has 3"):
        mwnet_tf.MetaWeightNet(ref.classifier(), _class_aware(families=(0, 1)))


def _by_hand(net, labels, normalization):
    """c_i = V_{family(y_i)}(l_i) / B, V's trunk and heads written out."""
    (kernel, bias), (head_kernel, head_bias) = (
        net.hidden_layers[0].weights, net.output_layer.weights)
    family = tf.constant([FAMILIES[label] for label in labels])

    def coefficients_of(losses):
        hidden = tf.nn.relu(tf.stop_gradient(losses)[:, None] * kernel + bias)
        heads = tf.sigmoid(tf.matmul(hidden, head_kernel) + head_bias)
        weights = tf.reduce_sum(heads * tf.one_hot(family, 3, dtype=heads.dtype),
                                axis=1)
        if normalization == "sum":
            return weights / tf.reduce_sum(weights)
        return weights / tf.cast(tf.size(weights), weights.dtype)
    return coefficients_of


@pytest.mark.parametrize("normalization", ["mean", "sum"])
def test_meta_gradient_matches_finite_differences(normalization):
    classifier = ref.classifier("float64")
    net = _class_aware()
    optimizer = keras.optimizers.SGD(0.5)
    optimizer.build(classifier.trainable_variables)
    x, y, x_meta, y_meta = ref.batches(5, dtype="float64")
    forward = mg.Forward(classifier, x, y, lambda t, o: mg.cross_entropy(
        t, o, dtype="float64"))
    grads, meta_loss, *_ = mg.meta_gradients(
        forward, net, mg.Lookahead(optimizer), x_meta, y_meta,
        lambda t, o: mg.cross_entropy(t, o, dtype="float64"), normalization)

    def objective():
        return ref.meta_loss(classifier, _by_hand(net, y, normalization), x, y,
                             x_meta, y_meta, optimizer)

    assert float(meta_loss) == pytest.approx(objective(), rel=1e-10)
    numeric = ref.finite_difference_gradient(objective, net.trainable_variables)
    for variable, grad, expected in zip(net.trainable_variables, grads,
                                        numeric):
        scale = max(np.max(np.abs(expected)), 1e-12)
        assert np.max(np.abs(grad.numpy() - expected)) / scale < 1e-4, (
            variable.path)
    # Family 2 serves no class: its head gets no gradient; the others do.
    head_kernel_grad = grads[2].numpy()
    assert np.all(head_kernel_grad[:, 2] == 0)
    assert np.any(head_kernel_grad[:, 0] != 0) and np.any(
        head_kernel_grad[:, 1] != 0)


def test_trains_saves_and_reloads_with_its_families(tmp_path):
    model = mwnet_tf.MetaWeightNet(ref.classifier(),
                                   _class_aware(dtype="float32"))
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    x, y, x_meta, y_meta = ref.batches(7)
    theta = [v.numpy().copy() for v in model.weighting_net.variables]
    dataset = tf.data.Dataset.from_tensors(((x, y), (x_meta, y_meta))).repeat(3)
    model.fit(dataset, epochs=1, verbose=0)
    assert any(np.any(before != after.numpy()) for before, after in
               zip(theta, model.weighting_net.variables))
    losses, labels = np.array([0.2, 1.5, 3.0]), np.array([0, 1, 2])
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.weighting_net.class_families == FAMILIES
    np.testing.assert_allclose(loaded.weighting_function(losses, labels),
                               model.weighting_function(losses, labels))
    np.testing.assert_allclose(loaded.sample_weights(x, y),
                               model.sample_weights(x, y), rtol=1e-6)
    model.weighting_net.save(tmp_path / "v.keras")
    alone = mwnet_tf.load_weighting_net(tmp_path / "v.keras")
    assert (alone.class_families, alone.num_families) == (FAMILIES, 3)
    assert alone.meta_steps == 3
    np.testing.assert_allclose(alone(losses, labels),
                               model.weighting_function(losses, labels))
    # Transferred, frozen: method="fixed" trains with its weights.
    fixed = mwnet_tf.MetaWeightNet(ref.classifier(seed=3), alone,
                                   method="fixed")
    fixed.compile(optimizer=keras.optimizers.SGD(0.5))
    fixed.fit(dataset, epochs=1, verbose=0)
    np.testing.assert_allclose(alone(losses, labels),
                               model.weighting_function(losses, labels))


def test_two_replicas_equal_one_device(two_replica_strategy):
    x, y, x_meta, y_meta = ref.batches(9, n=12, n_meta=12)
    dataset = tf.data.Dataset.from_tensors(
        ((x, y), (x_meta, y_meta))).repeat(2)

    def trained(strategy):
        with strategy.scope():
            # Without BatchNorm: per-replica batch statistics would differ.
            model = mwnet_tf.MetaWeightNet(ref.classifier(batch_norm=False),
                                           _class_aware(dtype="float32"))
            model.compile(optimizer=keras.optimizers.SGD(0.5))
        model.fit(dataset, epochs=1, verbose=0)
        return [v.numpy() for v in model.weights]

    one = trained(tf.distribute.get_strategy())
    two = trained(two_replica_strategy)
    for a, b in zip(one, two):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_reusing_the_lookahead_gradient_weighs_by_family():
    """real_step_weights="lookahead" (flags/fast.cfg): the meta step's real
    update is the one a frozen class-aware V at theta before it takes."""
    x, y, x_meta, y_meta = ref.batches(11)
    data = ((x, y), (x_meta, y_meta))
    reusing = mwnet_tf.MetaWeightNet(ref.classifier(),
                                     _class_aware(dtype="float32"),
                                     real_step_weights="lookahead")
    frozen = mwnet_tf.MetaWeightNet(ref.classifier(),
                                    _class_aware(dtype="float32"),
                                    method="fixed")
    for model in (reusing, frozen):
        model.compile(optimizer=keras.optimizers.SGD(0.5))
    reusing.train_on_batch(data)
    frozen.train_on_batch(data)
    assert int(reusing.meta_optimizer.iterations.numpy()) == 1
    for a, b in zip(reusing.classifier.variables, frozen.classifier.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    # ... and not the step of V's after the update.
    updated = mwnet_tf.MetaWeightNet(ref.classifier(),
                                     _class_aware(dtype="float32"))
    updated.compile(optimizer=keras.optimizers.SGD(0.5))
    updated.train_on_batch(data)
    assert max(np.max(np.abs(a.numpy() - b.numpy())) for a, b in zip(
        reusing.classifier.variables, updated.classifier.variables)) > 1e-5
