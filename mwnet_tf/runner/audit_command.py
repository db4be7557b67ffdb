r"""Audits the training labels of a finished run: which are likely wrong?

    python -m mwnet_tf.audit --workdir=runs/c10_u40

Rebuilds the run's training split from its config.json (same seed: the same
meta split and noisy labels), checks it against the run's results.json,
scores every example with the saved classifier and V, and writes audit.csv,
suspect_labels.png and `label_audit` in results.json (see
`mwnet_tf.label_audit`). `mwnet_tf.main` does the same at the end of a run
unless --noaudit. Pass --data_path / --data_dir / --cache_dir when the data
has moved since the run.
"""

import json
import os
import sys

from absl import app
from absl import flags

from mwnet_tf.runner import command_line

import keras  # noqa: E402

from mwnet_tf import data as data_lib  # noqa: E402
from mwnet_tf.runner import callbacks  # noqa: E402
from mwnet_tf.runner import experiment  # noqa: E402
from mwnet_tf import files  # noqa: E402
from mwnet_tf import label_audit  # noqa: E402
from mwnet_tf.runner.run_config import RunConfig  # noqa: E402
from mwnet_tf.weighting_net import load_weighting_net  # noqa: E402

FLAGS = flags.FLAGS


def define_flags():
    """The audit's flags; defined only when it runs as a program."""
    flags.DEFINE_string("workdir", None, "Work directory of a finished "
                        "`mwnet_tf.main` run.")
    flags.DEFINE_string("data_path", None, "Where the run's image folder, "
                        "archive or Clothing1M root is now (default: the "
                        "run's).")
    flags.DEFINE_string("data_dir", None, "Where the run's tensorflow-datasets "
                        "directory is now (default: the run's).")
    flags.DEFINE_string("cache_dir", None, "Cache for unpacked archives "
                        "(default: the run's).")
    flags.DEFINE_integer("gallery_size", label_audit.DEFAULT_GALLERY_SIZE,
                         "Images in suspect_labels.png.", lower_bound=1)
    flags.DEFINE_float(
        "relabel_confidence", label_audit.DEFAULT_RELABEL_CONFIDENCE,
        "Verdict relabel (a row of relabel.csv) where the suggested label "
        "differs from the given one with at least this probability; "
        "suspect where it differs with less.")
    flags.register_validator(
        "relabel_confidence", _valid_confidence,
        "--relabel_confidence must be in (0, 1], the least probability of "
        "a suggested label to change to.")
    flags.DEFINE_enum("verbose", "1", ["0", "1"], "1 = progress bar.")
    flags.mark_flag_as_required("workdir")


# Statistics of the rebuilt data that must equal the run's: the same
# examples with the same given labels.
_SAME_DATA = ("num_train", "train_counts_noisy", "realised_noise_rate",
              "meta_counts")


class AuditError(Exception):
    """Bad input found before the audit; its message says how to fix it."""


def _read_json(path):
    with open(path) as file:
        return json.load(file)


def load_run(workdir):
    """The config and results of a finished run; checks the saved models exist."""
    if not os.path.isdir(workdir):
        raise AuditError(f"--workdir={workdir} is not a directory; give the "
                         "work directory of a finished mwnet_tf.main run.")
    def require(name):
        if not os.path.isfile(os.path.join(workdir, name)):
            raise AuditError(
                f"{workdir} holds no {name}: it is not a finished run of "
                "mwnet_tf.main; rerun its command to finish it, then audit.")

    require("config.json")
    config = RunConfig.from_dict(_read_json(os.path.join(workdir,
                                                         "config.json")))
    # Before the other files: ce and l2rw runs save no V.
    if config.method not in label_audit.METHODS:
        raise AuditError(
            f"{workdir} was trained with --method={config.method}, which "
            "learns no weighting net; the audit ranks labels by V's weights, "
            f"so audit a run of --method={' or '.join(label_audit.METHODS)}.")
    for name in ("results.json", "classifier.keras", "weighting_net.keras"):
        require(name)
    return config, _read_json(os.path.join(workdir, "results.json"))


def rebuild_data(config, results, **overrides):
    """The run's data; fails if it is not what the run trained on."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    path_overrides = {k: overrides.get(k, getattr(config, f)) for k, f in
                      (("data_dir", "data_dir"), ("path", "data_path"))}
    try:
        data_lib.check_data_paths(config.dataset, download=config.download,
                                  **path_overrides)
        data = experiment.prepare_data(config, **overrides)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        hint = ("" if overrides else " If the data has moved since the "
                "run, pass --data_path or --data_dir.")
        raise AuditError(f"{error}{hint}") from error
    trained_on = results.get("data", {})
    changed = [key for key in _SAME_DATA
               if key in trained_on and data.statistics[key] != trained_on[key]]
    if changed:
        raise AuditError(
            f"The rebuilt training split differs from the one the run trained "
            f"on ({', '.join(changed)}): the data at "
            f"{path_overrides['path'] or path_overrides['data_dir']} is not "
            "the run's; pass --data_path or --data_dir of the run's data.")
    return data


def _valid_confidence(value):
    try:
        label_audit.check_relabel_confidence(value)
    except ValueError:
        return False
    return True


def audit_run(workdir, data_path=None, data_dir=None, cache_dir=None,
              gallery_size=label_audit.DEFAULT_GALLERY_SIZE, verbose=1,
              relabel_confidence=label_audit.DEFAULT_RELABEL_CONFIDENCE):
    """Audits a finished run in `workdir`; adds `label_audit` to its results.

    Args:
        workdir: Work directory of a finished `mwnet_tf.main` run of a method
            with a weighting net (mwnet, fixed).
        data_path, data_dir, cache_dir: Where the run's data is now, when it
            has moved; None keeps the run's.
        gallery_size: Images in suspect_labels.png.
        verbose: 1 shows a progress bar.
        relabel_confidence: The least probability of a suggested label for
            a "relabel" verdict.

    Returns:
        The audit summary (also in results.json under `label_audit`).

    Raises:
        AuditError: Not a finished run with a weighting net, or its data
            cannot be found or is not the data it trained on.
    """
    config, results = load_run(workdir)
    data = rebuild_data(config, results, path=data_path, data_dir=data_dir,
                        cache_dir=cache_dir)
    classifier = keras.saving.load_model(
        os.path.join(workdir, "classifier.keras"), compile=False)
    try:
        weighting_net = load_weighting_net(
            os.path.join(workdir, "weighting_net.keras"),
            saved_by_method=config.method)
    except ValueError as error:
        raise AuditError(str(error)) from error
    averaged_path = os.path.join(workdir, "averaged_classifier.keras")
    averaged = (keras.saving.load_model(averaged_path, compile=False)
                if os.path.isfile(averaged_path) else None)
    history_path = os.path.join(workdir, "history.csv")
    epoch_weights = (experiment.corrected_epoch_weights(
        callbacks.read_history(history_path), config.meta_warmup_steps,
        data.steps_per_epoch) if config.label_correction
        and os.path.isfile(history_path) else None)
    summary = label_audit.run_audit(workdir, classifier, weighting_net, data,
                                    gallery_size=gallery_size,
                                    verbose=verbose,
                                    averaged_classifier=averaged,
                                    relabel_confidence=relabel_confidence,
                                    label_correction=config.label_correction,
                                    epoch_mean_weights=epoch_weights)
    results["label_audit"] = summary
    files.write_json(os.path.join(workdir, "results.json"), results)
    return summary


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    try:
        audit_run(FLAGS.workdir, data_path=FLAGS.data_path,
                  data_dir=FLAGS.data_dir, cache_dir=FLAGS.cache_dir,
                  gallery_size=FLAGS.gallery_size, verbose=int(FLAGS.verbose),
                  relabel_confidence=FLAGS.relabel_confidence)
    except AuditError as error:
        sys.exit(f"mwnet_tf.audit: error: {error}")


def help_text():
    """What -h/--help prints: this module's docstring and its flags."""
    module = FLAGS.find_module_defining_flag("gallery_size")
    defined = FLAGS.flags_by_module_dict()[module]
    return (f"{(__doc__ or '').strip()}\n\n"
            f"{command_line.flags_help([('Flags', defined)])}\n\n"
            f"{command_line.LOGGING_HELP}\n")



def cli():
    """`python -m mwnet_tf.audit`."""
    define_flags()
    command_line.run(main, help_text)
