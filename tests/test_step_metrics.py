"""What MetaWeightNet's step logs (mwnet_tf/step_metrics.py)."""

import numpy as np
import pytest

from reference_math import batches as _batches
from reference_math import per_example_ce as _per_example_ce
from tiny_models import compiled as _compiled


def test_corrupted_flag_feeds_clean_and_corrupted_weight_metrics():
    model = _compiled()
    x, y, x_meta, y_meta = _batches(10)
    corrupted = np.array([1, 0] * 6, "float32")
    # The logged weights are V after the meta step, on the losses at the
    # weights before the step.
    state = [v.value for v in model.classifier.non_trainable_variables]
    logits, _ = model.classifier.stateless_call(
        model.classifier.trainable_variables, state, x, training=True)
    losses = _per_example_ce(y, logits)
    logs = model.train_on_batch(((x, y, corrupted), (x_meta, y_meta)),
                                return_dict=True)
    weights = model.weighting_function(losses).numpy()
    assert logs["clean_weight"] == pytest.approx(weights[corrupted == 0].mean(),
                                                 rel=1e-3)
    assert logs["corrupted_weight"] == pytest.approx(
        weights[corrupted == 1].mean(), rel=1e-3)
    assert set(logs) >= {"loss", "meta_loss", "accuracy", "meta_accuracy",
                         "mean_weight"}
