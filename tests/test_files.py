"""mwnet_tf.files: a file is replaced whole or not at all."""

import json
import os
import stat
import subprocess
import sys

import pytest

from mwnet_tf import files


def test_a_failed_write_keeps_the_old_file_and_leaves_no_partial(tmp_path):
    path = tmp_path / "results.json"
    files.write_json(path, {"accuracy": 0.5})

    def fail_halfway(file):
        file.write('{"accuracy": ')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        files.replace_atomically(path, fail_halfway)
    assert json.loads(path.read_text()) == {"accuracy": 0.5}
    assert os.listdir(tmp_path) == ["results.json"]


def test_the_new_file_is_whole_and_ordinary(tmp_path):
    path = tmp_path / "cache.bin"
    files.replace_atomically(path, lambda file: file.write(b"\x00\x01"),
                             mode="wb")
    assert path.read_bytes() == b"\x00\x01"
    umask = os.umask(0)
    os.umask(umask)
    # Not mkstemp's private 0600: what open() would have given.
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    files.write_json(path, {"b": 1, "a": 2}, sort_keys=True)
    assert path.read_text() == '{\n  "a": 2,\n  "b": 1\n}'


def test_staging_files_are_only_those_of_the_named_targets(tmp_path):
    # A process killed halfway through a write: no handler runs (os._exit,
    # as SIGKILL), so its staging file stays.
    subprocess.run([sys.executable, "-c", (
        "import os, sys\n"
        "from mwnet_tf import files\n"
        "def killed_halfway(file):\n"
        "    file.write('{')\n"
        "    file.flush()\n"
        "    os._exit(0)\n"
        "files.replace_atomically(sys.argv[1], killed_halfway)\n"),
        str(tmp_path / "results.json")], check=True)
    (tmp_path / "results.json.partial-0").write_text("not staging")
    (tmp_path / ".history.csv.partial-1").write_text("another target")
    left = files.staging_files(tmp_path, ["results.json"])
    assert len(left) == 1
    assert os.path.basename(left[0]).startswith(".results.json.partial-")
    with open(left[0]) as file:
        assert file.read() == "{"
