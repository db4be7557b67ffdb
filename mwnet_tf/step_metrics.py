"""What MetaWeightNet's training step reports: its metrics and their logs.

A mixin of `MetaWeightNet` (trainer.py), apart from the algorithm: the
trackers, what each step adds to them, and the logs Keras shows and
records. Every value is in single-device units under tf.distribute.
"""

import keras
from keras import ops

from mwnet_tf import meta_gradient as mg


class StepMetrics:
    """Trackers of the loss, accuracy, weights (mean, clean, corrupted) and
    the meta step's loss and accuracy."""

    def _create_trackers(self):
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(
            name="accuracy")
        self.meta_loss_tracker = keras.metrics.Mean(name="meta_loss")
        self.meta_accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(
            name="meta_accuracy")
        self.mean_weight_tracker = keras.metrics.Mean(name="mean_weight")
        self.clean_weight_tracker = keras.metrics.Mean(name="clean_weight")
        self.corrupted_weight_tracker = keras.metrics.Mean(
            name="corrupted_weight")

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy_tracker,
                self.meta_loss_tracker, self.meta_accuracy_tracker,
                self.mean_weight_tracker, self.clean_weight_tracker,
                self.corrupted_weight_tracker]

    def _update_metrics(self, forward, y, coefficients, weights, corrupted):
        """Updates the trackers; returns the logs of this method's metrics.

        The loss is the objective the classifier step descended, without L2,
        in single-device units.
        """
        self.loss_tracker.update_state(
            forward.objective(coefficients) * mg.num_replicas())
        self.accuracy_tracker.update_state(y, forward.outputs)
        if self.method == "l2rw":
            # Normalised weights sum to 1; scale so that 1 means "average".
            weights = coefficients * ops.cast(
                ops.shape(forward.losses)[0] * mg.num_replicas(), weights.dtype)
        self.mean_weight_tracker.update_state(weights)
        logs = ["loss", "accuracy", "mean_weight"]
        if corrupted is not None:
            corrupted = ops.cast(ops.reshape(corrupted, (-1,)), weights.dtype)
            self.clean_weight_tracker.update_state(
                weights, sample_weight=1.0 - corrupted)
            self.corrupted_weight_tracker.update_state(
                weights, sample_weight=corrupted)
            logs += ["clean_weight", "corrupted_weight"]
        if self.method in ("mwnet", "l2rw"):
            logs += ["meta_loss", "meta_accuracy"]
        results = {m.name: m.result() for m in self.metrics if m.name in logs}
        return self._logs_for_keras(self._meta_metrics_unknown_if_unused(results))

    def _meta_metrics_unknown_if_unused(self, results):
        """No meta step yet this epoch (the warm-up): the meta metrics are
        unknown (NaN), not 0."""
        for tracker in (self.meta_loss_tracker, self.meta_accuracy_tracker):
            if tracker.name in results:
                results[tracker.name] = ops.where(
                    tracker.count > 0, results[tracker.name], float("nan"))
        return results

    def get_metrics_result(self):
        # Keras reports these, not the last step's logs, at the end of an
        # epoch when the two have the same keys.
        results = self._meta_metrics_unknown_if_unused(
            dict(super().get_metrics_result()))
        return {name: float(value) if name in (
            self.meta_loss_tracker.name, self.meta_accuracy_tracker.name)
            else value for name, value in results.items()}

    def _record_meta_metrics(self, meta_loss, y_meta, meta_outputs):
        self.meta_loss_tracker.update_state(meta_loss * mg.num_replicas())
        self.meta_accuracy_tracker.update_state(y_meta, meta_outputs)
