"""`python -m mwnet_tf.audit`: audits the labels of a finished run
(`mwnet_tf.runner.audit_command`)."""

from mwnet_tf.runner import command_line

# Quiet TensorFlow's C++ start-up log before it is imported (a level the
# user set wins).
command_line.quiet_tensorflow_logs()

from mwnet_tf.runner.audit_command import cli  # noqa: E402

cli()
