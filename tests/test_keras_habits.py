"""`model.fit` in a Keras user's own code: habits met, or refused in one
line that says what to do (issue 35, in part)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import mwnet_tf
from reference_math import FEATURES, NUM_CLASSES
from reference_math import batches as _batches
from reference_math import classifier as _classifier


def _softmax_classifier(mixed=False):
    inputs = keras.Input((FEATURES,))
    hidden = keras.layers.Dense(6, activation="tanh")(inputs)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax")(hidden)
    if mixed:  # What a float32 output under mixed precision adds.
        outputs = keras.layers.Activation("linear", dtype="float32")(outputs)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("mixed", [False, True])
def test_a_softmax_output_is_refused_unless_from_logits_false(mixed):
    with pytest.raises(ValueError, match="ends in a softmax.*"
                       "classifier_activation=None.*from_logits=False"):
        mwnet_tf.MetaWeightNet(_softmax_classifier(mixed))
    model = mwnet_tf.MetaWeightNet(_softmax_classifier(mixed),
                                   from_logits=False)
    model.compile()
    x, y, x_meta, y_meta = _batches(1)
    logs = model.train_on_batch(((x, y), (x_meta, y_meta)),
                                return_dict=True)
    # The cross-entropy of probabilities, not of probabilities as logits.
    probabilities = model.classifier(x, training=False).numpy()
    expected = -np.mean(np.log(probabilities[np.arange(len(y)), y]))
    result = model.evaluate(x, y, verbose=0, return_dict=True)
    assert result["loss"] == pytest.approx(expected, rel=1e-4)
    assert np.isfinite(logs["loss"])


def test_keras_applications_model_end_to_end():
    classifier = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=NUM_CLASSES,
        classifier_activation=None)
    model = mwnet_tf.MetaWeightNet(classifier)
    model.compile()
    rng = np.random.default_rng(0)
    x = rng.random((8, 32, 32, 3), dtype="float32")
    y = rng.integers(0, NUM_CLASSES, 8)
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    meta = tf.data.Dataset.from_tensor_slices((x[:4], y[:4]))
    history = model.fit(mwnet_tf.with_meta(train, meta, meta_batch_size=4),
                        epochs=1, verbose=0)
    assert np.isfinite(history.history["meta_loss"][-1])


def test_one_hot_labels_train_as_integer_labels():
    x, y, x_meta, y_meta = _batches(2)
    one_hot = _model()
    integer = _model()
    one_hot.train_on_batch(((x, np.eye(NUM_CLASSES)[y]),
                            (x_meta, np.eye(NUM_CLASSES)[y_meta])))
    integer.train_on_batch(((x, y), (x_meta, y_meta)))
    for a, b in zip(one_hot.variables, integer.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6,
                                   atol=1e-7)
    assert one_hot.evaluate(x, np.eye(NUM_CLASSES)[y], verbose=0) == \
        pytest.approx(integer.evaluate(x, y, verbose=0))


def _model(method="mwnet", **options):
    net = None if method == "ce" else mwnet_tf.WeightingNet(
        hidden_sizes=(8,), seed=0)
    model = mwnet_tf.MetaWeightNet(_classifier(), net, method=method,
                                   **options)
    model.compile(optimizer=keras.optimizers.SGD(0.3))
    return model


@pytest.mark.parametrize("method", ["ce", "fixed"])
def test_methods_without_a_meta_step_train_without_meta_data(method):
    x, y, x_meta, y_meta = _batches(3)
    plain = _model(method)
    paired = _model(method)
    plain.fit(x, y, batch_size=12, epochs=1, verbose=0, shuffle=False)
    paired.train_on_batch(((x, y), (x_meta, y_meta)))
    # (ce's V is an untrained default, different in each model.)
    for a, b in zip(plain.classifier.variables, paired.classifier.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6,
                                   atol=1e-7)
    with pytest.raises(ValueError, match="with_meta"):
        _model("mwnet").fit(x, y, batch_size=12, epochs=1, verbose=0)


def test_with_meta_refuses_its_mistakes_in_one_line():
    x, y, x_meta, y_meta = _batches(4)
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    meta = tf.data.Dataset.from_tensor_slices((x_meta, y_meta))
    cases = [
        (lambda: mwnet_tf.with_meta(train, meta.batch(4), meta_batch_size=4),
         "already batched.*drop meta_batch_size"),
        (lambda: mwnet_tf.with_meta(train, meta),
         "single examples; pass meta_batch_size="),
        (lambda: mwnet_tf.with_meta(train, None, meta_batch_size=4),
         "needs meta_ds; got None"),
        (lambda: mwnet_tf.with_meta((x, y), meta, meta_batch_size=4),
         "train_ds must be a batched tf.data.Dataset"),
        (lambda: mwnet_tf.with_meta(train, meta.take(0), meta_batch_size=4),
         "meta_ds is empty"),
    ]
    for build, message in cases:
        with pytest.raises(ValueError, match=message) as error:
            build()
        assert "\n" not in str(error.value)
    # Arrays for the meta set are taken as single examples; a finite meta
    # set repeats for as long as the training data lasts.
    paired = mwnet_tf.with_meta(train, (x_meta[:4], y_meta[:4]),
                                meta_batch_size=4)
    assert len(list(paired)) == 3
