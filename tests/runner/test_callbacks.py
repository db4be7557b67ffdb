"""The runner's callbacks (mwnet_tf.runner.callbacks): the backup, whole
after a kill at any moment and a damaged one refused in one line; history.csv
with fixed columns."""

import csv
import json
import os

import keras
import numpy as np
import pytest

from mwnet_tf.runner import callbacks


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                  loss="mse")
    return model


def _data():
    rng = np.random.default_rng(0)
    return (rng.normal(size=(16, 3)).astype("float32"),
            rng.normal(size=(16, 2)).astype("float32"))


def _fit(model, backup_dir, epochs):
    return model.fit(*_data(), epochs=epochs, batch_size=8, verbose=0,
                     shuffle=False, callbacks=[callbacks.FiniteBackupAndRestore(
                         str(backup_dir), delete_checkpoint=False)])


def test_resumed_run_equals_the_uninterrupted_one(tmp_path):
    whole = _model()
    _fit(whole, tmp_path / "whole", 4)
    first = _model()
    _fit(first, tmp_path / "cut", 2)
    assert sorted(os.listdir(tmp_path / "cut")) == [
        "epoch2.weights.h5", "training_metadata.json"]
    resumed = _model(seed=1)  # Other initial weights: all come from the backup.
    history = _fit(resumed, tmp_path / "cut", 4)
    assert history.epoch == [2, 3]
    for a, b in zip(whole.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_a_kill_while_saving_leaves_the_previous_epoch_whole(tmp_path,
                                                             monkeypatch):
    backup = tmp_path / "backup"
    model = _model()
    _fit(model, backup, 2)
    saved = [w.copy() for w in model.get_weights()]
    original = keras.Model.save_weights

    def killed_mid_write(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as file:  # Half a file, then the kill.
            file.write(b"\x89HDF\r\n")
        raise KeyboardInterrupt

    monkeypatch.setattr(keras.Model, "save_weights", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        _fit(model, backup, 3)
    monkeypatch.setattr(keras.Model, "save_weights", original)
    # The staging file is gone (a real kill leaves it: the next run
    # removes it); the backup still names epoch 2's whole file.
    with open(backup / "training_metadata.json") as file:
        assert json.load(file)["epoch"] == 2
    open(backup / ".epoch3.weights.h5.partial-0badc0de.weights.h5",
         "wb").close()
    restored = _model(seed=1)
    history = _fit(restored, backup, 2)
    assert history.epoch == []  # Epoch 2 of 2 done: nothing left to train.
    for a, b in zip(saved, restored.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert not [n for n in os.listdir(backup) if ".partial-" in n]


def test_a_truncated_backup_is_refused_in_one_line(tmp_path):
    backup = tmp_path / "backup"
    _fit(_model(), backup, 1)
    weights = backup / "epoch1.weights.h5"
    size = os.path.getsize(weights)
    with open(weights, "r+b") as file:
        file.truncate(size // 2)
    with pytest.raises(callbacks.DamagedBackupError) as error:
        _fit(_model(), backup, 2)
    message = str(error.value)
    assert "\n" not in message
    assert str(weights) in message and "--overwrite" in message
    assert os.path.getsize(weights) == size // 2  # Nothing deleted.


def test_history_has_the_columns_of_what_only_later_epochs_measure(
        tmp_path):
    """history.csv: a metric the first epoch did not measure still has a
    column (empty where unmeasured), and a resumed run keeps the header."""
    path = tmp_path / "history.csv"
    first = callbacks.HistoryLogger(
        str(path), sometimes=["val_loss", "meta_loss"])
    first.on_train_begin()
    first.on_epoch_end(0, {"loss": 2.0})  # Warm-up, untested.
    first.on_epoch_end(1, {"loss": 1.5, "meta_loss": 1.0, "val_loss": 1.25})
    first.on_train_end()
    resumed = callbacks.HistoryLogger(str(path))  # Knows of no column.
    resumed.on_train_begin()
    resumed.on_epoch_end(2, {"loss": 1.0, "val_loss": 0.75})
    resumed.on_train_end()
    with open(path) as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["epoch", "loss", "meta_loss", "val_loss"]
    assert rows[1] == ["0", "2.0", "", ""]
    assert len({len(row) for row in rows}) == 1
    assert callbacks.read_history(path) == [
        {"epoch": 0, "loss": 2.0},
        {"epoch": 1, "loss": 1.5, "meta_loss": 1.0, "val_loss": 1.25},
        {"epoch": 2, "loss": 1.0, "val_loss": 0.75}]
