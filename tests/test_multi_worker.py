"""Multi-worker training: real worker processes on localhost ports.

Each test starts two workers with TF_CONFIG (mwnet_tf.testing.local_cluster), as a
launcher on two machines would, and checks them against one process on the
same global batches.
"""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import multi_worker_program as program
from tiny_runs import image_tree
from mwnet_tf.testing import local_cluster as cluster

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER_TIMEOUT = 300  # Seconds; the slowest run here takes about a minute.
QUIET = {"TF_CPP_MIN_LOG_LEVEL": "3"}


@pytest.fixture(scope="module")
def program_outputs(tmp_path_factory):
    """tests/multi_worker_program.py run once by two workers."""
    out = tmp_path_factory.mktemp("multi_worker_program")
    cluster.run_workers(
        [sys.executable, os.path.join(REPO, "tests", "multi_worker_program.py"),
         str(out)], str(out), timeout=WORKER_TIMEOUT, cwds=[REPO, REPO],
        env=QUIET)
    return out


def _load(out, worker, scenario, num_weights):
    saved = np.load(out / f"worker{worker}" / f"{scenario}.npz")
    weights = [saved[f"arr_{i}"] for i in range(num_weights)]
    return (weights, json.loads(str(saved["logs"])),
            json.loads(str(saved["log_shapes"])), saved["predictions"])


@pytest.mark.slow
@pytest.mark.parametrize("scenario", sorted(program.SCENARIOS))
def test_two_workers_match_one_process(scenario, program_outputs):
    """Same weights (to float32 round-off), logs, evaluation and
    predictions as one process.

    mwnet, l2rw and ce without BatchNorm; MW-Net with the meta step every
    other step (chosen on the host, not in tf.cond), also with the real
    step reusing the lookahead's gradient; MW-Net with synchronized
    BatchNorm (statistics of the global batch on every worker).
    """
    reference, reference_logs, reference_predictions = program.train(
        tf.distribute.get_strategy(), **program.SCENARIOS[scenario])
    for worker in (0, 1):
        weights, logs, shapes, predictions = _load(
            program_outputs, worker, scenario, len(reference))
        # All held-out examples, in order, from the global model.
        np.testing.assert_allclose(predictions, reference_predictions,
                                   rtol=1e-5, atol=1e-6)
        for expected, actual in zip(reference, weights):
            np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)
        # Keras's logs: scalars, reduced over both workers' replicas.
        assert set(logs) == set(reference_logs)
        assert all(shape == [] for shape in shapes.values()), shapes
        for name, value in reference_logs.items():
            np.testing.assert_allclose(logs[name], value, rtol=1e-5,
                                       err_msg=name)


@pytest.mark.slow
def test_meta_interval_scenario_skips_meta_steps(program_outputs):
    """The meta_interval=2 run is not a meta step every step in disguise."""
    arguments = dict(program.SCENARIOS["mwnet_meta_interval_2"],
                     meta_interval=1)
    every_step, _, _ = program.train(tf.distribute.get_strategy(),
                                     **arguments)
    weights, _, _, _ = _load(program_outputs, 0, "mwnet_meta_interval_2",
                             len(every_step))
    assert max(np.max(np.abs(a - b))
               for a, b in zip(weights, every_step)) > 1e-4


@pytest.mark.slow
def test_keras_still_fails_where_metaweightnet_works_around_it(
        program_outputs):
    """keras-team/keras#20585, as MetaWeightNet's workarounds assume it.

    If this fails after a Keras upgrade, Keras changed how `fit` runs under
    MultiWorkerMirroredStrategy: revisit `MetaWeightNet._maybe_symbolic_build`
    and `MetaWeightNet._logs_for_keras` (they may no longer be needed, or no
    longer be enough), then update this test.
    """
    with open(program_outputs / "worker0" / "upstream.json") as file:
        failures = json.load(file)
    assert failures["symbolic_build"] and "PerReplica" in \
        failures["symbolic_build"], failures
    assert failures["reduce"] and "Invalid reduction dimension 0" in \
        failures["reduce"], failures


# ------------------------------------------------ the runner, mwnet_tf.main


def _runner_args(workdir, tree, cache, *extra):
    # ResNet-20 rather than ResNet-8 (tests/tiny_runs.py's tiny runs): an
    # epoch must last long enough on a fast CPU to kill the workers in.
    return ["-m", "mwnet_tf.main",
            f"--flagfile={os.path.join(REPO, 'flags', 'base.cfg')}",
            f"--workdir={workdir}", "--dataset=folder", f"--data_path={tree}",
            f"--cache_dir={cache}", "--model=resnet20", "--batch_size=8",
            "--meta_batch_size=4", "--meta_per_class=2", "--vnet_hidden=8",
            "--epochs=2", "--lr_decay_epochs=1", "--verbose=2",
            "--deterministic", "--synchronized_batch_norm", *extra]


def _final_weights(workdir):
    return [w for name in ("classifier.keras", "weighting_net.keras")
            for w in keras.saving.load_model(
                os.path.join(workdir, name)).get_weights()]


@pytest.fixture(scope="module")
def runner_tree(tmp_path_factory):
    return image_tree(tmp_path_factory.mktemp("runner_tree"), 12, 20, seed=3)


@pytest.fixture(scope="module")
def two_worker_run(runner_tree, tmp_path_factory):
    """The runner on two workers, each in its own working directory.

    `--workdir=run` is relative, so a file the second worker (not the chief)
    wrote into its work directory would land in its own directory.
    """
    root = tmp_path_factory.mktemp("two_worker_run")
    cwds = [root / "chief", root / "worker1"]
    for cwd in cwds:
        cwd.mkdir()
    logs = cluster.run_workers(
        [sys.executable, *_runner_args("run", runner_tree, root / "cache",
                                       "--distribute=multi_worker")],
        str(root), cwds=[str(c) for c in cwds], env=QUIET,
        timeout=WORKER_TIMEOUT)
    (root / "chief.log").write_text(logs[0])
    return cwds


@pytest.mark.slow
def test_runner_on_two_workers_matches_one_process(two_worker_run,
                                                   runner_tree, tmp_path):
    """ResNet-20 with synchronized BatchNorm, MW-Net, two epochs; each
    worker read only its half of every global batch."""
    chief_log = (two_worker_run[0].parent / "chief.log").read_text()
    assert "each of 2 workers reads its 1/2 of every global batch" in chief_log
    single = tmp_path / "single"
    subprocess.run([sys.executable, *_runner_args(
        single, runner_tree, tmp_path / "cache")], cwd=REPO, check=True,
        capture_output=True, timeout=WORKER_TIMEOUT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    chief_run = two_worker_run[0] / "run"
    # Round-off only, but of ten SGD steps (lr 0.1) through 19 BatchNorm
    # layers whose statistics are sums of two workers' partial sums: a few
    # weights differ by ~2e-5 (2e-4 relative). Per-replica statistics would
    # differ by orders of magnitude more (tests/zoo, two-replica ResNet-20).
    for expected, actual in zip(_final_weights(single),
                                _final_weights(chief_run)):
        np.testing.assert_allclose(actual, expected, rtol=1e-3, atol=1e-4)
    with open(chief_run / "results.json") as file:
        results = json.load(file)
    with open(single / "results.json") as file:
        expected_results = json.load(file)
    assert results["final_test_accuracy"] == pytest.approx(
        expected_results["final_test_accuracy"])
    assert results["epochs_completed"] == 2


@pytest.mark.slow
def test_only_the_chief_writes_the_work_directory(two_worker_run):
    chief, other = two_worker_run
    assert sorted(os.listdir(chief / "run")) == sorted([
        ".lock", "audit.csv", "backup", "classifier.keras", "config.json",
        "history.csv", "labels.csv", "relabel.csv", "results.json",
        "suspect_labels.png",
        "tensorboard",
        "weighting_function.png", "weighting_net.keras"])
    assert os.listdir(other) == [], "a worker that is not the chief wrote"


@pytest.mark.slow
def test_killed_workers_resume_to_the_uninterrupted_weights(
        two_worker_run, runner_tree, tmp_path):
    """Kill both workers mid-epoch 2, rerun both: the same final weights."""
    command = [sys.executable, *_runner_args(
        tmp_path / "run", runner_tree, tmp_path / "cache",
        "--distribute=multi_worker")]
    workers = cluster.Workers(command, str(tmp_path), cwds=[REPO, REPO],
                              env=QUIET)
    try:
        deadline = time.monotonic() + WORKER_TIMEOUT
        while "Epoch 2/2" not in workers.logs()[0]:
            assert time.monotonic() < deadline, "epoch 2 never started"
            assert workers.processes[0].poll() is None, workers.logs()[0]
            time.sleep(0.2)
        time.sleep(1.0)  # Some steps into the epoch.
    finally:
        for process in workers.processes:
            process.send_signal(signal.SIGKILL)
        workers.kill()
    history = tmp_path / "run" / "history.csv"
    assert len(open(history).read().splitlines()) == 2, (
        "the kill came after the second epoch had finished")
    assert not (tmp_path / "run" / "results.json").exists()

    logs = cluster.run_workers(command, str(tmp_path), timeout=WORKER_TIMEOUT,
                               cwds=[REPO, REPO], env=QUIET)
    assert "Resuming" in logs[0]
    for expected, actual in zip(_final_weights(two_worker_run[0] / "run"),
                                _final_weights(tmp_path / "run")):
        np.testing.assert_array_equal(actual, expected)


# ------------------------------------------------------------ the helpers


def test_workers_that_hang_are_killed_at_the_timeout(tmp_path):
    workers = cluster.Workers(
        [sys.executable, "-c", "import time; time.sleep(600)"], str(tmp_path))
    with pytest.raises(AssertionError, match="still running after 1 s"):
        workers.wait(timeout=1)
    assert all(p.poll() is not None for p in workers.processes)


def test_each_worker_gets_its_own_task_in_one_cluster(tmp_path):
    cluster.run_workers(
        [sys.executable, "-c", "import os; print(os.environ['TF_CONFIG'])"],
        str(tmp_path), num_workers=3, timeout=60)
    configs = [json.loads(open(tmp_path / f"worker{i}.log").read())
               for i in range(3)]
    assert [c["task"] for c in configs] == [
        {"type": "worker", "index": i} for i in range(3)]
    addresses = configs[0]["cluster"]["worker"]
    assert len(set(addresses)) == 3
    assert all(c["cluster"] == configs[0]["cluster"] for c in configs)


class _FakeResolver:
    def __init__(self, task_type, task_id, cluster_spec):
        self.task_type, self.task_id = task_type, task_id
        self._spec = cluster_spec

    def cluster_spec(self):
        return tf.train.ClusterSpec(self._spec)


@pytest.mark.parametrize("task_type, task_id, has_chief_task, chief", [
    ("worker", 0, False, True),   # No chief task: worker 0 writes.
    ("worker", 1, False, False),
    ("worker", 0, True, False),   # A chief task: it writes, not worker 0.
    ("chief", 0, True, True),
])
def test_the_chief_is_the_chief_task_else_worker_0(
        task_type, task_id, has_chief_task, chief, monkeypatch):
    from mwnet_tf import distribute as distribute_lib
    spec = {"worker": ["a:1", "b:1"]}
    if has_chief_task:
        spec["chief"] = ["c:1"]

    class FakeStrategy:
        cluster_resolver = _FakeResolver(task_type, task_id, spec)

    monkeypatch.setattr(distribute_lib, "is_multi_worker", lambda s: True)
    assert distribute_lib.is_chief(FakeStrategy()) is chief
    monkeypatch.undo()
    # The same rule from TF_CONFIG, before the strategy exists (the runner
    # decides there which worker holds the work directory's lock).
    tf_config = {"cluster": spec,
                 "task": {"type": task_type, "index": task_id}}
    assert distribute_lib.is_chief_task(tf_config) is chief
    # One process, no cluster: always its own chief.
    assert distribute_lib.is_chief(tf.distribute.get_strategy())
