"""The audit's verdicts: relabel (a confident suggestion), suspect (an
unsure one), keep; relabel.csv, labels.csv / labels.npz and the report of
how right the changes are, against hand-made audits."""

import csv
import dataclasses

import keras
import numpy as np
import pytest

import mwnet_tf
from mwnet_tf import label_audit
from mwnet_tf.data import label_file

# Six examples of classes 0-2: given, suggested (with probability), true.
GIVEN = np.array([0, 1, 2, 0, 1, 2])
SUGGESTED = np.array([0, 2, 0, 1, 0, 2])
PROBABILITY = np.array([0.99, 0.95, 0.90, 0.60, 0.89, 0.50], np.float32)
TRUE = np.array([0, 2, 1, 1, 0, 2])
# 0 keep; 1 relabel, right; 2 relabel (at the threshold), wrong; 3 suspect,
# right; 4 suspect (just under), right; 5 keep.
VERDICTS = ["keep", "relabel", "relabel", "suspect", "suspect", "keep"]


def _audit(confidence=0.9):
    weight = np.array([0.9, 0.1, 0.2, 0.3, 0.4, 0.8], np.float32)
    return label_audit.LabelAudit(
        index=np.arange(6), file=np.array([f"f{i}.png" for i in range(6)]),
        given_label=GIVEN, predicted_label=SUGGESTED,
        predicted_probability=PROBABILITY, loss=1 - weight, weight=weight,
        corrupted=(GIVEN != TRUE).astype(np.int8), suggested_label=SUGGESTED,
        suggested_probability=PROBABILITY, true_label=TRUE,
        relabel_confidence=confidence)


def test_verdicts_split_the_disagreements_by_the_suggestions_probability():
    audit = _audit()
    assert audit.verdicts().tolist() == VERDICTS
    np.testing.assert_array_equal(audit.suspect, SUGGESTED != GIVEN)
    assert _audit(0.5).verdicts().tolist() == [
        "keep", "relabel", "relabel", "relabel", "relabel", "keep"]
    assert _audit(1.0).verdicts().tolist() == [
        "keep", "suspect", "suspect", "suspect", "suspect", "keep"]


def test_the_report_says_how_right_the_changes_are():
    report = label_audit.detection_report(_audit())
    relabel = report["suggestions"]["relabel"]
    # Rows 1 and 2 are relabelled; row 1's suggestion is its true label,
    # row 2's is not; both given labels are wrong; of the four wrong labels
    # (rows 1-4) the changes fix one.
    assert relabel == {"confidence": 0.9, "count": 2, "accuracy": 0.5,
                       "corrupted": 1.0, "fixes_of_corrupted": 0.25}
    none = label_audit.detection_report(_audit(1.0))["suggestions"]["relabel"]
    assert none["count"] == 0 and none["accuracy"] is None


def test_correction_report_weighs_the_model_against_the_labels(caplog):
    report = label_audit.correction_report(_audit(), [0.6, 0.97])
    # 1 - v at the end: 0.1, 0.9, 0.8, 0.7, 0.6, 0.2 (mean 3.3 / 6); per
    # epoch 1 - 0.6 and 1 - 0.97. The suggestion is the given label in rows
    # 0 and 5, the true one in rows 0, 1, 3, 4, 5; the given label is the
    # true one in rows 0 and 5.
    assert report["model_weight_final"] == pytest.approx(3.3 / 6)
    assert report["model_weight_by_epoch"] == pytest.approx([0.4, 0.03])
    assert report["agreement"] == pytest.approx(2 / 6)
    assert report["model_accuracy"] == pytest.approx(5 / 6)
    assert report["given_label_accuracy"] == pytest.approx(2 / 6)
    assert not report["changed_little"]
    with caplog.at_level("INFO", logger="absl"):
        label_audit._log_correction(report)
    [line] = [r for r in caplog.records if "Label correction" in
              r.getMessage()]
    assert line.levelname == "INFO"
    assert ("55.0% at the end (3.0-40.0% in the epochs that corrected)"
            in line.getMessage())
    assert "right for 83.3%, the given labels for 33.3%" in line.getMessage()

    # V trusting every label at the end and in every epoch: the correction
    # changed little, and the run says so; no truth known, no accuracies
    # claimed.
    trusting = dataclasses.replace(
        _audit(), weight=np.full(6, 0.97, np.float32), corrupted=None,
        true_label=None)
    report = label_audit.correction_report(trusting, [0.99, 0.98])
    assert report["changed_little"]
    assert report["model_weight_final"] == pytest.approx(0.03)
    assert "model_accuracy" not in report
    caplog.clear()
    with caplog.at_level("INFO", logger="absl"):
        label_audit._log_correction(report)
    [line] = [r for r in caplog.records if "Label correction" in
              r.getMessage()]
    assert line.levelname == "WARNING" and "changed little" in line.getMessage()
    assert "where the true label is known" not in line.getMessage()
    # An early epoch that leaned on the model is not "little".
    assert not label_audit.correction_report(trusting, [0.7, 0.99])[
        "changed_little"]


def test_correction_report_counts_only_the_known_labels():
    # Rows 2 and 3 of unknown truth: accuracies over rows 0, 1, 4, 5.
    true = TRUE.copy()
    true[2:4] = -1
    corrupted = (GIVEN != TRUE).astype(np.int8)
    corrupted[2:4] = -1
    report = label_audit.correction_report(dataclasses.replace(
        _audit(), true_label=true, corrupted=corrupted))
    assert report["model_accuracy"] == pytest.approx(4 / 4)
    assert report["given_label_accuracy"] == pytest.approx(2 / 4)
    assert report["model_weight_by_epoch"] is None
    # Agreement needs no truth: over all six.
    assert report["agreement"] == pytest.approx(2 / 6)


def test_relabel_csv_holds_the_confident_changes_and_audit_csv_every_verdict(
        tmp_path):
    audit = _audit()
    names = ("cat", "dog", "fox")
    label_audit.write_relabel_csv(audit, tmp_path / "relabel.csv", names)
    label_audit.write_csv(audit, tmp_path / "audit.csv", names)
    with open(tmp_path / "relabel.csv") as file:
        rows = list(csv.DictReader(file))
    # Most suspect (lowest weight) first.
    assert [(r["file"], r["given_class"], r["suggested_class"],
             r["confidence"]) for r in rows] == [
        ("f1.png", "dog", "fox", "0.9500"), ("f2.png", "fox", "cat", "0.9000")]
    with open(tmp_path / "audit.csv") as file:
        verdicts = {r["file"]: r["verdict"] for r in csv.DictReader(file)}
    assert verdicts == {f"f{i}.png": v for i, v in enumerate(VERDICTS)}


def test_labels_out_carry_the_verdicts_and_a_relabelled_column(tmp_path):
    audit = _audit()
    names = ("cat", "dog", "fox")
    # A table with one unaudited test row between the training rows.
    files = np.array([f"f{i}.png" for i in range(6)] + ["t.png"])
    table = label_file.LabelTable(
        kind="csv", labels=np.append(GIVEN, 1), class_names=names,
        files=files, splits=np.array(["train"] * 6 + ["test"]),
        clean_labels=np.append(TRUE, 1))
    label_file.write_labels(tmp_path / "labels.csv", table, audit,
                            np.arange(6))
    with open(tmp_path / "labels.csv") as file:
        rows = list(csv.DictReader(file))
    assert [r["verdict"] for r in rows] == VERDICTS + ["not_audited"]
    expected = np.where(np.array(VERDICTS) == "relabel", SUGGESTED, GIVEN)
    assert [r["relabelled"] for r in rows] == [
        names[c] for c in expected] + ["dog"]
    assert [r["suggested_label"] for r in rows] == [
        names[c] for c in SUGGESTED] + ["dog"]

    array = label_file.LabelTable(kind="array", labels=GIVEN,
                                  class_names=names)
    label_file.write_labels(tmp_path / "labels.npz", array, audit,
                            np.arange(6))
    with np.load(tmp_path / "labels.npz") as saved:
        np.testing.assert_array_equal(saved["relabelled"], expected)
        np.testing.assert_array_equal(saved["relabel"],
                                      np.array(VERDICTS) == "relabel")
        np.testing.assert_array_equal(saved["suspect"],
                                      np.array(VERDICTS) != "keep")


# An untrained V may rise, and the audit then says so: not what this tests.
@pytest.mark.filterwarnings("ignore:V is")
def test_audit_model_takes_the_confidence_and_refuses_a_bad_one():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype("float32")
    y = rng.integers(0, 3, 40)
    inputs = keras.Input((4,))
    model = mwnet_tf.MetaWeightNet(
        keras.Model(inputs, keras.layers.Dense(3)(inputs)))
    model.compile()
    loose = label_audit.audit_model(model, x, y, relabel_confidence=0.34)
    strict = label_audit.audit_model(model, x, y, relabel_confidence=1.0)
    assert not strict.relabel.any()
    np.testing.assert_array_equal(
        loose.relabel, loose.suspect & (loose.suggested_probability >= 0.34))
    assert loose.relabel.any()
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match=r"in \(0, 1\]"):
            label_audit.audit_model(model, x, y, relabel_confidence=bad)
