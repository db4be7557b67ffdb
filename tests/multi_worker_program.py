"""What each worker of the multi-worker tests runs: small models, a few steps.

    TF_CONFIG=... python tests/multi_worker_program.py OUT_DIR

Every worker trains each scenario under MultiWorkerMirroredStrategy with
`MetaWeightNet.fit` on the global batches (each worker gets its share of
every batch), and writes OUT_DIR/worker<i>/<scenario>.npz: final weights and
the last epoch's logs. The tests run `train` in their own process with no
strategy for the single-process reference. It also records how plain Keras
fails under the strategy (`upstream_keras_failures`), the behaviour
MetaWeightNet works around.
"""

import json
import os
import sys

import keras
import numpy as np
import tensorflow as tf

import mwnet_tf

FEATURES, NUM_CLASSES = 5, 3
GLOBAL_BATCH, META_BATCH = 8, 4

# name -> arguments of `train`.
SCENARIOS = {
    "mwnet": dict(method="mwnet"),
    "l2rw": dict(method="l2rw"),
    "ce": dict(method="ce"),
    "mwnet_meta_interval_2": dict(method="mwnet", meta_interval=2, steps=5),
    # The real step of each meta step reusing the lookahead's gradient.
    "mwnet_reusing_lookahead_gradient": dict(
        method="mwnet", meta_interval=2, steps=5,
        real_step_weights="lookahead"),
    "mwnet_synchronized_batch_norm": dict(method="mwnet", batch_norm=True),
    # Soft label correction (the EMA classifier's predictions, averaged on
    # every worker alike) at flags/fast.cfg's kind of step, after a warm-up.
    "mwnet_label_correction": dict(
        method="mwnet", meta_interval=2, steps=5,
        real_step_weights="lookahead", label_correction=True,
        meta_warmup_steps=1),
}


def _classifier(batch_norm):
    inputs = keras.Input((FEATURES,))
    hidden = keras.layers.Dense(
        6, kernel_initializer=keras.initializers.GlorotUniform(0))(inputs)
    if batch_norm:
        hidden = keras.layers.BatchNormalization(synchronized=True)(hidden)
    hidden = keras.layers.Activation("tanh")(hidden)
    outputs = keras.layers.Dense(
        NUM_CLASSES, kernel_initializer=keras.initializers.GlorotUniform(1))(
            hidden)
    return keras.Model(inputs, outputs)


def _dataset(steps):
    rng = np.random.default_rng(0)
    n = steps * GLOBAL_BATCH
    x = rng.normal(size=(n, FEATURES)).astype("float32")
    y = rng.integers(0, NUM_CLASSES, n)
    x_meta = rng.normal(size=(4 * META_BATCH, FEATURES)).astype("float32")
    y_meta = rng.integers(0, NUM_CLASSES, 4 * META_BATCH)
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)
    meta = tf.data.Dataset.from_tensor_slices((x_meta, y_meta))
    return mwnet_tf.with_meta(train, meta.batch(META_BATCH))


def _held_out():
    """12 examples: batches of 8 and 4, so the last one splits unevenly."""
    rng = np.random.default_rng(1)
    return (rng.normal(size=(12, FEATURES)).astype("float32"),
            rng.integers(0, NUM_CLASSES, 12))


def train(strategy, method, meta_interval=1, steps=3, batch_norm=False,
          real_step_weights="updated", label_correction=False,
          meta_warmup_steps=0):
    """Trains one scenario, then evaluates and predicts on held-out data.

    Returns:
        (weights, logs, predictions): the model's variables after training;
        the epoch's training logs plus `evaluate`'s ("eval_loss",
        "eval_accuracy"); `predict`'s logits.
    """
    with strategy.scope():
        model = mwnet_tf.MetaWeightNet(
            _classifier(batch_norm),
            mwnet_tf.WeightingNet(hidden_sizes=(8,), seed=0),
            method=method, meta_interval=meta_interval,
            real_step_weights=real_step_weights,
            label_correction=label_correction, ema_decay=(
                0.5 if label_correction else None),
            meta_warmup_steps=meta_warmup_steps)
        model.compile(optimizer=keras.optimizers.SGD(0.5, momentum=0.9))
    history = model.fit(_dataset(steps), epochs=1, verbose=0)
    logs = {name: values[-1] for name, values in history.history.items()}
    x, y = _held_out()
    evaluation = model.evaluate(
        tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH),
        verbose=0, return_dict=True)
    logs.update({"eval_" + name: value for name, value in evaluation.items()})
    weights = [v.numpy() for v in model.variables]
    predictions = model.predict(
        tf.data.Dataset.from_tensor_slices(x).batch(GLOBAL_BATCH), verbose=0)
    return weights, logs, predictions


def upstream_keras_failures(strategy):
    """How `fit` of a plain Keras model fails under the strategy.

    Returns:
        {"symbolic_build": message, "reduce": message}; a value is None when
        that step no longer fails (a Keras upgrade fixed it).
    """
    with strategy.scope():
        model = _classifier(batch_norm=False)
        model.compile(optimizer="sgd", loss=keras.losses.
                      SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    data = tf.data.Dataset.from_tensor_slices(
        (rng.normal(size=(16, FEATURES)).astype("float32"),
         rng.integers(0, NUM_CLASSES, 16))).batch(GLOBAL_BATCH)
    failures = {}
    for step in ("symbolic_build", "reduce"):
        try:
            model.fit(data, epochs=1, verbose=0)
            failures[step] = None
        except Exception as error:  # pylint: disable=broad-except
            failures[step] = f"{type(error).__name__}: {error}"[:2000]
        # Past the first failure as MetaWeightNet is (its model is built).
        model._maybe_symbolic_build = lambda *args, **kwargs: None
    return failures


def main(out_dir):
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    worker_dir = os.path.join(
        out_dir, f"worker{strategy.cluster_resolver.task_id}")
    os.makedirs(worker_dir, exist_ok=True)
    for name, arguments in SCENARIOS.items():
        weights, logs, predictions = train(strategy, **arguments)
        np.savez(os.path.join(worker_dir, name + ".npz"), *weights,
                 predictions=predictions,
                 logs=json.dumps({k: float(np.squeeze(v))
                                  for k, v in logs.items()}),
                 log_shapes=json.dumps({k: list(np.shape(v))
                                        for k, v in logs.items()}))
    with open(os.path.join(worker_dir, "upstream.json"), "w") as file:
        json.dump(upstream_keras_failures(strategy), file)


if __name__ == "__main__":
    main(sys.argv[1])
