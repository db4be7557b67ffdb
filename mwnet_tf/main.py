"""`python -m mwnet_tf.main` (and the `mwnet-tf` console script): runs one
experiment; the runner itself is `mwnet_tf.runner.main`."""

from mwnet_tf.runner import command_line

# TensorFlow reads its C++ log level once, when it is first imported: quiet
# it for the command (a level the user set wins), never for an import.
if command_line.started_as_program(__name__, console_script="mwnet-tf"):
    command_line.quiet_tensorflow_logs()

from mwnet_tf.runner.main import cli  # noqa: E402

if __name__ == "__main__":
    cli()
