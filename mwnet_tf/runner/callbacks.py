"""Keras callbacks of the experiment runner, beyond those Keras ships."""

import csv
import glob
import io
import json
import math
import os
import secrets
import time

import keras
import numpy as np
import tensorflow as tf

from mwnet_tf import files
from mwnet_tf import keras_compat

# Loss values at which the weighting function is drawn: cross-entropy of a
# confident mistake on 10-100 classes lies in this range.
LOSS_GRID = np.linspace(0.0, 10.0, 201, dtype="float32")


def plot_weighting_function(model, path=None, title=None):
    """Draws V(loss) of a MetaWeightNet; returns PNG bytes (and writes `path`).

    Args:
        model: A `MetaWeightNet`.
        path: Optional file to write the PNG to.
        title: Optional plot title.
    """
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    weighting_net = model.weighting_net
    figure, axes = plt.subplots(figsize=(4, 3), dpi=100)
    if getattr(weighting_net, "class_aware", False):
        # CMW-Net: one curve per task family, named by its classes.
        for family, weights in enumerate(
                weighting_net.family_curves(LOSS_GRID)):
            classes = [c for c, f in enumerate(weighting_net.class_families)
                       if f == family]
            if classes:
                shown = ",".join(map(str, classes[:6])) + (
                    ",..." if len(classes) > 6 else "")
                axes.plot(LOSS_GRID, weights,
                          label=f"family {family}: classes {shown}")
        axes.legend(fontsize=6)
    else:
        axes.plot(LOSS_GRID, model.weighting_function(LOSS_GRID).numpy())
    axes.set_xlabel("training loss")
    axes.set_ylabel("weight V(loss)")
    axes.set_ylim(0.0, 1.0)
    axes.grid(alpha=0.3)
    if title:
        axes.set_title(title)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    if path is not None:
        with open(path, "wb") as file:
            file.write(buffer.getvalue())
    return buffer.getvalue()


class WeightingFunctionLogger(keras.callbacks.Callback):
    """Logs the learned weighting function to TensorBoard as an image each epoch.

    Args:
        log_dir: TensorBoard directory of the image (e.g. `<logs>/weighting`).
    """

    def __init__(self, log_dir):
        super().__init__()
        self.log_dir = log_dir
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        png = plot_weighting_function(self.model, title=f"epoch {epoch + 1}")
        with self._writer.as_default(step=epoch):
            tf.summary.image("weighting_function",
                             tf.image.decode_png(png)[None], step=epoch)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class MetaSetEvaluation(keras.callbacks.Callback):
    """Adds the accuracy on the clean meta set to each epoch's logs.

    The meta set is the only clean data a user of MW-Net has, so choosing the
    epoch by it, not by the test set, is the honest model selection. Place this
    callback before loggers (HistoryLogger, TensorBoard) so that they record
    it.

    Args:
        meta_dataset: Un-augmented batches `(x, y)` of the meta set.
    """

    def __init__(self, meta_dataset):
        super().__init__()
        self.meta_dataset = meta_dataset

    def on_epoch_end(self, epoch, logs=None):
        results = self.model.evaluate(self.meta_dataset, verbose=0,
                                      return_dict=True)
        if logs is not None:
            logs["meta_eval_accuracy"] = results["accuracy"]
            logs["meta_eval_loss"] = results["loss"]


class EpochTimer(keras.callbacks.Callback):
    """Adds the wall-clock seconds of each training epoch to its logs."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_test_begin(self, logs=None):
        # Validation runs inside the epoch; time training only.
        self._paused = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            end = getattr(self, "_paused", None) or time.perf_counter()
            logs["epoch_seconds"] = end - self._start
        self._paused = None


class HistoryLogger(keras.callbacks.Callback):
    """Appends each epoch's logs to a CSV file (as Keras's CSVLogger does),
    with columns that do not depend on what the first epoch measured.

    An epoch's logs hold only what it measured: not the test metrics of an
    epoch `fit`'s `validation_freq` skips, nor the meta metrics of one
    without a meta step, nor the pseudo-clean precision and the averaged
    model's accuracy before the first choice. Keras's CSVLogger takes its columns from the first epoch it
    writes, so a metric first measured later would get no column, and a
    resumed run could write rows of other columns under the file's header.
    Here the columns are the header's when the file has one, else the
    first epoch's keys with `sometimes`; the cell of a metric an epoch did
    not measure is empty (`read_history` leaves it out of that epoch's
    row).

    Args:
        filename: The CSV file, appended to (created if missing).
        sometimes: Names of the metrics some epochs do not measure.
    """

    def __init__(self, filename, sometimes=()):
        super().__init__()
        self.filename = filename
        self.sometimes = tuple(sometimes)
        self.columns = None

    def on_train_begin(self, logs=None):
        self.columns = None
        if os.path.exists(self.filename):
            with open(self.filename, newline="") as file:
                header = next(csv.reader(file), None)
            if header:  # "epoch", then the metrics.
                self.columns = header[1:]

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        new_file = self.columns is None
        if new_file:
            self.columns = sorted(set(logs) | set(self.sometimes))
        with open(self.filename, "a", newline="") as file:
            writer = csv.writer(file)
            if new_file:
                writer.writerow(["epoch", *self.columns])
            writer.writerow([epoch, *(logs.get(name, "")
                                      for name in self.columns)])


class EpochVariable(keras.callbacks.Callback):
    """Keeps a `tf.Variable` equal to the current epoch.

    Input pipelines read it to seed the epoch's shuffle and augmentation, so an
    epoch sees the same batches whether or not the run was resumed.
    """

    def __init__(self, variable):
        super().__init__()
        self.variable = variable

    def on_epoch_begin(self, epoch, logs=None):
        self.variable.assign(epoch)


class DamagedBackupError(Exception):
    """A backup that cannot be read; the message says which file and what
    to do (one line)."""


# The backup's weights: one file per epoch, named in its metadata.
_BACKUP_WEIGHTS = "epoch{epoch}.weights.h5"


class FiniteBackupAndRestore(keras.callbacks.BackupAndRestore):
    """BackupAndRestore that never backs up an epoch whose loss is not finite,
    and whose backup a kill at any moment leaves whole.

    Keras's callback writes its weights file in place, then its metadata: a
    kill or a full disk during the write leaves a truncated file that the
    next run fails to read (an h5py traceback), or new weights with the old
    epoch. Here each epoch's weights go to a staging file, renamed to a file
    of that epoch's name once complete; then the metadata, which names that
    file, is replaced atomically; then the previous epoch's file goes. So
    the metadata always names a whole file, of its own epoch. A backup that
    still cannot be read (damaged on disk, or written by hand) is refused in
    one line (`DamagedBackupError`), and nothing is deleted.

    `TerminateOnNaN` stops a run mid-epoch, but Keras still ends the epoch;
    the stock callback would then overwrite the last good backup with NaNs.

    Keras 3's callback has no notion of workers: under
    MultiWorkerMirroredStrategy every worker would write the same files.
    With `writes_backup=False` (every worker but the chief) it restores from
    `backup_dir` at the start of training, as the chief does, and never
    writes or deletes it; `backup_dir` must then be storage that every
    worker reads (the same path on a shared filesystem).

    Args:
        backup_dir: As `keras.callbacks.BackupAndRestore`.
        writes_backup: Whether this process writes (and deletes) the backup.
        **kwargs: Passed to `keras.callbacks.BackupAndRestore`.
    """

    def __init__(self, backup_dir, writes_backup=True, **kwargs):
        if kwargs.get("double_checkpoint"):
            raise ValueError("FiniteBackupAndRestore keeps its backup whole "
                             "without double_checkpoint.")
        super().__init__(backup_dir, **kwargs)
        self.writes_backup = writes_backup

    def on_train_begin(self, logs=None):
        if self.writes_backup and os.path.isdir(self.backup_dir):
            # What a writer killed mid-save left: never named by metadata.
            for staging in glob.glob(os.path.join(self.backup_dir,
                                                  ".*.partial-*")):
                os.remove(staging)
        path = self._training_metadata_path
        if not os.path.exists(path):
            return  # No complete backup: a new run.
        weights = path
        try:
            with open(path) as file:
                metadata = json.load(file)
            # Keras's own callback (and this one before 2026-12-07) wrote
            # latest.weights.h5 without naming it.
            weights = os.path.join(self.backup_dir, metadata.get(
                "weights", "latest.weights.h5"))
            epoch = int(metadata["epoch"])
            if not self.model.optimizer.built:
                self.model.optimizer.build(self.model.trainable_variables)
            self.model.load_weights(weights)
        except Exception as error:  # noqa: BLE001 - h5py, json, Keras.
            reason = str(error).splitlines()[0] if str(error) else \
                type(error).__name__
            raise DamagedBackupError(
                f"The backup {weights} cannot be read ({reason}): it was "
                "cut short or changed outside this program. Rerun with "
                "--overwrite to start this run afresh, or move "
                f"{self.backup_dir} away to keep it.") from error
        keras_compat.set_initial_epoch(self.model, epoch)

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            return
        super().on_epoch_end(epoch, logs)

    # A private Keras method: keras_compat.BACKUP_AND_RESTORE_SAVE_MODEL.
    def _save_model(self):
        if not self.writes_backup:
            return
        os.makedirs(self.backup_dir, exist_ok=True)
        name = _BACKUP_WEIGHTS.format(epoch=self._current_epoch)
        target = os.path.join(self.backup_dir, name)
        # save_weights needs the .weights.h5 ending; the staging prefix is
        # files.staging_files' (what a killed writer leaves is found).
        staging = os.path.join(
            self.backup_dir,
            f".{name}.partial-{secrets.token_hex(4)}.weights.h5")
        try:
            self.model.save_weights(staging)
            os.replace(staging, target)
        finally:
            if os.path.exists(staging):
                os.remove(staging)
        files.write_json(self._training_metadata_path, {
            "epoch": self._current_epoch, "batch": self._last_batch_seen,
            "weights": name})
        for other in glob.glob(os.path.join(self.backup_dir,
                                            "*.weights.h5")):
            if os.path.basename(other) != name:
                os.remove(other)

    def on_train_end(self, logs=None):
        if self.writes_backup:
            super().on_train_end(logs)


def read_history(path):
    """Per-epoch logs from HistoryLogger (or Keras's CSVLogger), the last
    row of each epoch winning.

    A resumed run appends to the file, so an epoch cut short by an
    interruption may appear twice. A metric the epoch did not measure (an
    empty cell, or Keras's "NA") is not in its row. (Older runs' files
    hold NaN there for the test metrics and the pseudo-clean precision:
    read as NaN.)
    """
    rows = {}
    with open(path) as file:
        for row in csv.DictReader(file):
            rows[int(row["epoch"])] = {k: float(v) for k, v in row.items()
                                       if v not in ("", "NA", None)}
    return [rows[e] for e in sorted(rows)]
