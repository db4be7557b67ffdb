"""Runs one command as several TensorFlow workers on this machine.

Each worker process gets the `TF_CONFIG` that names the whole cluster (free
localhost ports) and its own index, as a launcher on N machines would: the
multi-worker tests and `bench/distributed.py` use it to run real workers on
one machine. Output goes to log files, never to pipes: a worker blocked on a
full pipe would stall every other worker in the next collective.

    workers = Workers([sys.executable, "-m", "mwnet_tf.main", ...], log_dir)
    logs = workers.wait(timeout=600)
"""

import json
import os
import socket
import subprocess
import time



def free_ports(count):
    """`count` distinct localhost ports that were free a moment ago."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("localhost", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def tf_config(ports, index):
    """The TF_CONFIG of worker `index` of a cluster on localhost `ports`."""
    return json.dumps({
        "cluster": {"worker": [f"localhost:{port}" for port in ports]},
        "task": {"type": "worker", "index": index}})


class Workers:
    """N worker processes of one command; `wait` or `kill` them.

    Args:
        command: The argument list every worker runs.
        log_dir: Where `worker<i>.log` (stdout and stderr) go.
        cwds: The working directory of each worker (default: this one's).
        num_workers: How many workers.
        env: Environment variables to set for every worker, besides
            `TF_CONFIG`.
    """

    def __init__(self, command, log_dir, cwds=None, num_workers=2, env=None):
        ports = free_ports(num_workers)
        cwds = cwds or [os.getcwd()] * num_workers
        self.log_paths = [os.path.join(log_dir, f"worker{i}.log")
                          for i in range(num_workers)]
        self.processes = []
        for index, (cwd, log_path) in enumerate(zip(cwds, self.log_paths)):
            worker_env = dict(os.environ, **(env or {}),
                              TF_CONFIG=tf_config(ports, index),
                              PYTHONUNBUFFERED="1")
            with open(log_path, "w") as log:
                self.processes.append(subprocess.Popen(
                    command, cwd=cwd, env=worker_env, stdout=log,
                    stderr=subprocess.STDOUT))

    def logs(self):
        """Each worker's output so far."""
        texts = []
        for path in self.log_paths:
            with open(path, errors="replace") as file:
                texts.append(file.read())
        return texts

    def wait(self, timeout):
        """Waits for every worker; raises, with their logs, if any failed.

        On timeout every worker is killed first, so no test leaves a worker
        behind waiting for its peers.
        """
        deadline = time.monotonic() + timeout
        try:
            for process in self.processes:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"workers still running after {timeout} s; logs:\n"
                + self._tails()) from None
        codes = [process.returncode for process in self.processes]
        if any(codes):
            raise AssertionError(f"worker exit codes {codes}; logs:\n"
                                 + self._tails())
        return self.logs()

    def kill(self):
        for process in self.processes:
            if process.poll() is None:
                process.kill()
        for process in self.processes:
            process.wait()

    def _tails(self, lines=30):
        return "\n".join(f"--- worker {i}\n" + "\n".join(
            text.splitlines()[-lines:]) for i, text in enumerate(self.logs()))


def run_workers(command, log_dir, timeout=300, **kwargs):
    """Runs `command` as workers to completion; returns their logs."""
    return Workers(command, log_dir, **kwargs).wait(timeout)
