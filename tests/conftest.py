"""Shared test set-up: quiet TensorFlow, two logical CPUs, one strategy."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# Split the CPU into two logical devices before anything initialises the
# runtime, so that MirroredStrategy tests can run two replicas on one CPU.
_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
except RuntimeError:  # The runtime was already initialised by a plugin.
    pass


@pytest.fixture(scope="session")
def two_replica_strategy():
    """One MirroredStrategy over two logical CPUs for the whole session.

    Two MirroredStrategy objects in one process can hand out clashing
    collective keys, so every test that needs replicas shares this one.
    """
    devices = tf.config.list_logical_devices("CPU")
    if len(devices) < 2:
        pytest.skip("the CPU could not be split into two logical devices "
                    "(the runtime was initialised before tests/conftest.py)")
    return tf.distribute.MirroredStrategy([d.name for d in devices[:2]])

# The runner's flags, as `python -m mwnet_tf.main` defines them before it
# parses its command line: tests parse them and call the runner directly.
from mwnet_tf.runner import experiment_flags  # noqa: E402

experiment_flags.define_flags()
