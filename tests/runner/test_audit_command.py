"""The label audit (mwnet_tf.label_audit, `python -m mwnet_tf.audit`) and
reusing a learned V."""

import csv
import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from absl.testing import flagsaver
from test_main import REPO, _image_tree, _parse, _run, _tiny_args

import mwnet_tf
import mwnet_tf.data
from mwnet_tf import label_audit
from mwnet_tf.runner import audit_command as audit_lib
from mwnet_tf.runner import callbacks as callbacks_lib
from mwnet_tf.runner import experiment
from mwnet_tf.runner import main as main_lib
from mwnet_tf.runner.run_config import RunConfig


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    monkeypatch.chdir(REPO)


def _brute_force_auc(scores, positive):
    pairs = [(p > n) + 0.5 * (p == n) for p in scores[positive]
             for n in scores[~positive]]
    return np.mean(pairs)


def test_roc_auc_is_the_fraction_of_correctly_ordered_pairs():
    rng = np.random.default_rng(0)
    for _ in range(5):
        scores = rng.integers(0, 6, 60).astype(float)  # Many ties.
        positive = rng.random(60) < 0.3
        assert label_audit.roc_auc(scores, positive) == pytest.approx(
            _brute_force_auc(scores, positive))
    assert label_audit.roc_auc([1.0, 2.0], [True, True]) is None
    assert label_audit.roc_auc([1.0, 2.0], [False, False]) is None


def _audit(loss, weight, corrupted):
    n = len(loss)
    return label_audit.LabelAudit(
        index=np.arange(n), file=None, given_label=np.zeros(n, np.int64),
        predicted_label=np.zeros(n, np.int64),
        predicted_probability=np.ones(n, np.float32),
        loss=np.asarray(loss, np.float32), weight=np.asarray(weight, np.float32),
        corrupted=np.asarray(corrupted, np.int8))


def test_detection_report_scores_weights_beside_the_loss():
    rng = np.random.default_rng(1)
    corrupted = (rng.random(200) < 0.4).astype(np.int8)
    loss = rng.exponential(1.0, 200) + 1.5 * corrupted
    decreasing = 1.0 / (1.0 + loss)
    report = label_audit.detection_report(_audit(loss, decreasing, corrupted))
    assert report["flagged"] == corrupted.sum()
    assert report["realised_noise_rate"] == pytest.approx(corrupted.mean())
    # A decreasing V ranks examples as the loss does...
    assert report["weight"] == report["loss"]
    expected = _brute_force_auc(loss, corrupted.astype(bool))
    assert report["loss"]["roc_auc"] == pytest.approx(expected)
    lowest = np.argsort(decreasing)[:corrupted.sum()]
    assert report["weight"]["precision"] == pytest.approx(
        corrupted[lowest].mean())
    # ...an increasing one reverses it (V trusts the suspects most).
    increasing = loss / (1.0 + loss)
    report = label_audit.detection_report(_audit(loss, increasing, corrupted))
    assert report["weight"]["roc_auc"] == pytest.approx(1.0 - expected)
    assert report["mean_weight_corrupted"] > report["mean_weight_clean"]
    # Unknown truth (-1) is left out; no truth at all gives no report.
    partly = np.where(np.arange(200) < 50, -1, corrupted).astype(np.int8)
    report = label_audit.detection_report(_audit(loss, decreasing, partly))
    assert report["num_examples_with_known_label"] == 150
    assert label_audit.detection_report(
        _audit(loss, decreasing, np.full(200, -1))) is None


def test_gallery_of_file_backed_data_reads_only_the_suspects(tmp_path):
    """Clothing1M-sized data: the gallery decodes its images and no others."""
    from PIL import Image
    rng = np.random.default_rng(2)
    paths = []
    for i in range(30):
        path = str(tmp_path / f"{i}.jpg")
        if i < 4:  # Only the four lowest-weighted images exist.
            Image.fromarray(rng.integers(0, 255, (40, 30, 3), np.uint8)).save(
                path)
        paths.append(path)
    labels = rng.integers(0, 3, 30)
    examples = mwnet_tf.data.Split(labels=labels, paths=np.array(paths),
                                   clean_labels=np.full(30, -1))
    weight = np.linspace(0.0, 1.0, 30, dtype=np.float32)
    audit = _audit(loss=1.0 - weight, weight=weight,
                   corrupted=np.full(30, -1))
    png = label_audit.plot_suspects(audit, examples, ["a", "b", "c"], count=4,
                                    path=tmp_path / "gallery.png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "gallery.png").read_bytes() == png


def _weighting_net(shape):
    """A WeightingNet set by hand to a known shape over losses 0-5."""
    if shape == "non-monotone":  # sigmoid(|l - 2| - 1): lowest at loss 2.
        net = mwnet_tf.WeightingNet(hidden_sizes=(2,))
        net.set_weights([np.array([[1.0, -1.0]]), np.array([-2.0, 2.0]),
                         np.array([[1.0], [1.0]]), np.array([-1.0])])
        return net
    slope = {"decreasing": -1.0, "increasing": 1.0, "flat": 1e-4}[shape]
    net = mwnet_tf.WeightingNet(hidden_sizes=(1,))
    net.set_weights([np.array([[1.0]]), np.array([0.0]),
                     np.array([[slope]]), np.array([1.0])])
    return net


@pytest.mark.parametrize("shape", ["decreasing", "increasing",
                                   "non-monotone", "flat"])
def test_weighting_function_shape_over_the_losses_seen(shape):
    losses = np.random.default_rng(3).uniform(0.0, 5.0, 500)
    described = label_audit.weighting_function_shape(_weighting_net(shape),
                                                     losses)
    assert described["shape"] == shape
    assert described["loss_range"] == pytest.approx(
        np.quantile(losses, [0.01, 0.99]))
    if shape == "non-monotone":
        assert described["lowest_weight_at_loss"] == pytest.approx(2.0,
                                                                  abs=0.1)
    # Only where the examples are: the same V, losses all below 2, falls.
    if shape == "non-monotone":
        assert label_audit.weighting_function_shape(
            _weighting_net(shape), losses / 3.0)["shape"] == "decreasing"


def test_class_aware_v_is_described_per_family():
    """Family 0 (class 1) decreasing, family 1 (classes 0, 2) increasing:
    "mixed", each family over its own examples' losses; the same sign for
    both: their common shape."""
    net = mwnet_tf.WeightingNet(hidden_sizes=(1,), class_families=(1, 0, 1))
    net.set_weights([np.array([[1.0]]), np.array([0.0]),
                     np.array([[-1.0, 1.0]]), np.array([1.0, 1.0])])
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 3, 600)
    # Class 1's examples have losses 0-2, the others 0-6.
    losses = rng.uniform(0.0, np.where(labels == 1, 2.0, 6.0))
    described = label_audit.weighting_function_shape(net, losses, labels)
    assert described["shape"] == "mixed"
    by_family = {f["family"]: f for f in described["families"]}
    assert by_family[0]["shape"] == "decreasing"
    assert by_family[1]["shape"] == "increasing"
    assert by_family[0]["classes"] == [1] and by_family[1]["classes"] == [0, 2]
    assert by_family[0]["examples"] == int(np.sum(labels == 1))
    assert by_family[0]["loss_range"][1] < 2.0 < by_family[1]["loss_range"][1]
    # The summary fields are the largest family's.
    assert described["loss_range"] == by_family[1]["loss_range"]
    assert "family 0 decreasing, family 1 increasing" in (
        label_audit.why_not_by_weight(described))
    net.set_weights([np.array([[1.0]]), np.array([0.0]),
                     np.array([[-1.0, -2.0]]), np.array([1.0, 1.0])])
    assert label_audit.weighting_function_shape(
        net, losses, labels)["shape"] == "decreasing"


def _scored_run(shape, tmp_path):
    """audit_labels on a 3-class linear classifier whose loss is high
    exactly on the corrupted labels, with a V of `shape`."""
    rng = np.random.default_rng(4)
    clean = rng.integers(0, 3, 60)
    corrupted = rng.random(60) < 0.4
    given = np.where(corrupted, (clean + 1) % 3, clean)
    images = np.zeros((60, 2, 2, 3), np.uint8)
    images[np.arange(60), 0, 0, clean] = 255  # The true class, in one pixel.
    classifier = keras.Sequential([keras.Input((2, 2, 3)),
                                   keras.layers.Flatten(),
                                   keras.layers.Dense(3)])
    kernel = np.zeros((12, 3), np.float32)
    kernel[np.arange(3), np.arange(3)] = 0.02  # Pixel (0, 0) channel c -> c.
    classifier.set_weights([kernel, np.zeros(3, np.float32)])
    examples = mwnet_tf.data.Split(labels=given, images=images,
                                   clean_labels=clean)
    dataset = tf.data.Dataset.from_tensor_slices(
        (images.astype(np.float32), given)).batch(16)
    return label_audit.audit_labels(classifier, _weighting_net(shape),
                                    dataset, examples, verbose=0)


def test_suggested_labels_come_from_the_averaged_classifier(tmp_path):
    """audit.csv's suggestion and verdict, relabel.csv and the report of
    how often the suggestions are right, with an averaged classifier that
    knows the true class and one that does not."""
    rng = np.random.default_rng(5)
    clean = rng.integers(0, 3, 60)
    corrupted = rng.random(60) < 0.4
    given = np.where(corrupted, (clean + 1) % 3, clean)
    images = np.zeros((60, 2, 2, 3), np.uint8)
    images[np.arange(60), 0, 0, clean] = 255

    def linear(scale):
        model = keras.Sequential([keras.Input((2, 2, 3)),
                                  keras.layers.Flatten(),
                                  keras.layers.Dense(3)])
        kernel = np.zeros((12, 3), np.float32)
        kernel[np.arange(3), np.arange(3)] = scale
        model.set_weights([kernel, np.zeros(3, np.float32)])
        return model

    examples = mwnet_tf.data.Split(labels=given, images=images,
                                   clean_labels=clean)
    dataset = tf.data.Dataset.from_tensor_slices(
        (images.astype(np.float32), given)).batch(16)
    # The classifier barely separates the classes; the average does.
    audit = label_audit.audit_labels(
        linear(0.002), _weighting_net("decreasing"), dataset, examples,
        verbose=0, averaged_classifier=linear(0.05))
    assert audit.suggested_by == "averaged classifier"
    np.testing.assert_array_equal(audit.suggested_label, clean)
    np.testing.assert_array_equal(audit.suspect, corrupted)
    report = label_audit.detection_report(audit)["suggestions"]
    assert report["accuracy_among_flagged"] == 1.0
    assert report["accuracy_among_flagged_corrupted"] == 1.0
    assert report["suspects"] == corrupted.sum()
    assert report["suspects_corrupted"] == 1.0
    names = ["a", "b", "c"]
    label_audit.write_csv(audit, tmp_path / "audit.csv", names)
    rows = _read_csv(tmp_path / "audit.csv")
    for row in rows:
        index = int(row["index"])
        assert int(row["suggested_label"]) == clean[index]
        assert row["suggested_class"] == names[clean[index]]
        assert row["verdict"] == ("suspect" if corrupted[index] else "keep")
    label_audit.write_relabel_csv(audit, tmp_path / "relabel.csv", names)
    relabel = _read_csv(tmp_path / "relabel.csv")
    assert sorted(int(r["index"]) for r in relabel) == list(
        np.flatnonzero(corrupted))
    assert [int(r["index"]) for r in relabel] == [
        int(r["index"]) for r in rows if r["verdict"] == "suspect"]
    for row in relabel:
        assert int(row["suggested_label"]) == clean[int(row["index"])]
        assert 0 < float(row["confidence"]) <= 1
    # Without an average, the classifier's own prediction is suggested.
    plain = label_audit.audit_labels(
        linear(0.002), _weighting_net("decreasing"), dataset, examples,
        verbose=0)
    assert plain.suggested_by == "classifier"
    np.testing.assert_array_equal(plain.suggested_label,
                                  plain.predicted_label)


@pytest.mark.parametrize("shape", ["decreasing", "increasing"])
def test_audit_ranks_by_the_weight_only_where_v_decreases(shape, tmp_path):
    audit = _scored_run(shape, tmp_path)
    assert audit.weighting_shape["shape"] == shape
    assert audit.ranked_by == ("weight" if shape == "decreasing" else "loss")
    # Either way the most suspect rows are the corrupted labels: those the
    # classifier finds least likely...
    flagged = int(audit.corrupted.sum())
    order = audit.suspect_order()
    assert audit.corrupted[order[:flagged]].all()
    # ...which V's lowest weights are not when V increases.
    lowest_weights = np.argsort(audit.weight, kind="stable")[:flagged]
    assert audit.corrupted[lowest_weights].all() == (shape == "decreasing")
    # The CSV follows the same order and the gallery says what it shows.
    label_audit.write_csv(audit, tmp_path / "audit.csv", ["a", "b", "c"])
    rows = _read_csv(tmp_path / "audit.csv")
    assert [int(r["index"]) for r in rows] == list(audit.index[order])
    heading = label_audit.gallery_heading(audit)
    if shape == "decreasing":
        assert "lowest weights V gives" in heading
    else:
        assert heading.startswith("Suspect labels: the highest losses. V is "
                                  "increasing") and "easy" in heading
    # The reason given fits the shape.
    for other in ("non-monotone", "flat"):
        described = label_audit.weighting_function_shape(
            _weighting_net(other), audit.loss)
        assert other == "flat" or "lowest at loss" in (
            label_audit.why_not_by_weight(described))
        assert "easy" not in label_audit.why_not_by_weight(described)


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


@pytest.mark.parametrize("args, message", [
    (["--method=fixed"], "method=\"fixed\" trains with the weights of a "
     "learned V: give it as weighting_net"),
    (["--method=ce", "--weighting_net=w.keras"],
     "--weighting_net is for --method=fixed or --method=mwnet"),
])
def test_weighting_net_flag_combinations_are_checked(args, message):
    with flagsaver.flagsaver():
        with pytest.raises(flags.Error, match=message):
            _parse(["--workdir=unused"] + args)


def test_bad_weighting_net_file_fails_before_training(tmp_path):
    not_a_net = tmp_path / "classifier.keras"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]).save(
        not_a_net)
    for path, message in ((tmp_path / "missing.keras", "is not a file"),
                          (not_a_net, "not one weight in \\[0, 1\\] per loss"
                           "|is not a saved weighting net")):
        with pytest.raises(main_lib.ExperimentError, match=message):
            _run(["--flagfile=flags/base.cfg", f"--workdir={tmp_path / 'run'}",
                  "--method=fixed", f"--weighting_net={path}"])
    assert not (tmp_path / "run").exists()
