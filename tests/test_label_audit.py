"""The label audit, the library (mwnet_tf.label_audit): AUCs, V's shape,
the ranking, the suggested labels, audit.csv and the gallery.

The audit of a finished run and `python -m mwnet_tf.audit`:
tests/runner/test_audit_command.py."""

import csv

import keras
import numpy as np
import pytest
import tensorflow as tf

import mwnet_tf
import mwnet_tf.data
from mwnet_tf import label_audit


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


def _read_csv(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


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
        verbose=0, averaged_classifier=linear(0.05),
        # The top of three probabilities is at least 1/3: every suggestion
        # that differs is a change to make (tests/test_relabel.py: tiers).
        relabel_confidence=1 / 3)
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
        assert row["verdict"] == ("relabel" if corrupted[index] else "keep")
    label_audit.write_relabel_csv(audit, tmp_path / "relabel.csv", names)
    relabel = _read_csv(tmp_path / "relabel.csv")
    assert sorted(int(r["index"]) for r in relabel) == list(
        np.flatnonzero(corrupted))
    assert [int(r["index"]) for r in relabel] == [
        int(r["index"]) for r in rows if r["verdict"] == "relabel"]
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
