r"""Runs one experiment: strategy -> data -> model -> compile -> fit -> report.

    python -m mwnet_tf.main --flagfile=flags/quickstart.cfg
    python -m mwnet_tf.main --flagfile=flags/cifar100_uniform40.cfg \
        --workdir=runs/c100_u40

This is the only module that reads flags. Rerunning the same command resumes
from the work directory's last completed epoch.
"""

import contextlib
import json
import os
import shutil
import sys

from absl import app
from absl import flags
from absl import logging

from mwnet_tf.runner import command_line

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import mwnet_tf  # noqa: E402
import zoo  # noqa: E402
from mwnet_tf.runner import callbacks as callbacks_lib  # noqa: E402
from mwnet_tf import data as data_lib  # noqa: E402
from mwnet_tf import distribute as distribute_lib  # noqa: E402
from mwnet_tf.runner import experiment  # noqa: E402
from mwnet_tf.runner import experiment_flags  # noqa: E402
from mwnet_tf import label_audit  # noqa: E402
from mwnet_tf import precision  # noqa: E402
from mwnet_tf import pseudo_clean  # noqa: E402
from mwnet_tf import files  # noqa: E402
from mwnet_tf.runner import run_lock  # noqa: E402
from mwnet_tf.runner.run_config import RunConfig  # noqa: E402

FLAGS = flags.FLAGS
# What the runner writes into a work directory; --overwrite removes these only.
_OUTPUTS = ("config.json", "backup", "tensorboard", "history.csv",
            "results.json", "classifier.keras", "averaged_classifier.keras",
            "weighting_net.keras",
            "weighting_function.png") + label_audit.OUTPUTS


class ExperimentError(Exception):
    """Bad input found before training; its message says how to fix it."""


def resolved_config():
    """The run the parsed flags describe (the one place flags are read)."""
    return RunConfig.from_flags(FLAGS)


def check_workdir(workdir, config, overwrite):
    """Decides whether a work directory can take this run; writes nothing.

    Returns:
        True when the directory holds this very run (same flags): resume it.

    Raises:
        ExperimentError: the directory holds a run with other flags (and not
            `overwrite`), or files that are not a run of this program.
    """
    config_path = os.path.join(workdir, "config.json")
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ExperimentError(
            f"--workdir={workdir} is a file, not a directory; choose a new "
            "or empty directory.")
    if not (os.path.isdir(workdir)
            and set(os.listdir(workdir)) - {run_lock.LOCK_NAME}
            - {os.path.basename(path) for path in
               files.staging_files(workdir, _OUTPUTS)}):
        return False
    if not os.path.exists(config_path):
        raise ExperimentError(
            f"--workdir={workdir} is not empty and holds no config.json, so it "
            "is not a run of mwnet_tf.main; choose a new or empty directory.")
    with open(config_path) as file:
        saved = json.load(file)
    try:
        # A setting added since that run was made: the run used its default.
        previous = RunConfig.from_dict(saved).computed()
    except (ValueError, TypeError, AttributeError) as error:
        raise ExperimentError(
            f"--workdir={workdir} holds a config.json this version cannot "
            f"read ({error}); use another --workdir.") from error
    if previous == config.computed():
        return True
    if not overwrite:
        before, now = previous.to_dict(), config.computed().to_dict()
        changed = sorted(k for k in now if before[k] != now[k])
        raise ExperimentError(
            f"--workdir={workdir} holds a run made with other flags "
            f"({', '.join('--' + k for k in changed)}); use another --workdir, "
            "or pass --overwrite to replace that run.")
    return False


def claim_workdir(workdir, config, resuming):
    """Makes the work directory this run's, once all input has been checked.

    A new run first removes the runner's own outputs of an earlier run (only
    when `check_workdir` allowed it), never other files. Half-written
    outputs a killed run left (`files.replace_atomically`'s staging files)
    go either way: the directory is held, so no one is writing them.
    """
    if os.path.isdir(workdir):
        for path in files.staging_files(workdir, _OUTPUTS):
            os.remove(path)
    if resuming:
        return
    for name in _OUTPUTS:
        path = os.path.join(workdir, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
    os.makedirs(workdir, exist_ok=True)
    # Written whole, then renamed: the other workers of a multi-worker run
    # read it (check_workdir) while the chief may be writing it.
    files.write_json(os.path.join(workdir, "config.json"), config.to_dict(),
                     sort_keys=True)


def check_paths(config):
    """Checks every path setting (and TF_CONFIG), and that bfloat16 is native
    where asked for, before anything expensive starts."""
    if config.mixed_bfloat16:
        try:
            precision.check_bfloat16()
        except ValueError as error:
            raise ExperimentError(str(error)) from error
    if config.distribute == "multi_worker":
        try:
            distribute_lib.check_tf_config()
        except ValueError as error:
            raise ExperimentError(str(error)) from error
    try:
        data_lib.check_data_paths(config.dataset, data_dir=config.data_dir,
                                  path=config.data_path,
                                  download=config.download)
    except (ValueError, FileNotFoundError) as error:
        raise ExperimentError(str(error)) from error
    if config.labels_file:
        _check_labels_file(config)
    # The zoo's check, here before the data (the model is built after it).
    try:
        zoo.resnet50.check_weights(config.pretrained_weights)
    except FileNotFoundError as error:
        raise ExperimentError(str(error).replace(
            "weights=", "--pretrained_weights=")) from error
    if config.weighting_net:
        if not os.path.isfile(config.weighting_net):
            raise ExperimentError(
                f"--weighting_net={config.weighting_net} is not a file; give "
                "the weighting_net.keras of a finished run.")
        try:  # A small file: loading it is the check.
            experiment.check_loaded_weighting_net(
                config,
                experiment.load_run_weighting_net(config.weighting_net))
        except ValueError as error:
            raise ExperimentError(f"--weighting_net: {error}") from error


def test_epochs(epochs, test_every):
    """The epochs (1-based, as `fit`'s `validation_freq` counts) after which
    the test set is evaluated: every `test_every`-th and the last."""
    return sorted(set(range(test_every, epochs + 1, test_every)) | {epochs})


def summarise(history, test_logs, statistics, steps_per_epoch):
    # With --test_every > 1 only some epochs have a test accuracy; "best" and
    # "at best meta accuracy" are taken over those.
    tested = [row for row in history
              if np.isfinite(row.get("val_accuracy", np.nan))]
    best_meta = max(tested, key=lambda row: row.get("meta_eval_accuracy", 0.0))
    epoch_seconds = [row["epoch_seconds"] for row in history
                     if "epoch_seconds" in row]
    median_epoch = float(np.median(epoch_seconds)) if epoch_seconds else None
    summary = {
        "final_test_accuracy": test_logs["accuracy"],
        "final_test_loss": test_logs["loss"],
        "best_test_accuracy": max(row["val_accuracy"] for row in tested),
        "best_meta_epoch": int(best_meta["epoch"]) + 1,
        "test_accuracy_at_best_meta_accuracy": best_meta["val_accuracy"],
        "best_meta_accuracy": best_meta.get("meta_eval_accuracy"),
        "final_clean_weight": history[-1].get("clean_weight"),
        "final_corrupted_weight": history[-1].get("corrupted_weight"),
        "epochs_completed": len(history),
        "seconds_per_epoch": median_epoch,
        "seconds_per_step": (median_epoch / steps_per_epoch
                             if median_epoch else None),
        "data": statistics,
    }
    if statistics.get("meta_source") == "pseudo_clean":
        # Chosen for their low loss by the model itself, with their given
        # labels: a high accuracy there says nothing of the test set.
        summary["best_meta_note"] = (
            "The meta set is the model's own choice of low-loss examples "
            "with their given labels; its accuracy does not select a model. "
            "Use final_test_accuracy.")
    return summary


def _check_labels_file(config):
    """Reads and checks --labels_file (cheap: no image), and refuses the
    run's own output as its input, which the run would replace."""
    outputs = {os.path.realpath(os.path.join(config.workdir or "", name))
               for name in _OUTPUTS}
    if os.path.realpath(config.labels_file) in outputs:
        raise ExperimentError(
            f"--labels_file={config.labels_file} is an output of "
            f"--workdir={config.workdir}, which this run replaces; copy it "
            "out of the work directory or use another --workdir.")
    try:
        data_lib.load_label_table(
            config.dataset, config.noise, config.labels_file,
            config.labels_key, config.clean_labels_key,
            config.label_classes or None)
    except (ValueError, FileNotFoundError) as error:
        raise ExperimentError(str(error)) from error


def run(config=None):
    """Runs an experiment.

    Args:
        config: The `RunConfig`; None reads it from the parsed flags.

    Returns:
        The results dict; None on a worker other than the chief.
    """
    if config is None:
        config = resolved_config()
    if not config.workdir:
        raise ExperimentError("No work directory: give --workdir.")
    workdir = config.workdir
    check_paths(config)
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        check_workdir(workdir, config, config.overwrite)  # Says why, in one line.
    # The chief alone writes the work directory, so it alone holds it; it
    # is known from TF_CONFIG before the strategy waits for every worker.
    # (A refused chief leaves the other workers waiting for it: README.)
    writes_workdir = (config.distribute != "multi_worker"
                      or distribute_lib.is_chief_task(
                          distribute_lib.check_tf_config()))
    with contextlib.ExitStack() as stack:
        hold = run_lock.Hold()  # What a worker that writes nothing holds.
        if writes_workdir:
            try:
                hold = stack.enter_context(
                    run_lock.exclusive_workdir(workdir))
            except run_lock.WorkdirLockError as error:
                raise ExperimentError(str(error)) from error
        # Only once the directory is held: what it holds cannot change
        # between this check and the run's first write.
        resuming = check_workdir(workdir, config, config.overwrite)
        return _train_and_report(workdir, config, resuming, hold)


def _one_line(error):
    """`error` as one line: its type and the first line of its message."""
    message = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {message}" if message else \
        type(error).__name__


def _train_and_report(workdir, config, resuming, hold):
    """`run` once its input is checked and the work directory is held."""
    if config.deterministic:
        # Op determinism alone leaves MW-Net and L2RW steps run-to-run
        # different in graph mode (the per-example meta-gradient varies in
        # its last bits; CE does not, eager mode does not): the outcome
        # depends on how TF's executor schedules independent ops. One
        # inter-op thread fixes the schedule. Must precede runtime start-up.
        tf.config.threading.set_inter_op_parallelism_threads(1)
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(config.seed)
    if config.mixed_bfloat16:
        keras.config.set_dtype_policy("mixed_bfloat16")

    # ## Strategy: with multi_worker, creating it waits for every worker.
    strategy = distribute_lib.make_strategy(config.distribute)
    replicas = strategy.num_replicas_in_sync
    # Only the chief writes the work directory; the other workers run the
    # same steps (every collective op needs them) and write nothing of it.
    chief = distribute_lib.is_chief(strategy)
    if distribute_lib.is_multi_worker(strategy):
        # The strategy has logged its cluster; from here TensorFlow would log
        # a line per collective op of every traced function.
        tf.get_logger().setLevel("WARNING")
    for name in ("batch_size", "meta_batch_size"):
        if getattr(config, name) % replicas:
            raise ExperimentError(
                f"--{name}={getattr(config, name)} does not split evenly over "
                f"{replicas} replicas; use a multiple of {replicas}.")

    # ## Data
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    try:
        data = experiment.prepare_data(config, epoch=epoch)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        raise ExperimentError(str(error)) from error
    logging.info("Data: %d train (%d steps/epoch), %d meta, %d test, %d "
                 "classes; realised noise rate %s", data.num_train,
                 data.steps_per_epoch, data.num_meta, data.num_test,
                 data.num_classes, data.statistics.get("realised_noise_rate"))
    logging.info("Meta set (%s): %s", data.meta_source,
                 data.statistics["meta_origin"])
    chooses_meta_set = (data.meta_source == "pseudo_clean"
                        and config.method in ("mwnet", "l2rw"))
    if chooses_meta_set and config.meta_warmup_steps < data.steps_per_epoch:
        raise ExperimentError(
            "a pseudo-clean meta set is chosen by the model after its "
            f"warm-up: --meta_warmup_steps={config.meta_warmup_steps} is "
            f"less than one epoch ({data.steps_per_epoch} steps); raise it "
            "(flags/own_data.cfg: 5 epochs) or give a trusted meta set.")
    if data.meta_source == "given_draw":
        logging.warning(
            "The meta set's labels are as given and may be wrong; V learns "
            "from them as if they were right (with many wrong labels it "
            "learns to weigh them up). Prefer --meta_source=pseudo_clean "
            "or a trusted meta/ folder.")

    # ## Model
    with strategy.scope():
        try:
            model = experiment.build_model(
                config, data.num_classes, data.image_shape,
                label_counts=data.statistics["train_counts_noisy"],
                keep_average=chooses_meta_set)
        except (ValueError, FileNotFoundError, RuntimeError) as error:
            raise ExperimentError(str(error)) from error
        if getattr(model.weighting_net, "class_aware", False):
            logging.info("Class-aware V (CMW-Net): task family of each class "
                         "%s", list(model.weighting_net.class_families))
        experiment.compile_model(model, config, data.steps_per_epoch)

    # ## Fit: all input is valid, so the work directory becomes this run's.
    if chief:
        claim_workdir(workdir, config, resuming)
        hold.claimed = True
    if distribute_lib.is_multi_worker(strategy):
        # No worker restores from the work directory before the chief has
        # made it this run's.
        distribute_lib.barrier(strategy)
    logging.info("%s %s", "Resuming" if resuming else "Starting", workdir)
    logs_dir = os.path.join(workdir, "tensorboard")
    history_path = os.path.join(workdir, "history.csv")
    learned_weights = config.method in label_audit.METHODS
    # Order matters: callbacks that add to the epoch logs come before those
    # that record them.
    callbacks = [callbacks_lib.EpochVariable(epoch)]
    if chooses_meta_set:
        # Before the timer (its pass over the training set is part of the
        # epoch's cost) and the meta-set evaluation (which reads the choice).
        callbacks.append(pseudo_clean.PseudoCleanSelection(
            data.train_eval, data.train_examples.labels,
            config.pseudo_clean_per_class, data.meta_selection,
            first_epoch=config.meta_warmup_steps // data.steps_per_epoch,
            clean_labels=data.train_examples.clean_labels,
            pool=data.selection_pool))
    callbacks += [
        callbacks_lib.EpochTimer(),
        callbacks_lib.MetaSetEvaluation(data.meta_eval),
        keras.callbacks.TerminateOnNaN(),
    ]
    if chief:
        # What some epochs do not measure, so leave out of their logs: the
        # test set between --test_every epochs, the meta metrics before the
        # first meta step, the pseudo-clean precision and the averaged
        # model's accuracy before the first choice. history.csv has their
        # columns from its first row.
        sometimes = ["val_loss", "val_accuracy"]
        if model.schedule.uses_meta_batches:
            sometimes += ["meta_loss", "meta_accuracy"]
        if chooses_meta_set and data.train_examples.clean_labels is not None:
            sometimes += ["meta_label_precision", "averaged_model_accuracy"]
        callbacks += [keras.callbacks.TensorBoard(logs_dir, histogram_freq=1),
                      callbacks_lib.HistoryLogger(history_path, sometimes)]
        if learned_weights:
            callbacks.insert(0, callbacks_lib.WeightingFunctionLogger(
                os.path.join(logs_dir, "weighting")))
    # Every worker restores from the chief's backup; only the chief writes it.
    callbacks.append(callbacks_lib.FiniteBackupAndRestore(
        os.path.join(workdir, "backup"), delete_checkpoint=False,
        writes_backup=chief))
    verbose = "auto" if config.verbose == "auto" else int(config.verbose)
    if distribute_lib.reads_input_per_worker(strategy):
        # Each worker reads, decodes and augments only its share of every
        # global batch, the share the strategy would give it.
        train_input = strategy.distribute_datasets_from_function(
            data.training_input)
        logging.info("Input: each of %d workers reads its 1/%d of every "
                     "global batch", replicas, replicas)
    else:
        train_input = data.training_input()
    try:
        fit_logs = model.fit(
            train_input, epochs=config.epochs, validation_data=data.test,
            validation_freq=test_epochs(config.epochs, config.test_every),
            callbacks=callbacks, verbose=verbose if chief else 0,
            shuffle=False).history  # The pipeline shuffles, seeded per epoch.
    except callbacks_lib.DamagedBackupError as error:
        raise ExperimentError(str(error)) from error
    # The last epoch is always tested, at the final weights (fit's history
    # lists the test metrics of the tested epochs only); only a resumed
    # run that had no epoch left to train evaluates again (every worker, its
    # share of the test set, in one collective: all workers decide alike).
    if fit_logs.get("val_accuracy"):
        test_logs = {"loss": fit_logs["val_loss"][-1],
                     "accuracy": fit_logs["val_accuracy"][-1]}
    else:
        test_logs = model.evaluate(data.test, verbose=0, return_dict=True)
    if not chief:
        logging.info("Worker done; the chief writes the results to %s",
                     workdir)
        return None

    # ## Report
    history = callbacks_lib.read_history(history_path)
    if not np.isfinite(history[-1].get("loss", np.nan)):
        raise ExperimentError(
            f"The training loss became NaN in epoch {len(history)}; the last "
            f"good checkpoint is kept in {workdir}/backup. Lower --lr or "
            "--meta_lr, then rerun with --overwrite.")
    results = summarise(history, test_logs, data.statistics,
                        data.steps_per_epoch)
    # Everything the run learned is on disk before the audit starts, so that
    # an audit that fails loses nothing.
    results_path = os.path.join(workdir, "results.json")
    files.write_json(results_path, results)
    model.classifier.save(os.path.join(workdir, "classifier.keras"))
    averaged = None
    if model.ema_decay is not None:
        # The model label correction trusted and the pseudo-clean set was
        # chosen with: the audit's suggested labels are its predictions.
        averaged = model.averaged_classifier()
        averaged.save(os.path.join(workdir, "averaged_classifier.keras"))
    if learned_weights:
        # V only where it was learned (mwnet) or given (fixed): a ce or l2rw
        # run's V is its random initialisation.
        model.weighting_net.save(os.path.join(workdir, "weighting_net.keras"))
        callbacks_lib.plot_weighting_function(
            model, os.path.join(workdir, "weighting_function.png"),
            title=f"{config.dataset} {config.noise} {config.noise_rate:g}")
    if learned_weights and config.audit:
        try:
            results["label_audit"] = label_audit.run_audit(
                workdir, model.classifier, model.weighting_net, data,
                verbose=1 if verbose == "auto" else verbose,
                averaged_classifier=averaged,
                relabel_confidence=config.relabel_confidence,
                label_correction=config.label_correction,
                epoch_mean_weights=experiment.corrected_epoch_weights(
                    history, config.meta_warmup_steps,
                    data.steps_per_epoch))
        except Exception as error:  # The run's results stay; say why.
            reason = _one_line(error)
            logging.debug("The label audit's traceback:", exc_info=True)
            logging.error(
                "The label audit failed (%s); the run's results are kept in "
                "%s. Audit it later with python -m mwnet_tf.audit "
                "--workdir=%s.", reason, workdir, workdir)
            results["label_audit"] = {"error": reason}
        files.write_json(results_path, results)
    logging.info("Final test accuracy %.4f; test accuracy at best meta "
                 "accuracy (epoch %d) %.4f; results in %s",
                 results["final_test_accuracy"], results["best_meta_epoch"],
                 results["test_accuracy_at_best_meta_accuracy"], results_path)
    return results


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    try:
        run()
    except ExperimentError as error:
        # One line, no traceback: the message says what to change.
        sys.exit(f"mwnet_tf.main: error: {error}")


def help_text():
    """What -h/--help prints: the experiment's flags by group, the flagfiles."""
    defined = FLAGS.flags_by_module_dict()[experiment_flags.__name__]
    by_name = {flag.name: flag for flag in defined}
    groups = [(title, [by_name[name] for name in names if name in by_name])
              for title, names in experiment_flags.FLAG_GROUPS]
    grouped = {name for _, names in experiment_flags.FLAG_GROUPS
               for name in names}
    others = [flag for flag in defined if flag.name not in grouped]
    if others:
        groups.append(("Other", others))
    sections = [
        "Runs one Meta-Weight-Net experiment (Shu et al., NeurIPS 2019) and "
        "writes its\nresults, models and TensorBoard logs to --workdir.\n\n"
        "usage: python -m mwnet_tf.main --flagfile=flags/NAME.cfg "
        "[--flag=value ...]\n"
        "       (or mwnet-tf, the same command)\n\n"
        "Flags after the flagfile override it; rerunning a command resumes "
        "its run.\n" + command_line.LOGGING_HELP,
        command_line.flags_help(groups),
        command_line.flagfiles_help(),
    ]
    return "\n\n".join(section for section in sections if section) + "\n"


def cli():
    """Console-script entry point (`mwnet-tf`), as `python -m mwnet_tf.main`."""
    experiment_flags.define_flags()
    command_line.run(main, help_text)
