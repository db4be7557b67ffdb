"""How a MetaWeightNet step learns its kind (mwnet_tf/fit_workarounds.py):
a traced function per kind of step chosen on the host (one step per call,
or several replicas), or tf.cond in the graph; the same training either way."""

import pytest

import mwnet_tf
from reference_math import batches as _batches
from reference_math import classifier as _classifier
from tiny_models import compiled as _compiled
from tiny_models import max_difference as _max_difference
from tiny_models import train as _train
from tiny_models import traces_of


def test_meta_interval_on_two_replicas_matches_one_device(
        two_replica_strategy):
    """Host-chosen meta steps (two replicas) = tf.cond (one device)."""
    x, y, x_meta, y_meta = _batches(21, n=16, n_meta=8)
    data = ((x, y), (x_meta, y_meta))
    single = _compiled(batch_norm=False, meta_interval=3)
    _train(single, data, 5)
    with two_replica_strategy.scope():
        mirrored = _compiled(batch_norm=False, meta_interval=3)
    _train(mirrored, data, 3)
    _train(mirrored, data, 2)  # A second fit goes on counting steps.
    assert _max_difference(single, mirrored) < 1e-5
    every_step = _compiled(batch_norm=False)
    _train(every_step, data, 5)
    assert _max_difference(single, every_step) > 1e-3


def test_real_step_weights_lookahead_on_two_replicas_and_in_tf_cond(
        two_replica_strategy):
    """Two replicas (host-chosen steps) and one device with tf.cond (two
    steps per call) train as one device with one step per call."""
    x, y, x_meta, y_meta = _batches(24, n=16, n_meta=8)
    data = ((x, y), (x_meta, y_meta))
    options = dict(batch_norm=False, meta_interval=2,
                   real_step_weights="lookahead")
    single = _compiled(**options)
    _train(single, data, 4)
    in_graph = _compiled(steps_per_execution=2, **options)
    in_graph_traces = traces_of(in_graph)
    _train(in_graph, data, 4)
    with two_replica_strategy.scope():
        mirrored = _compiled(**options)
    mirrored_traces = traces_of(mirrored)
    _train(mirrored, data, 4)
    # Both kinds of step in one function (tf.cond); on two replicas a
    # function per kind, each traced on both replicas.
    assert (len(in_graph_traces), len(mirrored_traces)) == (1, 4)
    assert int(mirrored.meta_optimizer.iterations.numpy()) == 2
    assert _max_difference(single, in_graph) < 1e-5
    assert _max_difference(single, mirrored) < 1e-5
    updated = _compiled(batch_norm=False, meta_interval=2)
    _train(updated, data, 4)
    assert _max_difference(single, updated) > 1e-4


def test_meta_interval_chosen_on_the_host_equals_tf_cond_on_one_device():
    """One step per call: two traced functions, the meta step's chosen on
    the host; several: tf.cond in the graph. The same training either way."""
    x, y, x_meta, y_meta = _batches(22, n=16, n_meta=8)
    data = ((x, y), (x_meta, y_meta))
    on_host = _compiled(meta_interval=3)
    in_graph = _compiled(meta_interval=3, steps_per_execution=2)
    on_host_traces, in_graph_traces = traces_of(on_host), traces_of(in_graph)
    _train(on_host, data, 6)
    _train(in_graph, data, 6)
    # Steps 0 and 3 take the meta step, the others not: a function for
    # each kind on the host, one holding both in the graph.
    assert (len(on_host_traces), len(in_graph_traces)) == (2, 1)
    assert int(on_host.meta_optimizer.iterations) == 2
    assert int(in_graph.meta_optimizer.iterations) == 2
    assert _max_difference(on_host, in_graph) < 1e-5


def test_warmup_on_two_replicas_matches_one_device(two_replica_strategy):
    x, y, x_meta, y_meta = _batches(24, n=16, n_meta=8)
    data = ((x, y), (x_meta, y_meta))
    single = _compiled(batch_norm=False, meta_warmup_steps=2,
                       steps_per_execution=2)  # tf.cond in the graph.
    _train(single, data, 4)
    with two_replica_strategy.scope():
        mirrored = _compiled(batch_norm=False, meta_warmup_steps=2)
    _train(mirrored, data, 4)
    assert int(mirrored.meta_optimizer.iterations.numpy()) == 2
    assert _max_difference(single, mirrored) < 1e-5


def test_meta_interval_on_two_replicas_needs_one_step_per_execution(
        two_replica_strategy):
    with two_replica_strategy.scope():
        model = mwnet_tf.MetaWeightNet(_classifier(), meta_interval=2)
        with pytest.raises(ValueError, match="steps_per_execution=1"):
            model.compile(steps_per_execution=2)
