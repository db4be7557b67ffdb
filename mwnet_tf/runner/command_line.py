"""What the command-line programs share: a quiet start and their --help.

Imports neither TensorFlow nor Keras: `quiet_tensorflow_logs` must run
before TensorFlow is first imported.
"""

import os
import re
import sys

from absl import app
from absl import flags

# TensorFlow's C++ log level for the programs, unless the user sets one:
# 3 hides its INFO, WARNING and ERROR lines. Measured with TensorFlow 2.21 on
# a CPU machine, 1 hides the INFO line about CPU instructions, and only 3
# hides `failed call to cuInit: ... UNKNOWN ERROR (303)`, an ERROR that
# every start without a GPU logs. TF_CPP_MIN_LOG_LEVEL=0 shows everything.
TF_CPP_MIN_LOG_LEVEL = "3"

# What asks for help, as `-h`, `--help`, `-help`, `--help=true`, ...
_HELP_NAMES = ("h", "?", "help", "helpshort")


def started_as_program(module_name, console_script=None):
    """Whether a module is starting as a program, not imported as a library.

    Args:
        module_name: The module's `__name__`: `__main__` under `python -m`.
        console_script: The name of its console script, if it has one (the
            script imports the module; its path is `sys.argv[0]`).
    """
    if module_name == "__main__":
        return True
    script = os.path.basename(sys.argv[0]) if sys.argv else ""
    # pip's launchers on Windows: mwnet-tf.exe, mwnet-tf-script.py.
    script = re.sub(r"(-script\.pyw?|\.exe)$", "", script)
    return console_script is not None and script == console_script


# The last lines of every program's --help.
LOGGING_HELP = (
    f"TensorFlow's C++ log is quiet (TF_CPP_MIN_LOG_LEVEL="
    f"{TF_CPP_MIN_LOG_LEVEL} unless set);\n"
    "TF_CPP_MIN_LOG_LEVEL=0 shows all of it. --helpfull also lists "
    "absl's flags.")


def quiet_tensorflow_logs():
    """Quiets TensorFlow's C++ start-up log unless the user chose a level.

    TensorFlow reads TF_CPP_MIN_LOG_LEVEL once, when it is imported, so this
    must run before the first `import tensorflow` (or keras).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", TF_CPP_MIN_LOG_LEVEL)


def wants_help(argv):
    """Whether the command line asks for short help (-h, -?, --help, --helpshort)."""
    for arg in argv[1:]:
        if arg == "--":
            break
        if not arg.startswith("-"):
            continue
        name, _, value = arg.lstrip("-").partition("=")
        if name in _HELP_NAMES and value.lower() in ("", "true", "t", "1"):
            return True
    return False


def run(main, help_text):
    """`absl.app.run(main)`, except that -h/--help prints `help_text()`, exits 0.

    absl's own --help lists only the flags of the `__main__` module and exits
    with status 1; --helpfull (every flag, absl's and TensorFlow's included)
    is left to absl.
    """
    if wants_help(sys.argv):
        try:
            sys.stdout.write(help_text())
            sys.stdout.flush()
        except BrokenPipeError:  # `--help | head`
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    app.run(main)


def flag_help(flag, indent="  "):
    """One flag's help, as absl's --helpfull renders it."""
    name = f"--[no]{flag.name}" if flag.boolean else f"--{flag.name}"
    text = flags.text_wrap(f"{name}: {flag.help}", indent=indent + "  ",
                           firstline_indent=indent)
    details = []
    if flag.default_as_str:
        details.append(f"default: {flag.default_as_str}")
    if flag.parser.syntactic_help:
        details.append(flag.parser.syntactic_help)
    if details:
        text += "\n" + flags.text_wrap(f"({'; '.join(details)})",
                                       indent=indent + "  ")
    return text


def flags_help(groups):
    """Help for `(title, [flag, ...])` groups, one block per group."""
    blocks = []
    for title, group in groups:
        blocks.append(f"{title}:\n"
                      + "\n".join(flag_help(flag) for flag in group))
    return "\n\n".join(blocks)


def find_flags_dir():
    """The experiment flagfiles' directory, as `(shown, path)`, or None.

    `flags/` of the working directory (where the commands are run, since
    flagfiles include flags/base.cfg by a relative path), else of the
    checkout this package was installed from (editable installs). A package
    installed from a wheel ships no flagfiles.
    """
    here = os.path.join(os.getcwd(), "flags")
    repository = os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "flags")
    for shown, path in (("flags", here), (repository, repository)):
        if os.path.isfile(os.path.join(path, "base.cfg")):
            return shown, path
    return None


def describe_flagfile(path, max_lines=20):
    """A flagfile's first `##` comment line that is not its command.

    The command line (`## python -m mwnet_tf.main --flagfile=...`) adds the
    flags it names beyond the flagfile, e.g. Clothing1M's --data_path.
    """
    name = os.path.basename(path)
    extra = ""
    try:
        with open(path) as file:
            lines = [next(file, "") for _ in range(max_lines)]
    except OSError:
        return ""
    for line in lines:
        if not line.startswith("##"):
            continue
        text = line[2:].strip()
        command = re.match(r"python -m \S+ --flagfile=\S*" + re.escape(name)
                           + r"(.*)$", text)
        if command:
            extra = command.group(1).strip()
            continue
        if text:
            # A sentence that goes on in the next line.
            text = re.sub(r"[,;:]$", " ...", text)
            return f"{text} (with {extra})" if extra else text
    return f"(with {extra})" if extra else ""


def _natural_key(name):
    return [int(part) if part.isdigit() else part
            for part in re.split(r"(\d+)", name)]


def flagfiles_help(first=("quickstart.cfg",), skip=("base.cfg",)):
    """The flagfiles to start from, one line each; "" where there are none."""
    found = find_flags_dir()
    if found is None:
        return ""
    shown, path = found
    names = sorted((name for name in os.listdir(path)
                    if name.endswith(".cfg") and name not in skip),
                   key=lambda name: (name not in first, _natural_key(name)))
    if not names:
        return ""
    width = max(len(name) for name in names)
    lines = [f"Flagfiles to start from, in {shown}/ (each includes "
             "flags/base.cfg, the paper's shared settings):"]
    lines += [f"  {name:<{width}}  {describe_flagfile(os.path.join(path, name))}"
              .rstrip() for name in names]
    if shown != "flags":
        lines.append(f"Run from {os.path.dirname(path)}: the flagfiles include "
                     "flags/base.cfg by a relative path.")
    return "\n".join(lines)
