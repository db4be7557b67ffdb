"""Writing a file so that a reader never sees half of it."""

import json
import os
import tempfile


def replace_atomically(path, write, mode="w"):
    """Writes `path` through a temporary file in its directory, then renames.

    `write(file)` writes the content to the open temporary file. A reader
    (another worker, a later run) sees the old file or the whole new one,
    never a partial one, and a failure or an interrupt leaves the old file
    as it was. The directory is created if it does not exist.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=".partial-", dir=directory)
    # mkstemp makes the file private (0600); give it the permissions an
    # ordinary new file gets, as the run's other outputs have.
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(staging, 0o666 & ~umask)
        with os.fdopen(handle, mode, newline=None if "b" in mode else "") \
                as file:
            write(file)
        os.replace(staging, path)
    except BaseException:
        if os.path.exists(staging):
            os.remove(staging)
        raise


def write_json(path, value, **dump_options):
    """Writes `value` as indented JSON, atomically (`replace_atomically`)."""
    replace_atomically(path, lambda file: json.dump(
        value, file, indent=2, **dump_options))
