"""`python -m mwnet_tf.audit`: the label audit's command (`__main__`).

The command itself is `mwnet_tf.runner.audit_command`, beside the training
command; the library it calls is `mwnet_tf.label_audit`. Importing this
package imports neither. `mwnet_tf.audit.label_audit` is that library's
former name, kept as an alias of it.
"""
