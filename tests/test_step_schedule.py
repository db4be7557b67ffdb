"""Which kind of step runs when: StepSchedule against its definition."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from mwnet_tf.step_schedule import STEP_KINDS, StepKind, StepSchedule


def _by_definition(method, interval, warmup, correction, step):
    """The kind of step `step`, written out from the paper's schedule."""
    after_warmup = step - warmup
    meta = method == "mwnet" and after_warmup >= 0 and after_warmup % interval == 0
    unweighted = (method == "l2rw" or correction) and step < warmup
    return StepKind(meta, unweighted)


SCHEDULES = [(method, interval, warmup, correction)
             for method, interval, warmup, correction in itertools.product(
                 ("mwnet", "l2rw", "ce", "fixed"), (1, 3, 8), (0, 5),
                 (False, True))
             if not correction or method in ("mwnet", "fixed")]


@pytest.mark.parametrize("schedule", SCHEDULES, ids=str)
def test_each_step_is_of_the_kind_its_definition_says(schedule):
    plan = StepSchedule(*schedule)
    kinds = {plan.kind_at(step) for step in range(40)}
    for step in range(40):
        assert plan.kind_at(step) == _by_definition(*schedule, step)
    # Steps differ exactly when two steps of a run are of different kinds.
    assert plan.steps_differ == (len(kinds) > 1)
    assert kinds <= set(STEP_KINDS)


def test_a_step_number_tensor_gives_what_the_host_does():
    plan = StepSchedule("mwnet", meta_interval=3, meta_warmup_steps=5,
                        label_correction=True)
    steps = tf.range(40, dtype=tf.int64)
    np.testing.assert_array_equal(
        plan.meta_step_at(steps).numpy(),
        [plan.kind_at(step).meta_step for step in range(40)])
    np.testing.assert_array_equal(
        plan.warming_up_at(steps).numpy(),
        [plan.kind_at(step).warming_up for step in range(40)])
