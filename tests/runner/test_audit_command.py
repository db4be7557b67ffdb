"""The label audit of a finished run (at the run's end and by
`python -m mwnet_tf.audit`), and reusing the V the run learned.

The audit library itself: tests/test_label_audit.py."""

import csv
import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
from tiny_runs import REPO
from tiny_runs import image_tree as _image_tree
from tiny_runs import run as _run
from tiny_runs import tiny_args as _tiny_args

import mwnet_tf
import mwnet_tf.data
from mwnet_tf import label_audit
from mwnet_tf.runner import audit_command as audit_lib
from mwnet_tf.runner import callbacks as callbacks_lib
from mwnet_tf.runner import experiment
from mwnet_tf.runner.run_config import RunConfig


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    monkeypatch.chdir(REPO)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A tiny finished MW-Net run under 40% uniform noise, audited at its end."""
    root = tmp_path_factory.mktemp("audited")
    tree = _image_tree(root / "tree", 12, 20, seed=0)
    workdir = root / "run"
    results = _run(_tiny_args(workdir, tree, root / "cache",
                              "--method=mwnet", "--noise_rate=0.4"))
    return workdir, results


def _read_csv(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


@pytest.mark.slow
def test_audit_rows_are_the_labels_the_run_trained_on(finished_run):
    workdir, results = finished_run
    with open(workdir / "config.json") as file:
        config = RunConfig.from_dict(json.load(file))
    data = experiment.prepare_data(config)
    examples = data.train_examples
    rows = _read_csv(workdir / "audit.csv")
    assert [int(r["rank"]) for r in rows] == list(range(1, len(examples) + 1))
    # One row per example the run trained on, each with the label it
    # trained on, by the run's own record of its training labels.
    recorded = results["data"]
    given = np.array([int(r["given_label"]) for r in rows])
    assert len(rows) == recorded["num_train"]
    assert np.bincount(given, minlength=recorded["num_classes"]).tolist() \
        == recorded["train_counts_noisy"]
    assert sum(int(r["corrupted"]) for r in rows) == sum(
        recorded["corrupted_counts"])
    # ...and with the true labels, the noise the run recorded, pair by pair.
    position = {int(i): p for p, i in enumerate(examples.index)}
    assert sorted(position) == sorted(int(r["index"]) for r in rows)
    given_in_order = np.empty(len(rows), np.int64)
    for row in rows:
        given_in_order[position[int(row["index"])]] = int(row["given_label"])
    np.testing.assert_array_equal(
        mwnet_tf.data.label_noise_statistics(
            examples.clean_labels, given_in_order,
            recorded["num_classes"])["transition_matrix"],
        recorded["transition_matrix_empirical"])

    # Each row is the example its index names: its given (noisy) label, its
    # file, whether the noise changed its label, and its loss.
    classifier = keras.saving.load_model(workdir / "classifier.keras")
    net = mwnet_tf.load_weighting_net(workdir / "weighting_net.keras")
    logits = np.concatenate([classifier.predict(x, verbose=0)
                             for x, _ in data.train_eval])
    predicted = np.argmax(logits, 1)
    losses = keras.losses.sparse_categorical_crossentropy(
        examples.labels, logits, from_logits=True).numpy()
    for row in rows:
        p = position[int(row["index"])]
        assert int(row["given_label"]) == examples.labels[p]
        assert row["given_class"] == data.class_names[examples.labels[p]]
        assert row["file"] == examples.files[p]
        assert int(row["corrupted"]) == int(
            examples.labels[p] != examples.clean_labels[p])
        assert int(row["predicted_label"]) == predicted[p]
        assert float(row["loss"]) == pytest.approx(losses[p], abs=2e-4)

    # Most suspect first, by V's shape over these losses, described here
    # from the run's saved V: by its weight where it falls with the loss,
    # else by the loss.
    shape = label_audit.weighting_function_shape(net, losses,
                                                 examples.labels)
    summary = results["label_audit"]
    assert summary["weighting_function"]["shape"] == shape["shape"]
    assert summary["weighting_function"]["loss_range"] == pytest.approx(
        shape["loss_range"], abs=1e-4)
    assert summary["ranked_by"] == (
        "weight" if shape["shape"] == "decreasing" else "loss")
    ranked = np.array([float(r[summary["ranked_by"]]) for r in rows])
    if summary["ranked_by"] == "weight":
        assert (np.diff(ranked) >= 0).all()  # Lowest weight first.
    else:
        assert (np.diff(ranked) <= 0).all()  # Highest loss first.
        # The weight is V's verdict on the row's loss.
        assert float(row["weight"]) == pytest.approx(
            float(net(np.array([float(row["loss"])], "float32"))[0]),
            abs=2e-4)
    corrupted = np.array([int(r["corrupted"]) for r in rows])
    assert 0 < corrupted.sum() < len(rows)
    weights = np.array([float(r["weight"]) for r in rows])

    audit = results["label_audit"]
    detection = audit["detection"]
    assert audit["examples"] == len(rows)
    assert detection["flagged"] == corrupted.sum()
    assert detection["realised_noise_rate"] == pytest.approx(
        results["data"]["realised_noise_rate"])
    assert detection["weight"]["roc_auc"] == pytest.approx(
        label_audit.roc_auc(-weights, corrupted.astype(bool)), abs=0.02)
    with open(workdir / "suspect_labels.png", "rb") as file:
        assert file.read(8) == b"\x89PNG\r\n\x1a\n"
    # Written through temporary files, yet as readable as the outputs
    # written by a plain open() (history.csv).
    # An image folder's labels come back out as a CSV (a label array's
    # would be labels.npz).
    assert audit["labels_out"] == "labels.csv"
    written = [name for name in label_audit.OUTPUTS if name != "labels.npz"]
    for name in written + ["results.json", "config.json"]:
        assert (os.stat(workdir / name).st_mode & 0o777
                == os.stat(workdir / "history.csv").st_mode & 0o777)
    assert os.listdir(workdir / "tensorboard" / "audit")


@pytest.mark.slow
def test_audit_command_reproduces_the_audit_of_the_run(finished_run,
                                                       tmp_path):
    workdir, results = finished_run
    copy = tmp_path / "run"
    shutil.copytree(workdir, copy)
    written = [name for name in label_audit.OUTPUTS if name != "labels.npz"]
    for name in written:
        os.remove(copy / name)
    process = subprocess.run(
        [sys.executable, "-m", "mwnet_tf.audit", f"--workdir={copy}",
         "--verbose=0"], cwd=REPO, capture_output=True, text=True,
        timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert process.returncode == 0, process.stderr
    for name in ("audit.csv", "labels.csv"):
        with open(workdir / name) as a, open(copy / name) as b:
            assert a.read() == b.read()
    for name in written + ["results.json"]:
        assert (os.stat(copy / name).st_mode & 0o777
                == os.stat(workdir / name).st_mode & 0o777)
    with open(copy / "results.json") as file:
        rewritten = json.load(file)
    for summary in (rewritten["label_audit"], results["label_audit"]):
        summary.pop("seconds")
    assert rewritten == json.loads(json.dumps(results))
    # At a confidence of 1/4 or less every suggestion that differs (the top
    # of four classes) is a change to make: relabel.csv lists every suspect.
    summary = audit_lib.audit_run(str(copy), verbose=0,
                                  relabel_confidence=1 / 4)
    with open(copy / "relabel.csv") as file:
        assert len(list(csv.DictReader(file))) == summary["suspects"] == (
            summary["relabel"])
    refused = subprocess.run(
        [sys.executable, "-m", "mwnet_tf.audit", f"--workdir={copy}",
         "--relabel_confidence=1.5"], cwd=REPO, capture_output=True,
        text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert refused.returncode != 0
    assert "--relabel_confidence must be in (0, 1]" in refused.stderr


@pytest.mark.slow
def test_audit_refuses_what_it_cannot_audit(finished_run, tmp_path):
    workdir, _ = finished_run
    copy = tmp_path / "run"
    shutil.copytree(workdir, copy)
    with open(copy / "results.json") as file:
        before = file.read()

    def fails(match, **kwargs):
        with pytest.raises(audit_lib.AuditError, match=match):
            audit_lib.audit_run(str(copy), verbose=0, **kwargs)

    fails(r"does not exist", data_path=str(tmp_path / "moved"))
    # Other images: the rebuilt split is not the one the run trained on.
    other = _image_tree(tmp_path / "other", 10, 20, seed=3)
    fails("differs from the one the run trained on .*num_train",
          data_path=other, cache_dir=str(tmp_path / "cache"))
    with open(copy / "results.json") as file:
        assert file.read() == before  # Nothing written by a refused audit.
    with open(copy / "config.json") as file:
        config = json.load(file)
    with open(copy / "config.json", "w") as file:
        json.dump(dict(config, data_path=str(tmp_path / "moved")), file)
    fails("does not exist.* If the data has moved since the run, pass "
          "--data_path")
    with open(copy / "config.json", "w") as file:
        json.dump(dict(config, method="ce"), file)
    fails("--method=ce, which learns no weighting net")
    with open(copy / "config.json", "w") as file:
        json.dump(config, file)
    os.remove(copy / "classifier.keras")
    fails("holds no classifier.keras: it is not a finished run")
    with pytest.raises(audit_lib.AuditError, match="is not a directory"):
        audit_lib.audit_run(str(tmp_path / "nowhere"))


@pytest.mark.slow
def test_fixed_method_trains_with_the_learned_weighting_net(finished_run,
                                                            tmp_path):
    """--method=fixed: V as learned, frozen; no meta step; audited too."""
    source, _ = finished_run
    learned = source / "weighting_net.keras"
    with open(source / "config.json") as file:
        config = json.load(file)
    tree, cache = config["data_path"], config["cache_dir"]
    workdir = tmp_path / "fixed"
    results = _run(_tiny_args(workdir, tree, cache, "--method=fixed",
                              f"--weighting_net={learned}",
                              "--noise_rate=0.4", "--seed=2"))
    before = mwnet_tf.load_weighting_net(learned).get_weights()
    after = mwnet_tf.load_weighting_net(
        workdir / "weighting_net.keras").get_weights()
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    history = callbacks_lib.read_history(workdir / "history.csv")
    assert "meta_loss" not in history[-1] and "mean_weight" in history[-1]
    assert results["label_audit"]["detection"] is not None
    assert (workdir / "weighting_function.png").exists()
