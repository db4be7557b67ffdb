"""Writing a file so that a reader never sees half of it."""

import json
import os
import secrets

# A staging file is named `.<target>` + this + random hex.
_STAGING = ".partial-"


def replace_atomically(path, write, mode="w"):
    """Writes `path` through a temporary file in its directory, then renames.

    `write(file)` writes the content to the open temporary file. A reader
    (another worker, a later run) sees the old file or the whole new one,
    never a partial one, and a failure or an interrupt leaves the old file
    as it was. The directory must exist.
    """
    directory, name = os.path.split(os.path.abspath(path))
    staging = os.path.join(directory,
                           f".{name}{_STAGING}{secrets.token_hex(4)}")
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


def staging_files(directory, names):
    """The staging files `replace_atomically` left in `directory` for targets
    named `names`: only a killed process leaves one (any other failure
    removes its own), so they are garbage once the directory's writer
    holds it alone."""
    prefixes = tuple(f".{name}{_STAGING}" for name in names)
    return sorted(os.path.join(directory, entry)
                  for entry in os.listdir(directory)
                  if entry.startswith(prefixes))
