"""One run at a time per work directory.

Two processes on one work directory (a command started twice, a scheduler
retrying a job that is still running) would interleave `history.csv`, write
the same backup and lose both runs. The runner holds an exclusive `flock` on
`<workdir>/.lock` while it runs. The operating system releases it when the
process ends, however it ends, so a killed run never leaves the directory
stuck; a second run finds it held and stops before doing anything.

In a multi-worker run only the chief, which alone writes the directory,
holds the lock.
"""

import contextlib
import fcntl
import os
import socket

LOCK_NAME = ".lock"


class WorkdirInUse(RuntimeError):
    """Another live process holds the work directory."""


def _holder(path):
    try:
        with open(path) as file:
            return file.read().strip() or "another process"
    except OSError:
        return "another process"


@contextlib.contextmanager
def exclusive_workdir(workdir):
    """Holds `workdir` for this process; creates it if it does not exist.

    If it had to create the directory and the run leaves nothing but the lock
    in it (it stopped on bad input), both are removed again.

    Raises:
        WorkdirInUse: Another live process holds the directory.
    """
    created = not os.path.exists(workdir)
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, LOCK_NAME)
    existed = os.path.exists(path)
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise WorkdirInUse(
            f"--workdir={workdir} is in use by {_holder(path)}; wait for that "
            "run to end (rerun this command then to resume it) or choose "
            "another --workdir.") from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        yield
    finally:
        if not existed and set(os.listdir(workdir)) == {LOCK_NAME}:
            # Nothing of a run was written: leave the directory as it was.
            os.remove(path)
            if created:
                os.rmdir(workdir)
        handle.close()  # Releases the lock.
