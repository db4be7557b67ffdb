"""Writing a file so that a reader never sees half of it."""

import json
import os
import secrets


def replace_atomically(path, write, mode="w"):
    """Writes `path` through a temporary file in its directory, then renames.

    `write(file)` writes the content to the open temporary file. A reader
    (another worker, a later run) sees the old file or the whole new one,
    never a partial one, and a failure or an interrupt leaves the old file
    as it was. The directory must exist.
    """
    directory, name = os.path.split(os.path.abspath(path))
    staging = os.path.join(directory,
                           f".{name}.partial-{secrets.token_hex(4)}")
    # os.open with 0o666, not tempfile.mkstemp's private 0o600: the process's
    # umask applies as for any new file, without reading (so setting) it.
    handle = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
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
