"""How `MetaWeightNet` fits into `keras.Model.fit`, where Keras or
tf.distribute do not let the training step say it plainly.

Each piece here can be deleted when the library it works around changes;
each says what would have to change. Which steps take the meta step (or
warm up) is the model's `schedule` (a `mwnet_tf.step_schedule.StepSchedule`)
to say; this module only decides how a step learns which it is.

- Steps that are not all alike (the meta step every `meta_interval`-th
  step, a warm-up without meta steps): a conditional meta step inside the
  graph puts the meta optimiser's cross-replica merge inside `tf.cond`,
  which tf.distribute does not support, so under a multi-replica strategy
  the train function is traced once per kind of step and one is chosen on
  the host before each call. On one device it is done so too whenever each call runs
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
from mwnet_tf.step_schedule import STEP_KINDS, StepKind


class FitWorkarounds(keras.Model):
    """A `keras.Model` base for models whose steps are not all alike.

    The subclass sets `self.schedule`, a `StepSchedule` (which kind of
    step runs at step t); this class decides how a step learns its kind:
    two or more traced functions chosen on the host, or `tf.cond` in the
    graph. The subclass's `train_step` calls
    `_when_meta_step_due(meta_step, other_step)` and
    `_unless_warming_up(weighted, unweighted)` and passes its logs through
    `_logs_for_keras`.
    """

    # The kind of the step about to run (a `StepKind`), set before each
    # call when the host chooses; each traced function keeps the value it
    # was traced with.
    _step_kind = StepKind(meta_step=True, warming_up=False)

    def _kind_chosen_on_host(self):
        """Whether each kind of step is its own traced function, chosen
        before each call (see the module docstring)."""
        return self.schedule.steps_differ and (
            self.distribute_strategy.num_replicas_in_sync > 1
            or self.steps_per_execution == 1)

    def _step_number(self):
        # The step about to run is iteration `iterations` (read in the step).
        return ops.convert_to_tensor(self.optimizer.iterations)

    def _when_meta_step_due(self, meta_step, other_step):
        """`meta_step()` on the steps that take one, `other_step()` on the
        others (both return the same structure of tensors): always the
        meta step when all steps take it, by the host's choice when the
        kinds are separate functions, else under `tf.cond` on the step
        counter."""
        if not self.schedule.takes_meta_steps:
            return other_step()
        if not self.schedule.steps_differ:
            return meta_step()
        if self._kind_chosen_on_host():
            # A Python bool, fixed at trace time.
            return meta_step() if self._step_kind.meta_step else other_step()
        return tf.cond(self.schedule.meta_step_at(self._step_number()),
                       meta_step, other_step)

    def _unless_warming_up(self, weighted, unweighted):
        """`unweighted()` on the warm-up's steps, `weighted()` on the others."""
        if not (self.schedule.steps_differ
                and self.schedule.warms_up_unweighted):
            return weighted()
        if self._kind_chosen_on_host():
            return unweighted() if self._step_kind.warming_up else weighted()
        return tf.cond(self.schedule.warming_up_at(self._step_number()),
                       unweighted, weighted)

    def make_train_function(self, force=False):
        if not self._kind_chosen_on_host():
            return super().make_train_function(force)
        if self.train_function is not None and not force:
            return self.train_function
        # One tf.function per kind; each traces only if a step of its kind
        # runs, with the kind it is called with.
        functions = {}
        for kind in STEP_KINDS:
            super().make_train_function(force=True)
            functions[kind] = self.train_function

        def train_function(iterator):
            # Read on the host, before the step: the step about to run is
            # iteration `iterations`, as in the single-replica tf.cond.
            self._step_kind = self.schedule.kind_at(
                int(self.optimizer.iterations.numpy()))
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
