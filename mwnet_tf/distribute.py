"""The runner's tf.distribute strategies, and which worker owns the outputs.

`--distribute=multi_worker` trains synchronously over several machines with
`tf.distribute.MultiWorkerMirroredStrategy`; the cluster comes from the
`TF_CONFIG` environment variable of each worker process (the same variable
TensorFlow reads, so any launcher that sets it works). Every worker runs the
same command; only the chief writes the work directory.
"""

import json
import os

import tensorflow as tf

from mwnet_tf import keras_compat

STRATEGIES = ("none", "mirrored", "multi_worker")


def check_tf_config(environ=None):
    """Checks `TF_CONFIG` for a multi-worker run; returns the parsed dict.

    Raises:
        ValueError: `TF_CONFIG` is unset or not the JSON of a cluster with
            this process's task in it; the message says what to set.
    """
    environ = os.environ if environ is None else environ
    example = ('e.g. TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", '
               '"host2:12345"]}, "task": {"type": "worker", "index": 0}}\'')
    text = environ.get("TF_CONFIG", "")
    if not text:
        raise ValueError(
            "--distribute=multi_worker needs the cluster in the TF_CONFIG "
            f"environment variable of every worker; {example} (see README).")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON ({error}); {example}.")
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise ValueError(f"TF_CONFIG needs a \"cluster\" and a \"task\"; {example}.")
    task_type, index = task.get("type"), task.get("index")
    members = cluster.get(task_type)
    if (not isinstance(members, list) or not isinstance(index, int)
            or not 0 <= index < len(members)):
        raise ValueError(
            f"TF_CONFIG's task {task!r} is not in its cluster "
            f"{cluster!r}; give each worker its own \"index\" into the "
            "cluster's list of its \"type\".")
    return config


def make_strategy(name):
    """The strategy of `--distribute`: "none", "mirrored" or "multi_worker".

    "multi_worker" reads the cluster from `TF_CONFIG` (check it first with
    `check_tf_config`); creating it starts this worker's server and waits
    for the others.
    """
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "none":
        return tf.distribute.get_strategy()
    raise ValueError(f"distribute must be one of {', '.join(STRATEGIES)}; "
                     f"got {name!r}.")


def is_multi_worker(strategy):
    """Whether `strategy` spans several worker processes."""
    return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and keras_compat.in_multi_worker_mode(strategy))


def reads_input_per_worker(strategy):
    """Whether each worker of `strategy` can build only its share of every
    global batch (`strategy.distribute_datasets_from_function`): several
    workers, one replica each.

    With several replicas on a worker, Keras would count each of its
    per-replica batches as a step, so such a strategy keeps splitting whole
    global batches (`experimental_distribute_dataset`).
    """
    if not is_multi_worker(strategy):
        return False
    cluster = strategy.cluster_resolver.cluster_spec().as_dict()
    workers = sum(len(cluster.get(job, ())) for job in ("chief", "worker"))
    return strategy.num_replicas_in_sync == workers


def is_chief(strategy):
    """Whether this process writes the run's outputs.

    The chief is the "chief" task if the cluster has one, else worker 0 (the
    convention of TensorFlow's multi-worker training); a single process is
    always its own chief.
    """
    if not is_multi_worker(strategy):
        return True
    resolver = strategy.cluster_resolver
    return _is_chief(resolver.task_type, resolver.task_id,
                     resolver.cluster_spec().as_dict())


def is_chief_task(tf_config):
    """`is_chief` from a parsed `TF_CONFIG` (`check_tf_config`), before the
    strategy exists."""
    task = tf_config["task"]
    return _is_chief(task["type"], task["index"], tf_config["cluster"])


def _is_chief(task_type, task_id, cluster):
    if task_type == "chief":
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in cluster


def barrier(strategy):
    """Returns once every replica of `strategy` has reached this call.

    The runner's chief prepares the work directory (removing an earlier run's
    outputs with --overwrite) before any worker reads a backup from it.
    """
    def count_replicas():
        return tf.distribute.get_replica_context().all_reduce(
            tf.distribute.ReduceOp.SUM, tf.constant(1.0))

    replicas = tf.function(lambda: strategy.run(count_replicas))()
    return int(strategy.experimental_local_results(replicas)[0].numpy())
