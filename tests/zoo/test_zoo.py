"""Tests of the registry (zoo/__init__.py) and a battery run on every family."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo

NUM_CLASSES = 3

# The smallest configuration of each family.
SMALL = {
    "resnet_cifar": {"depth": 8},
    "wide_resnet": {"depth": 10, "widen_factor": 1},
    "resnet50": {"input_shape": (32, 32, 3)},
}
CIFAR_FAMILIES = ["resnet_cifar", "wide_resnet"]


def _images(shape, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch,) + tuple(shape)).astype("float32")


def _build(family, **kwargs):
    return zoo.build(family, num_classes=NUM_CLASSES, **{**SMALL[family],
                                                         **kwargs})


# ---------------------------------------------------------------- registry


def test_names():
    assert {"resnet8", "resnet14", "resnet32", "wrn28_10", "resnet50",
            "resnet20", "resnet44",
            "resnet56", "resnet110", "resnet_cifar", "wide_resnet", "wrn28_2",
            "wrn40_2"} <= set(zoo.names())
    assert zoo.names() == sorted(zoo.names())


def test_named_configurations_fix_their_architecture():
    model = zoo.build("resnet20", num_classes=10)
    assert model.name == "resnet20"
    assert model.output.shape == (None, 10)
    model = zoo.build("wrn28_2", num_classes=10, dropout_rate=0.3)
    assert model.name == "wrn28_2"
    with pytest.raises(ValueError, match="fixes"):
        zoo.build("resnet32", num_classes=10, depth=20)
    # The smallest (tests, short runs on slow CPUs): 1 and 2 blocks a stage.
    for depth in (8, 14):
        named = zoo.build(f"resnet{depth}", num_classes=10)
        assert named.name == f"resnet{depth}"
        assert named.count_params() == zoo.build(
            "resnet_cifar", num_classes=10, depth=depth).count_params()
    # Restating the fixed value is harmless.
    assert zoo.build("resnet20", num_classes=10, depth=20).name == "resnet20"


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="Unknown model 'resnet33'.*resnet32"):
        zoo.build("resnet33", num_classes=10)


def test_bad_depth_and_num_classes():
    with pytest.raises(ValueError, match=r"depth should be 6n\+2 "
                       r"\(e.g. 20, 32, 44, 56, 110\), got 33"):
        zoo.build("resnet_cifar", num_classes=10, depth=33)
    with pytest.raises(ValueError, match=r"depth should be 6n\+4.*got 27"):
        zoo.build("wide_resnet", num_classes=10, depth=27)
    for name in ("resnet32", "wrn28_10", "resnet50"):
        with pytest.raises(ValueError, match="num_classes should be"):
            zoo.build(name, num_classes=0)


def test_numpy_integers_are_accepted():
    # E.g. num_classes read from dataset metadata; the config must stay JSON.
    model = zoo.build("resnet_cifar", num_classes=np.int64(10),
                      depth=np.int64(8))
    assert model.name == "resnet8"
    assert '"units": 10' in model.to_json()


# ----------------------------------------------------------------- battery


@pytest.mark.parametrize("family", list(SMALL))
def test_float32_logits_under_mixed_bfloat16(family):
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = _build(family)
        shape = model.input_shape[1:]
        logits = model(_images(shape), training=False)
    finally:
        keras.config.set_dtype_policy(policy)
    assert logits.shape == (2, NUM_CLASSES)
    assert logits.dtype == "float32"
    assert np.all(np.isfinite(logits.numpy()))
    # The rest of the network does compute in bfloat16.
    convs = [l for l in _all_layers(model)
             if isinstance(l, keras.layers.Conv2D)]
    assert convs[0].compute_dtype == "bfloat16"


def _all_layers(model):
    """Layers of a model and of the models nested in it (ResNet-50's backbone)."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


@pytest.mark.parametrize("family", CIFAR_FAMILIES)
def test_pytorch_batch_norm_and_no_regularisers(family):
    model = _build(family)
    norms = [l for l in model.layers
             if isinstance(l, keras.layers.BatchNormalization)]
    assert norms
    assert all(l.momentum == 0.9 and l.epsilon == 1e-5 for l in norms)
    # Weight decay belongs to the optimiser step, not to the model.
    assert all(getattr(l, "kernel_regularizer", None) is None
               for l in model.layers)
    assert not model.losses


@pytest.mark.parametrize("family", sorted(SMALL))
def test_synchronized_batch_norm_option(family):
    """Every BatchNorm layer (ResNet-50's backbone too) is synchronized, the
    config keeps it, and the weights are those of the default model."""
    def norms(model):
        return [l for l in _all_layers(model)
                if isinstance(l, keras.layers.BatchNormalization)]

    default = _build(family, seed=1)
    synchronized = _build(family, seed=1, synchronized_batch_norm=True)
    assert norms(default) and not any(l.synchronized for l in norms(default))
    assert all(l.synchronized for l in norms(synchronized))
    clone = keras.Model.from_config(synchronized.get_config())
    assert all(l.synchronized for l in norms(clone))
    if family != "resnet50":  # Its backbone's initialisation is unseeded.
        for a, b in zip(default.get_weights(), synchronized.get_weights()):
            np.testing.assert_array_equal(a, b)
    # With no strategy the statistics are the batch's own.
    x = _images(default.input_shape[1:], batch=4)
    if family != "resnet50":
        np.testing.assert_allclose(synchronized(x, training=True),
                                   default(x, training=True), rtol=1e-4,
                                   atol=1e-4)


@pytest.mark.parametrize("family", CIFAR_FAMILIES)
def test_seed_fixes_the_initial_weights(family):
    first = _build(family, seed=1).get_weights()
    again = _build(family, seed=1).get_weights()
    other = _build(family, seed=2).get_weights()
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other))


@pytest.mark.parametrize("family", CIFAR_FAMILIES)
def test_save_load_round_trip(family, tmp_path):
    model = _build(family, dropout_rate=0.3) if family == "wide_resnet" \
        else _build(family)
    x = _images(model.input_shape[1:])
    # One training-mode call moves the BatchNorm statistics off their
    # initial values, so that loading them is checked too.
    model(x, training=True)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    # Compared as JSON: the loaded config has lists where the original has
    # tuples.
    assert loaded.to_json() == model.to_json()
    np.testing.assert_array_equal(loaded(x, training=False).numpy(),
                                  model(x, training=False).numpy())


def test_resnet50_config_round_trip():
    # Saving ResNet-50 would write ~100MB; its config round trip is the part
    # specific to us (the backbone's saving is Keras's own).
    model = _build("resnet50")
    clone = keras.Model.from_config(model.get_config())
    assert clone.to_json() == model.to_json()
    assert clone.count_params() == model.count_params()


# Tracing the second-order step through ResNet-50 takes 30-40 s on two CPU
# cores, eager execution 5 s; the CIFAR families cover the traced step.
@pytest.mark.parametrize("family, run_eagerly", [
    ("resnet_cifar", False), ("wide_resnet", False), ("resnet50", True)])
def test_trains_with_meta_weight_net(family, run_eagerly):
    import mwnet_tf  # Imported here so the other zoo tests run without it.

    classifier = _build(family, seed=0)
    shape = classifier.input_shape[1:]
    before = [v.numpy().copy() for v in classifier.trainable_variables]
    model = mwnet_tf.MetaWeightNet(classifier)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9,
                                                 nesterov=True),
                  run_eagerly=run_eagerly)
    x, x_meta = _images(shape, batch=4, seed=1), _images(shape, batch=2, seed=2)
    y = np.array([0, 1, 2, 0], "int32")
    y_meta = np.array([1, 2], "int32")
    ds = tf.data.Dataset.from_tensors(((x, y), (x_meta, y_meta)))
    history = model.fit(ds, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    after = [v.numpy() for v in classifier.trainable_variables]
    changed = [not np.array_equal(b, a) for b, a in zip(before, after)]
    assert all(changed), f"{changed.count(False)} variables did not move"
