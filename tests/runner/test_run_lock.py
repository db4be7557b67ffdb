"""One run per work directory: the lock (mwnet_tf.runner.run_lock).

Two real processes racing for one directory: tests/runner/test_main.py."""

import os

import pytest
from tiny_runs import run_lock_held

from mwnet_tf.runner import main as main_lib
from mwnet_tf.runner import run_lock
from mwnet_tf.runner.run_config import RunConfig


def test_workdir_lock_is_exclusive_and_leaves_no_trace_on_bad_input(
        tmp_path):
    workdir = tmp_path / "new"
    with run_lock.exclusive_workdir(str(workdir)):
        assert run_lock_held(workdir)
        with pytest.raises(run_lock.WorkdirInUse,
                           match=f"in use by process {os.getpid()} on"):
            with run_lock.exclusive_workdir(str(workdir)):
                pass
    # Held and released with nothing written: the directory is gone again.
    assert not workdir.exists()
    # A user's directory that no run claims keeps exactly its files.
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    with run_lock.exclusive_workdir(str(existing)):
        pass
    assert os.listdir(existing) == ["notes.txt"]
    # A claimed one keeps its lock file, released.
    with run_lock.exclusive_workdir(str(existing)) as hold:
        (existing / "config.json").write_text("{}")
        hold.claimed = True
    assert sorted(os.listdir(existing)) == [".lock", "config.json",
                                            "notes.txt"]
    assert not run_lock_held(existing)
    # The lock file is not mistaken for another program's files.
    os.remove(existing / "notes.txt")
    assert main_lib.check_workdir(str(existing), RunConfig(), False) is True
