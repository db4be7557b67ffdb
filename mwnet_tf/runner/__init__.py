"""The commands: `python -m mwnet_tf.main` (train) and `python -m
mwnet_tf.audit` (audit a finished run).

`run_config` (RunConfig: a run's settings, typed), `experiment_flags` (the
command line that builds it), `experiment` (data, model and optimisers from
a RunConfig), `main` (the run: strategy, fit, report, audit),
`audit_command` (the audit of a finished run's work directory), `callbacks`,
`run_lock` (one run per work directory) and `command_line` (what both
commands share). The runner knows a work directory's layout (config.json,
results.json, the saved models); the library (`mwnet_tf`, `mwnet_tf.data`,
`mwnet_tf.label_audit`) is given paths and never imports from here.
"""
