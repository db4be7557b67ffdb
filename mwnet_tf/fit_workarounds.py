"""How `MetaWeightNet` fits into `keras.Model.fit`, where Keras or
tf.distribute do not let the training step say it plainly.

Everything here can be deleted when the library it works around changes;
each piece says what would have to change. The trainer's mathematics does
not depend on any of it.

- The meta step every `meta_interval`-th step, and a warm-up without
  meta steps: a conditional meta step inside the graph puts the meta
  optimiser's cross-replica merge inside `tf.cond`, which tf.distribute does
  not support, so under a multi-replica strategy the train function is
  traced once per kind of step (warm-up, with and without the meta step)
  and one is chosen on the host before each call. On one device it is done so too whenever each call runs
  one step: a step without the meta step is then a plain fixed-V step,
  where inside `tf.cond` it cost about a third more (BENCHMARKS.md, "Fast
  MW-Net"). Several steps per call keep `tf.cond`.
- keras-team/keras#20585, under `MultiWorkerMirroredStrategy`: Keras's
  `_maybe_symbolic_build` and its reduction of the step's logs fail on
  what every multi-worker model gives them.
- `fit`'s `shuffle` default, which Keras ignores for tf.data input but warns
  about.
"""

import keras
import tensorflow as tf
from keras import ops

from mwnet_tf import distribute as distribute_lib


class FitWorkarounds(keras.Model):
    """A mixin for `keras.Model` subclasses whose step may take a meta step.

    The subclass sets `meta_interval` and `meta_warmup_steps` (ints) and
    implements `_takes_meta_steps()` (whether the method has a meta step at
    all); its `train_step` calls `_run_meta_step_when_due(meta_step)` and
    `_unless_warming_up(weighted, unweighted)`, and passes its logs through
    `_logs_for_keras`.

    Steps are of three kinds, by the step counter s and warm-up W: "warmup"
    (s < W: no meta step), "meta" ((s - W) a multiple of `meta_interval`,
    for methods with meta steps) and "plain" (the others).
    """

    meta_interval = 1
    meta_warmup_steps = 0
    # The kind of the step about to run, set per call when the host chooses.
    _step_kind = "meta"

    def _takes_meta_steps(self):
        raise NotImplementedError

    def _kind_of_step(self, step):
        """The kind of step number `step` (a Python int)."""
        if step < self.meta_warmup_steps:
            return "warmup"
        if (self._takes_meta_steps()
                and (step - self.meta_warmup_steps) % self.meta_interval == 0):
            return "meta"
        return "plain"

    def _steps_differ(self):
        """Whether the steps of a run are of more than one kind."""
        return (self.meta_warmup_steps > 0
                or (self._takes_meta_steps() and self.meta_interval > 1))

    def _kind_chosen_on_host(self):
        """Whether each kind of step is its own traced function, chosen
        before each call (see the module docstring)."""
        return self._steps_differ() and (
            self.distribute_strategy.num_replicas_in_sync > 1
            or self.steps_per_execution == 1)

    def _run_meta_step_when_due(self, meta_step):
        """Calls `meta_step()` on the steps of kind "meta": always when every
        step is one, by the host's choice when the kinds are separate
        functions, else under `tf.cond` on the step counter."""
        if not self._steps_differ():
            meta_step()
        elif self._kind_chosen_on_host():
            if self._step_kind == "meta":  # A Python str, fixed at trace time.
                meta_step()
        else:
            def due():
                meta_step()
                return ops.ones((), "bool")

            step = self.optimizer.iterations
            is_due = ops.logical_and(
                ops.greater_equal(step, self.meta_warmup_steps),
                ops.equal((step - self.meta_warmup_steps)
                          % self.meta_interval, 0))
            tf.cond(is_due, due, lambda: ops.zeros((), "bool"))

    def _unless_warming_up(self, weighted, unweighted):
        """`weighted()` after the warm-up, `unweighted()` during it."""
        if self.meta_warmup_steps == 0:
            return weighted()
        if self._kind_chosen_on_host():
            return unweighted() if self._step_kind == "warmup" else weighted()
        return tf.cond(ops.less(self.optimizer.iterations,
                                self.meta_warmup_steps), unweighted, weighted)

    def make_train_function(self, force=False):
        if not self._kind_chosen_on_host():
            return super().make_train_function(force)
        if self.train_function is not None and not force:
            return self.train_function
        functions = {}
        for kind in ("warmup", "meta", "plain"):
            super().make_train_function(force=True)
            functions[kind] = self.train_function

        def train_function(iterator):
            # Read on the host, before the step: the step about to run is
            # iteration `iterations`, as in the single-replica tf.cond.
            self._step_kind = self._kind_of_step(
                int(self.optimizer.iterations.numpy()))
            # Each function traces (once) with the kind it is called with.
            return functions[self._step_kind](iterator)

        self.train_function = train_function
        return self.train_function

    # A private Keras method: keras_compat.MODEL_MAYBE_SYMBOLIC_BUILD.
    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # keras-team/keras#20585: under MultiWorkerMirroredStrategy Keras's
        # method reduces the first distributed batch with
        # strategy.reduce(..., axis=None), which cannot convert its PerReplica
        # values, before building the model symbolically. There is nothing to
        # build: the classifier is built before it is wrapped, V on creation,
        # both optimisers in `compile`, and there are no compiled metrics.
        if distribute_lib.is_multi_worker(self.distribute_strategy):
            return
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def _logs_for_keras(self, logs):
        """The step's logs, shaped for Keras's reduction over replicas.

        keras-team/keras#20585: under MultiWorkerMirroredStrategy Keras
        reduces step outputs with strategy.reduce("MEAN", value, axis=0),
        which fails on scalars. As vectors of one element they reduce to the
        scalar mean over replicas, which is what Keras reports under
        MirroredStrategy.
        """
        if not distribute_lib.is_multi_worker(self.distribute_strategy):
            return logs
        return {name: ops.reshape(value, (1,)) for name, value in logs.items()}

    def fit(self, x=None, *args, **kwargs):
        """`keras.Model.fit`; `shuffle` defaults to False for tf.data input.

        Keras ignores `shuffle` for a `tf.data.Dataset` (the dataset shuffles
        itself) but warns about its default, True. Other input keeps Keras's
        default.
        """
        # Passed positionally, `shuffle` is args[7] (y, batch_size, epochs,
        # verbose, callbacks, validation_split, validation_data come first).
        if (len(args) < 8 and "shuffle" not in kwargs and isinstance(
                x, (tf.data.Dataset, tf.distribute.DistributedDataset))):
            kwargs["shuffle"] = False
        return super().fit(x, *args, **kwargs)
