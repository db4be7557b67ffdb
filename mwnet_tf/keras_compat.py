"""Every private Keras / TensorFlow API that mwnet_tf and zoo rely on.

pyproject.toml allows a range of Keras versions, but private APIs can change
in any release. Each one the package uses is named here once, with what it
stands for, so that `tests/test_keras_compat.py` can check it against the
installed Keras and TensorFlow: an upgrade that renames or changes one fails
that test instead of breaking a run (or silently skipping a workaround).

Two kinds:

- Private calls (`flatten_layers`, `optimizer_variable_index`,
  `in_multi_worker_mode`, `set_initial_epoch`, `monitored_metrics`): the
  package calls these functions, never the private API itself.
- Private methods the package overrides (`MODEL_MAYBE_SYMBOLIC_BUILD`,
  `BACKUP_AND_RESTORE_SAVE_MODEL`): the override stays in its class, and the
  `PrivateHook` here names the method and the parameters the override
  expects; `PrivateHook.check` raises if Keras no longer has it so.

A new private use goes here too, with a test.
"""

import inspect
import typing

import keras


def flatten_layers(layer, include_self=False, recursive=True):
    """Every sublayer of `layer` (nested models and layers included).

    Stands for `keras.Layer._flatten_layers`. `Model.layers` is public but
    lists only the direct children (a nested model is one entry), and Keras
    has no public way to walk the whole tree of sublayers.

    The order is Keras's: depth-first, each layer followed by its subtree,
    the top-level layers in their order (graph order for functional and
    Sequential models, assignment order for subclassed ones) but the children
    of each nested layer in reverse (Keras pushes them onto the front of a
    deque), so inside a nested model the layers come output to input. Each
    layer appears once.

    Args:
        layer: A Keras layer or model.
        include_self: Whether `layer` itself comes first.
        recursive: Whether to descend into sublayers' own sublayers; False
            gives the direct children only.

    Returns:
        A list of layers.
    """
    return layer._flatten_layers(include_self=include_self,
                                 recursive=recursive)


def optimizer_variable_index(optimizer, variable):
    """The index of `variable` in `optimizer`'s per-variable slot lists.

    Stands for `keras.optimizers.Optimizer._get_variable_index`: e.g.
    `optimizer.momentums[optimizer_variable_index(optimizer, v)]` is the SGD
    velocity of `v`. The slot lists (`momentums`, Adam's `_momentums`, ...)
    follow the order of the variables the optimiser was built with, which is
    not public, and Keras has no public lookup from a variable to its slot;
    this one also resolves distributed variables to the right entry.

    Args:
        optimizer: A built Keras optimiser (not a LossScaleOptimizer: pass
            its `inner_optimizer`).
        variable: One of the trainable variables it was built with.

    Returns:
        An int.
    """
    return optimizer._get_variable_index(variable)


def in_multi_worker_mode(strategy):
    """Whether `strategy` spans several worker processes.

    Stands for `strategy.extended._in_multi_worker_mode()`. The type of the
    strategy does not say it: a MultiWorkerMirroredStrategy without a
    cluster in TF_CONFIG is a single local worker. Its public
    `cluster_resolver` describes the cluster it was given, not whether the
    strategy runs as one (and other strategies have none), and
    `tf.distribute` has no public equivalent. False for the default
    strategy and MirroredStrategy.

    Args:
        strategy: A `tf.distribute.Strategy`.

    Returns:
        A bool.
    """
    return bool(strategy.extended._in_multi_worker_mode())


def set_initial_epoch(model, epoch):
    """Makes the next `fit` of `model` start at `epoch`.

    Stands for `model._initial_epoch = epoch`, which `fit` reads after its
    callbacks' `on_train_begin`: how Keras's own BackupAndRestore resumes
    (FiniteBackupAndRestore restores its own backup files).
    """
    model._initial_epoch = int(epoch)


def monitored_metrics(metrics, directions):
    """A metric that shows Keras's monitoring callbacks which way `metrics`
    improve, for a model that builds its own metrics (no `compile(metrics=)`).

    Stands for `Metric._direction` ("up" or "down", set here for the names
    in `directions`) and `keras.src.trainers.compile_utils.MetricsList`:
    with `mode="auto"`, EarlyStopping, ModelCheckpoint and
    ReduceLROnPlateau look for a metric's direction only among the members
    of such lists (a compiled model's), so a custom model's own trackers
    would make them fail. List the returned object in the model's `metrics`
    beside the trackers: it reads and resets the same trackers.
    """
    from keras.src.trainers import compile_utils

    class Monitored(compile_utils.MetricsList):
        def result(self):  # What Model.get_metrics_result reads: a dict.
            return self.get_result()

    for metric in metrics:
        if metric.name in directions:
            metric._direction = directions[metric.name]
    return Monitored(list(metrics), name="monitored")


class PrivateHook(typing.NamedTuple):
    """A private method of a Keras class that the package overrides.

    Attributes:
        owner: The public Keras class the override's class derives from.
        name: The method's name.
        parameters: The names of its parameters (`self` first), which the
            override takes and passes on.
        overridden_by: Where the override is, "module.Class".
    """

    owner: type
    name: str
    parameters: tuple
    overridden_by: str

    def check(self):
        """Raises RuntimeError unless `owner` still has `name(*parameters)`.

        An override of a method Keras renamed or removed is never called,
        so the workaround it carries would silently stop working.
        """
        method = getattr(self.owner, self.name, None)
        where = f"{self.owner.__module__}.{self.owner.__qualname__}"
        if not callable(method):
            raise RuntimeError(
                f"Keras {keras.__version__}: {where} has no method "
                f"{self.name!r}, which {self.overridden_by} overrides; "
                "revisit that override (see mwnet_tf/keras_compat.py).")
        found = tuple(inspect.signature(method).parameters)
        if found != tuple(self.parameters):
            raise RuntimeError(
                f"Keras {keras.__version__}: {where}.{self.name} takes "
                f"{found}, but {self.overridden_by} overrides it as taking "
                f"{tuple(self.parameters)}; revisit that override (see "
                "mwnet_tf/keras_compat.py).")


# `Model.fit` (and evaluate, predict) calls it with the first batch to build
# an unbuilt model symbolically; FitWorkarounds (MetaWeightNet's base) skips it under
# MultiWorkerMirroredStrategy (keras-team/keras#20585). Keras has no public
# hook into how fit builds the model.
MODEL_MAYBE_SYMBOLIC_BUILD = PrivateHook(
    owner=keras.Model,
    name="_maybe_symbolic_build",
    parameters=("self", "iterator", "data_batch"),
    overridden_by="mwnet_tf.fit_workarounds.FitWorkarounds")

# BackupAndRestore writes (and only writes) its backup in it, from
# on_epoch_end or on_train_batch_end; FiniteBackupAndRestore skips it on
# workers other than the chief. The public callback has no option to
# restore without writing.
BACKUP_AND_RESTORE_SAVE_MODEL = PrivateHook(
    owner=keras.callbacks.BackupAndRestore,
    name="_save_model",
    parameters=("self",),
    overridden_by="mwnet_tf.runner.callbacks.FiniteBackupAndRestore")

PRIVATE_HOOKS = (MODEL_MAYBE_SYMBOLIC_BUILD, BACKUP_AND_RESTORE_SAVE_MODEL)
