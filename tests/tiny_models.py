"""A small MetaWeightNet on tests/reference_math.py's classifier, and how
the trainer's tests train it and compare it (tests/test_trainer.py,
test_fit_workarounds.py, test_layer_scope.py, test_step_metrics.py,
test_label_correction.py)."""

import keras
import numpy as np
import tensorflow as tf

import mwnet_tf
from reference_math import classifier


def compiled(lookahead="sgd", weight_normalization="mean", dtype="float32",
             method="mwnet", batch_norm=True, seed=0, meta_scope="all",
             meta_interval=1, meta_warmup_steps=0,
             real_step_weights="updated", **compile_kwargs):
    """A compiled MetaWeightNet with a V of 8 hidden units; SGD 0.5 with
    Nesterov momentum 0.9 unless `compile_kwargs` give an optimizer."""
    model = mwnet_tf.MetaWeightNet(
        classifier(dtype, batch_norm, seed),
        mwnet_tf.WeightingNet(hidden_sizes=(8,), seed=seed, dtype=dtype),
        method=method, lookahead=lookahead,
        weight_normalization=weight_normalization, meta_scope=meta_scope,
        meta_interval=meta_interval, meta_warmup_steps=meta_warmup_steps,
        real_step_weights=real_step_weights)
    compile_kwargs.setdefault(
        "optimizer", keras.optimizers.SGD(0.5, momentum=0.9, nesterov=True))
    model.compile(**compile_kwargs)
    return model


def train(model, data, steps, callbacks=None):
    """`steps` steps of `model.fit` on the one batch `data`, in one epoch."""
    dataset = tf.data.Dataset.from_tensors(data).repeat(steps)
    return model.fit(dataset, epochs=1, verbose=0, callbacks=callbacks)


def traces_of(model):
    """A list that grows by one each time Keras traces `model.train_step`
    (once per replica under a strategy): once per kind of step (meta step
    or not, warming up or not) when each kind is its own function, chosen
    on the host before each call; once in all when one function holds
    every kind under tf.cond. Call it before the model first trains."""
    traces = []
    train_step = model.train_step

    def counted(data):
        traces.append(None)
        return train_step(data)

    model.train_step = counted
    return traces


def max_difference(model_a, model_b):
    """The largest difference between two models' variables."""
    return max(float(np.max(np.abs(a.numpy() - b.numpy())))
               for a, b in zip(model_a.variables, model_b.variables))
