"""What MetaWeightNet's training step reports: its metrics and their logs.

`StepMetrics` is an object the trainer owns, apart from the algorithm: the
trackers, what each step adds to them, and which of them an epoch's logs
show. Every value is in single-device units under tf.distribute.

The logs hold only what was measured: in an epoch that has taken no meta
step yet (the warm-up, or a `meta_interval` longer than the epoch) the
meta metrics are left out, not shown as 0 or NaN (which reads as a run
that diverged). Keras's progress bar and `History` then skip them; its
`CSVLogger` takes its columns from the first epoch it writes, so a run
whose first epoch has no meta step needs a logger with fixed columns
(the runner's `HistoryLogger`).
"""

import keras
from keras import ops

from mwnet_tf import meta_gradient as mg

from mwnet_tf import keras_compat

# Which way each metric improves, for callbacks that monitor it with
# mode="auto" (EarlyStopping, ModelCheckpoint); the weights have none.
DIRECTIONS = {"loss": "down", "accuracy": "up", "meta_loss": "down",
              "meta_accuracy": "up"}


class StepMetrics:
    """Trackers of the loss, accuracy, weights (mean, clean, corrupted) and
    the meta step's loss and accuracy, for a model trained by `method`
    whose steps measure a meta loss if `measures_meta_loss`
    (`StepSchedule.uses_meta_batches`).

    Create it under the model's distribution strategy (the trackers'
    variables are made here).
    """

    def __init__(self, method, measures_meta_loss):
        self.method = method
        self.measures_meta_loss = measures_meta_loss
        # Whether a meta step is known, on the host, to have been recorded
        # since the trackers' last reset (`forget_measured`).
        self._meta_measured = False
        self.loss = keras.metrics.Mean(name="loss")
        self.accuracy = keras.metrics.SparseCategoricalAccuracy(
            name="accuracy")
        self.meta_loss = keras.metrics.Mean(name="meta_loss")
        self.meta_accuracy = keras.metrics.SparseCategoricalAccuracy(
            name="meta_accuracy")
        self.mean_weight = keras.metrics.Mean(name="mean_weight")
        self.clean_weight = keras.metrics.Mean(name="clean_weight")
        self.corrupted_weight = keras.metrics.Mean(name="corrupted_weight")
        self._monitored = keras_compat.monitored_metrics(self.trackers,
                                                         DIRECTIONS)

    @property
    def trackers(self):
        """Every tracker (Keras resets them at the start of each epoch and
        reads them at its end)."""
        return [self.loss, self.accuracy, self.meta_loss, self.meta_accuracy,
                self.mean_weight, self.clean_weight, self.corrupted_weight]

    @property
    def model_metrics(self):
        """What the model's `metrics` are: the trackers, and the same again
        as a list Keras's callbacks read the directions from."""
        return self.trackers + [self._monitored]

    def forget_measured(self):
        """After the trackers' reset (the model's `reset_metrics`)."""
        self._meta_measured = False

    def record_step(self, forward, y, coefficients, weights, corrupted):
        """Adds a training step; returns the results of its method's
        metrics (tensors).

        The loss is the objective the classifier step descended, without L2,
        in single-device units.
        """
        self.loss.update_state(forward.objective(coefficients)
                               * mg.num_replicas())
        self.accuracy.update_state(y, forward.outputs)
        if self.method == "l2rw":
            # Normalised weights sum to 1; scale so that 1 means "average".
            weights = coefficients * ops.cast(
                ops.shape(forward.losses)[0] * mg.num_replicas(), weights.dtype)
        self.mean_weight.update_state(weights)
        shown = [self.loss, self.accuracy, self.mean_weight]
        if corrupted is not None:
            corrupted = ops.cast(ops.reshape(corrupted, (-1,)), weights.dtype)
            self.clean_weight.update_state(weights,
                                           sample_weight=1.0 - corrupted)
            self.corrupted_weight.update_state(weights,
                                               sample_weight=corrupted)
            shown += [self.clean_weight, self.corrupted_weight]
        if self.measures_meta_loss:
            shown += [self.meta_loss, self.meta_accuracy]
        return {tracker.name: tracker.result() for tracker in shown}

    def record_meta_step(self, meta_loss, y_meta, meta_outputs):
        """Adds a meta step's loss (this replica's share) and accuracy."""
        self.meta_loss.update_state(meta_loss * mg.num_replicas())
        self.meta_accuracy.update_state(y_meta, meta_outputs)

    def record_evaluation(self, losses, y, outputs, sample_weight=None):
        """Adds an evaluation batch's per-example losses and outputs;
        returns the loss and accuracy so far.

        As a compiled Keras model: the batch's loss is the mean of the
        (sample-weighted) losses over the batch, and batches count by size;
        the accuracy is unweighted, as `compile(metrics=...)`'s are.
        """
        weighted = losses if sample_weight is None else losses * ops.cast(
            ops.reshape(sample_weight, (-1,)), losses.dtype)
        self.loss.update_state(ops.mean(weighted),
                               sample_weight=ops.shape(losses)[0])
        self.accuracy.update_state(y, outputs)
        return {"loss": self.loss.result(),
                "accuracy": self.accuracy.result()}

    def measured_only(self, logs, strategy):
        """`logs` without the meta metrics while no meta step has been
        recorded since the trackers' last reset; read on the host.

        Every replica takes the same kind of step, so this process's first
        replica's count says it; reading the sum over replicas would be a
        collective under MultiWorkerMirroredStrategy.
        """
        if not self.measures_meta_loss or self._meta_measured:
            return logs
        count = strategy.experimental_local_results(
            self.meta_loss.count.value)[0]
        if count > 0:
            # Measured until the next reset: no more reads this epoch.
            self._meta_measured = True
            return logs
        unmeasured = (self.meta_loss.name, self.meta_accuracy.name)
        return {name: value for name, value in logs.items()
                if name not in unmeasured}
