"""The private Keras / TensorFlow APIs of mwnet_tf.keras_compat still mean
what the package relies on.

A failure here after a Keras or TensorFlow upgrade names the private API that
changed: adapt its function in mwnet_tf/keras_compat.py (or the override
named by its PrivateHook), not the callers.
"""

import importlib
import inspect
import os
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from mwnet_tf.runner import callbacks
from mwnet_tf import keras_compat


def _nested_model():
    """input -> pre -> [inner: a -> b] -> head, inner a nested Sequential."""
    inner = keras.Sequential([keras.Input((3,), name="inner_input"),
                              keras.layers.Dense(4, name="a"),
                              keras.layers.Dense(4, name="b")], name="inner")
    inputs = keras.Input((3,), name="outer_input")
    hidden = keras.layers.Dense(3, name="pre")(inputs)
    outputs = keras.layers.Dense(2, name="head")(inner(hidden))
    return keras.Model(inputs, outputs, name="outer")


def _names(layers):
    return [layer.name for layer in layers]


# --------------------------------------------------------------- flatten_layers

def test_flatten_layers_walks_nested_models_depth_first():
    model = _nested_model()
    # Keras's order: the top level in graph order, each nested model right
    # after itself with its own layers in reverse (layer_scope.weight_layers
    # inherits this; see keras_compat.flatten_layers).
    assert _names(keras_compat.flatten_layers(model)) == [
        "outer_input", "pre", "inner", "b", "a", "inner_input", "head"]
    assert _names(keras_compat.flatten_layers(
        model, include_self=True, recursive=False)) == [
            "outer", "outer_input", "pre", "inner", "head"]
    inner = model.get_layer("inner")
    assert _names(keras_compat.flatten_layers(inner)) == [
        "inner_input", "a", "b"]


def test_flatten_layers_of_a_subclassed_layer_follows_assignment():
    class Block(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.first = keras.layers.Dense(2, name="first")
            self.second = keras.layers.Dense(2, name="second")

        def call(self, x):
            return self.second(self.first(x))

    block = Block(name="block")
    assert _names(keras_compat.flatten_layers(block)) == ["first", "second"]
    # A layer shared twice appears once.
    shared = keras.layers.Dense(2, name="shared")
    inputs = keras.Input((2,))
    model = keras.Model(inputs, shared(shared(inputs)))
    assert _names(keras_compat.flatten_layers(model))[1:] == ["shared"]


# ---------------------------------------------------- optimizer_variable_index

def test_optimizer_variable_index_is_the_variables_own_slot():
    # Two of the same shape, in an order other than creation order.
    a = keras.Variable(np.ones((2, 3), "float32"), name="a")
    b = keras.Variable(np.ones((5,), "float32"), name="b")
    c = keras.Variable(np.ones((2, 3), "float32"), name="c")
    variables = [c, a, b]
    optimizer = keras.optimizers.SGD(learning_rate=0.5, momentum=0.9)
    optimizer.build(variables)
    indices = [keras_compat.optimizer_variable_index(optimizer, v)
               for v in variables]
    assert sorted(indices) == [0, 1, 2]
    for v, index in zip(variables, indices):
        assert tuple(optimizer.momentums[index].shape) == tuple(v.shape)
    # After one step from zero velocity each slot holds -lr * its own
    # variable's gradient.
    grads = [np.full(v.shape, scale, "float32")
             for v, scale in zip(variables, (1.0, 2.0, 3.0))]
    optimizer.apply(grads, variables)
    for v, g in zip(variables, grads):
        velocity = optimizer.momentums[
            keras_compat.optimizer_variable_index(optimizer, v)]
        np.testing.assert_allclose(velocity.numpy(), -0.5 * g)


# -------------------------------------------------------- in_multi_worker_mode

def test_single_process_strategies_are_not_multi_worker(two_replica_strategy):
    assert keras_compat.in_multi_worker_mode(
        tf.distribute.get_strategy()) is False
    assert keras_compat.in_multi_worker_mode(two_replica_strategy) is False


def test_multi_worker_mode_means_more_than_one_worker():
    # MultiWorkerMirroredStrategy's extended, without starting a cluster:
    # `_num_workers` is what TensorFlow derives from TF_CONFIG's cluster.
    # (tests/test_multi_worker.py runs real clusters.)
    from tensorflow.python.distribute import collective_all_reduce_strategy
    extended_type = collective_all_reduce_strategy.CollectiveAllReduceExtended
    assert issubclass(tf.distribute.MultiWorkerMirroredStrategy,
                      collective_all_reduce_strategy.
                      CollectiveAllReduceStrategy)
    assert tuple(inspect.signature(
        extended_type._in_multi_worker_mode).parameters) == ("self",)
    for num_workers, expected in ((1, False), (2, True)):
        extended = extended_type.__new__(extended_type)
        extended._num_workers = num_workers
        strategy = types.SimpleNamespace(extended=extended)
        assert keras_compat.in_multi_worker_mode(strategy) is expected


# -------------------------------------------------- overridden private methods

@pytest.mark.parametrize("hook", keras_compat.PRIVATE_HOOKS,
                         ids=lambda hook: hook.name)
def test_overridden_private_methods_still_exist_as_overridden(hook):
    hook.check()  # Keras's method: the name and parameters.
    module, _, name = hook.overridden_by.rpartition(".")
    override_class = getattr(importlib.import_module(module), name)
    assert issubclass(override_class, hook.owner)
    override = override_class.__dict__[hook.name]
    assert tuple(inspect.signature(override).parameters) == hook.parameters


def test_a_renamed_hook_fails_the_check():
    renamed = keras_compat.MODEL_MAYBE_SYMBOLIC_BUILD._replace(
        name="_maybe_symbolic_build_renamed")
    with pytest.raises(RuntimeError, match="has no method"):
        renamed.check()
    changed = keras_compat.MODEL_MAYBE_SYMBOLIC_BUILD._replace(
        parameters=("self", "iterator"))
    with pytest.raises(RuntimeError, match="takes"):
        changed.check()


def _tiny_model():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    return model


def _tiny_data():
    return (np.zeros((4, 2), "float32"), np.zeros((4, 1), "float32"))


def test_fit_still_calls_maybe_symbolic_build():
    # Otherwise MetaWeightNet's override (the keras#20585 workaround) would
    # be dead code, and the multi-worker failure it avoids may be elsewhere.
    calls = []

    class Spy(keras.Sequential):
        def _maybe_symbolic_build(self, iterator=None, data_batch=None):
            calls.append(data_batch is not None or iterator is not None)
            super()._maybe_symbolic_build(iterator=iterator,
                                          data_batch=data_batch)

    model = Spy([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(*_tiny_data(), epochs=1, verbose=0)
    assert calls and all(calls)


@pytest.mark.parametrize("writes_backup", [True, False])
def test_backup_and_restore_writes_only_through_save_model(tmp_path,
                                                           writes_backup):
    # FiniteBackupAndRestore(writes_backup=False) overrides `_save_model`;
    # if Keras wrote the backup elsewhere, every worker would write it.
    backup_dir = tmp_path / "backup"
    model = _tiny_model()
    model.fit(*_tiny_data(), epochs=2, verbose=0, callbacks=[
        callbacks.FiniteBackupAndRestore(
            str(backup_dir), writes_backup=writes_backup,
            delete_checkpoint=False)])
    if writes_backup:
        assert os.listdir(backup_dir)
    else:
        assert not backup_dir.exists()


def test_set_initial_epoch_makes_fit_resume_there():
    from mwnet_tf import keras_compat

    class SetOnTrainBegin(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            keras_compat.set_initial_epoch(self.model, 2)

    model = _tiny_model()
    history = model.fit(*_tiny_data(), epochs=4, verbose=0,
                        callbacks=[SetOnTrainBegin()])
    assert history.epoch == [2, 3]
