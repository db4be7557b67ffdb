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


def _plain_keras_model(model):
    """The same classifier compiled the way a Keras user would."""
    plain = keras.models.clone_model(model.classifier)
    plain.set_weights(model.classifier.get_weights())
    plain.compile(loss=keras.losses.SparseCategoricalCrossentropy(
        from_logits=True), metrics=["accuracy"])
    return plain


def test_callbacks_monitor_the_wrappers_metrics_with_mode_auto(tmp_path):
    x, y, x_meta, y_meta = _batches(5)
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    meta = tf.data.Dataset.from_tensor_slices((x_meta, y_meta))
    model = _model()
    watched = {
        name: keras.callbacks.EarlyStopping(monitor=name, patience=5)
        for name in ("val_accuracy", "val_loss", "meta_loss",
                     "meta_accuracy", "accuracy")}
    checkpoint = keras.callbacks.ModelCheckpoint(
        str(tmp_path / "best.keras"), monitor="val_accuracy",
        save_best_only=True)
    history = model.fit(mwnet_tf.with_meta(train, meta, meta_batch_size=4),
                        validation_data=(x, y), epochs=2, verbose=0,
                        callbacks=[*watched.values(), checkpoint])
    # Each callback learned the direction a user expects (Keras refused
    # before: "isn't able to automatically determine ...").
    for name, callback in watched.items():
        expected = (keras.ops.less if name.endswith("loss")
                    else keras.ops.greater)
        assert callback.monitor_op == expected, name
    assert (tmp_path / "best.keras").exists()
    # The metrics Keras reports are the trackers', once each.
    assert set(history.history) == {
        "loss", "accuracy", "mean_weight", "meta_loss", "meta_accuracy",
        "val_loss", "val_accuracy"}
    assert model.evaluate(x, y, verbose=0) == pytest.approx(
        _plain_keras_model(model).evaluate(x, y, verbose=0), rel=1e-5)


def test_evaluate_weighs_examples_as_keras_does():
    x, y, _, _ = _batches(6)
    model = _model()
    weights = np.linspace(0.0, 2.0, len(y)).astype("float32")
    ours = model.evaluate(x, y, sample_weight=weights, batch_size=5,
                          verbose=0, return_dict=True)
    keras_own = _plain_keras_model(model).evaluate(
        x, y, sample_weight=weights, batch_size=5, verbose=0,
        return_dict=True)
    assert ours["loss"] == pytest.approx(keras_own["loss"], rel=1e-5)
    assert ours["accuracy"] == pytest.approx(
        keras_own["compile_metrics"] if "compile_metrics" in keras_own
        else keras_own["accuracy"], rel=1e-5)
    unweighted = model.evaluate(x, y, verbose=0, return_dict=True)
    assert unweighted["loss"] != pytest.approx(ours["loss"], rel=1e-3)


def test_export_serves_the_classifier(tmp_path):
    x, y, x_meta, y_meta = _batches(7)
    model = _model()
    model.train_on_batch(((x, y), (x_meta, y_meta)))
    model.export(str(tmp_path / "served"))
    served = tf.saved_model.load(str(tmp_path / "served"))
    np.testing.assert_allclose(served.serve(x).numpy(),
                               model.classifier(x, training=False).numpy(),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_load_model_works_in_any_import_order(tmp_path):
    import subprocess
    import sys
    x, y, x_meta, y_meta = _batches(8)
    model = _model()
    model.train_on_batch(((x, y), (x_meta, y_meta)))
    path = str(tmp_path / "model.keras")
    model.save(path)
    program = (
        "import sys\n"
        "import mwnet_tf\n"
        "assert 'tensorflow' not in sys.modules, 'import mwnet_tf loaded TF'\n"
        "import keras\n"
        f"model = keras.saving.load_model({path!r})\n"
        "print(type(model).__name__)\n")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("MetaWeightNet")


def test_labels_out_of_range_are_refused_in_one_line_naming_the_set():
    x, y, x_meta, y_meta = _batches(9)
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    meta = tf.data.Dataset.from_tensor_slices((x_meta, y_meta))
    cases = [
        (mwnet_tf.with_meta(train, meta.map(lambda a, b: (a, b + 7)),
                            meta_batch_size=4),
         None, "meta labels must be class indices in 0..2 .* holds [789]"),
        (mwnet_tf.with_meta(train.map(lambda a, b: (a, b - 5)), meta,
                            meta_batch_size=4),
         None, "training labels must be class indices in 0..2"),
        (mwnet_tf.with_meta(train.map(lambda a, b: (a, tf.one_hot(b, 4))),
                            meta, meta_batch_size=4),
         None, "training labels are 4-column one-hot"),
    ]
    for data, labels, message in cases:
        model = _model()
        before = [v.numpy() for v in model.variables]
        with pytest.raises(ValueError, match=message) as error:
            model.fit(data, labels, epochs=1, verbose=0)
        assert "\n" not in str(error.value)
        # Refused before any step.
        assert all((a == b.numpy()).all()
                   for a, b in zip(before, model.variables))
    # CE, which would have trained on them silently.
    with pytest.raises(ValueError, match="training labels must be"):
        _model("ce").fit(x, y + 3, batch_size=4, epochs=1, verbose=0)


def test_any_data_can_be_audited_from_python_with_a_warning_if_v_rises():
    from mwnet_tf import label_audit
    x, y, _, _ = _batches(10, n=20)
    falling = mwnet_tf.WeightingNet(hidden_sizes=(4,), seed=0)
    rising = mwnet_tf.WeightingNet(hidden_sizes=(4,), seed=0)
    # V(l) = sigmoid(-l) or sigmoid(l), set by hand.
    for net, sign in ((falling, -1.0), (rising, 1.0)):
        net.set_weights([np.ones((1, 4), "float32"), np.zeros(4, "float32"),
                         np.full((4, 1), sign / 4, "float32"),
                         np.zeros(1, "float32")])
    model = mwnet_tf.MetaWeightNet(_classifier(), falling, method="fixed")
    from_arrays = label_audit.audit_model(model, x, np.eye(NUM_CLASSES)[y],
                                          batch_size=7)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(6)
    from_dataset = label_audit.audit_model(model, dataset)
    losses = keras.losses.sparse_categorical_crossentropy(
        y, model.classifier(x, training=False), from_logits=True).numpy()
    for audit in (from_arrays, from_dataset):
        np.testing.assert_array_equal(audit.given_label, y)
        np.testing.assert_allclose(audit.loss, losses, rtol=1e-5)
        np.testing.assert_allclose(audit.weight, 1 / (1 + np.exp(losses)),
                                   rtol=1e-5)
        assert audit.ranked_by == "weight"
        # Most suspect first: the highest loss, the lowest weight.
        assert audit.suspect_order()[0] == np.argmax(losses)
    upside_down = mwnet_tf.MetaWeightNet(_classifier(), rising,
                                         method="fixed")
    with pytest.warns(UserWarning, match="V is increasing .* ranks by the "
                      "loss"):
        audit = label_audit.audit_model(upside_down, x, y)
    assert audit.ranked_by == "loss"
    assert audit.suspect_order()[0] == np.argmax(losses)
