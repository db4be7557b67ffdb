"""The experiment runner behind `python -m mwnet_tf.main`.

`run_config` (RunConfig: a run's settings, typed), `experiment_flags` (the
command line that builds it), `experiment` (data, model and optimisers from
a RunConfig), `main` (the run: strategy, fit, report, audit), `callbacks`,
`run_lock` (one run per work directory) and `command_line` (what both
commands share). The library (`mwnet_tf`) never imports from here.
"""
