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


class WorkdirLockError(RuntimeError):
    """The work directory cannot be held; the message says why."""


class WorkdirInUse(WorkdirLockError):
    """Another live process holds the work directory."""


def _holder(path):
    try:
        with open(path) as file:
            return file.read().strip() or "another process"
    except OSError:
        return "another process"


class Hold:
    """A held work directory; `claimed` once the run has written to it."""

    def __init__(self):
        self.claimed = False


@contextlib.contextmanager
def exclusive_workdir(workdir):
    """Holds `workdir` for this process; creates it if it does not exist.

    Yields a `Hold`: set its `claimed` once the run has made the directory
    its own. A lock file made for a run that never claimed the directory
    (it stopped on bad input) is removed again, and so is the directory if
    this call created it and it is empty: nothing of the user's changes.

    Raises:
        WorkdirInUse: Another live process holds the directory.
        WorkdirLockError: Its filesystem cannot lock files.
    """
    created = not os.path.exists(workdir)
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, LOCK_NAME)
    existed = os.path.exists(path)
    hold = Hold()
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise WorkdirInUse(
            f"--workdir={workdir} is in use by {_holder(path)}; wait for that "
            "run to end (rerun this command then to resume it) or choose "
            "another --workdir.") from None
    except OSError as error:  # A filesystem without flock (some NFS, FUSE).
        handle.close()
        raise WorkdirLockError(
            f"--workdir={workdir} cannot be locked ({error.strerror}); its "
            "filesystem does not support flock, so two runs there could "
            "destroy each other. Use a --workdir on a local or "
            "lock-capable filesystem.") from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        yield hold
    finally:
        try:
            if not existed and not hold.claimed:
                os.remove(path)
                if created and not os.listdir(workdir):
                    os.rmdir(workdir)
        except OSError:
            pass  # Tidying only: never hide the error that ended the run.
        finally:
            handle.close()  # Releases the lock.
