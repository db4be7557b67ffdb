"""Which training labels are likely wrong? A label audit of a trained run.

A trained Meta-Weight-Net gives every training example a weight V(l_i). Where
V falls with the loss, as MW-Net's should, the lowest weights are the labels
most worth a second look. Where it does not (an increasing or U-shaped V, as
a short or partial-scope run can learn), V's lowest weights mark the easiest,
correctly labelled examples, so the audit then ranks by the loss instead and
says so. The audit evaluates the classifier on the training split (inference
mode, no augmentation), describes V's shape over the losses it saw, ranks
the examples most suspect first and writes

- `audit.csv`: one row per example, most suspect first: where it came from
  (index in the loaded split, file), the given and the predicted label, the
  predicted probability, the loss, V's weight, the suggested label and its
  probability (the prediction of the averaged (EMA) classifier that label
  correction trusts, where the run kept one; else the classifier's), the
  verdict, and whether the label is known to be corrupted (1), clean (0)
  or unknown (empty). Verdicts: "relabel" where the suggestion differs
  from the given label with a probability of at least
  `relabel_confidence` (0.9), "suspect" where it differs with less (the
  model doubts the label but has no confident answer: look at it), else
  "keep";
- `relabel.csv`: the "relabel" rows alone, most suspect first: file, given
  and suggested label, confidence: changes to review and apply
  (`mwnet_tf.label_audit.write_relabel_csv`);
- `labels.csv` (or `labels.npz`): the training labels in the kind the user
  gave them (a CSV label file or class folders: CSV; a label array: .npz),
  every row, with the verdict and suggested label beside the given one
  (`mwnet_tf.data.label_file.write_labels`): to review and train again on;
- `suspect_labels.png`: the most suspect images titled "labelled given,
  probably suggested", headed by what they are ranked by (also in
  TensorBoard, under `tensorboard/audit`);
- where the true labels are known: how well the weights find the corrupted
  labels (ROC AUC, precision and recall among the k lowest weights, k the
  number of corrupted labels), beside the same figures for the loss itself,
  how often the suggested label is the true one among those k flagged, and
  among the "relabel" verdicts;
- for a run that corrected labels, how much weight its targets put on the
  model's prediction instead of the label (`correction_report`).

V maps the loss to the weight, so as a ranking it agrees with the loss
wherever V decreases (and reverses it where V increases): the weights rank
examples exactly as the loss of the MW-Net-trained classifier does when V is
decreasing. What the audit adds is that classifier, trained not to fit the
noise, and V's verdict on each loss.

    audit = audit_labels(classifier, weighting_net, data.train_eval,
                         data.train_examples)
    audit.weighting_shape     # {"shape": "decreasing", ...}; audit.ranked_by
    write_csv(audit, "audit.csv", data.class_names)
    detection_report(audit)   # None when no true label is known
"""

import csv
import dataclasses
import io
import json
import os
import textwrap
import time
import warnings
from typing import Optional

import keras
import numpy as np
import tensorflow as tf
from absl import logging
from keras import ops

from mwnet_tf.arguments import check_fraction
from mwnet_tf.data import label_file
from mwnet_tf.files import replace_atomically

# Methods whose weights come from V, so that an audit means something.
METHODS = ("mwnet", "fixed")
# What `run_audit` writes into a work directory.
OUTPUTS = ("audit.csv", "relabel.csv", "suspect_labels.png") + tuple(
    label_file.LABELS_OUT.values())
CSV_COLUMNS = ("rank", "index", "file", "given_label", "given_class",
               "predicted_label", "predicted_class", "predicted_probability",
               "loss", "weight", "suggested_label", "suggested_class",
               "suggested_probability", "verdict", "corrupted")
RELABEL_COLUMNS = ("rank", "index", "file", "given_label", "given_class",
                   "suggested_label", "suggested_class", "confidence")
# A suggestion is the model's belief, not a checked label: a verdict says
# whether it disagrees with the given one, and how sure the model is.
VERDICTS = ("relabel", "suspect", "keep")
# The least probability of a suggestion for a "relabel" verdict. A model
# trained on noisy labels is right about its confident disagreements far
# more often than about the others: on CIFAR-10 with 36-41% wrong labels
# (BENCHMARKS.md, "Your own noisy data"), 85-96% of the suggestions at
# >= 0.9 were the true label, 39-45% of all those that differ.
DEFAULT_RELABEL_CONFIDENCE = 0.9
DEFAULT_GALLERY_SIZE = 36
# What the audit ranks by: V's weight (lowest first) where V decreases over
# the losses it saw, else the loss itself (highest first).
RANKINGS = ("weight", "loss")
# Label correction whose targets put less than this weight on the model's
# prediction, on average, at the end and in every epoch, changed little.
LITTLE_CORRECTION = 0.05


@dataclasses.dataclass(frozen=True)
class LabelAudit:
    """Per-example audit columns, in the order of the training split.

    Attributes:
        index: int64 [N], the example's position in the split as loaded.
        file: str [N] of image files, or None (tensorflow-datasets).
        given_label: int64 [N], the label trained on.
        predicted_label: int64 [N], the classifier's top class.
        predicted_probability: float32 [N], its probability.
        loss: float32 [N], cross-entropy of the given label.
        weight: float32 [N], V(loss).
        corrupted: int8 [N], 1 where the given label is known to be wrong, 0
            where known to be right, -1 where unknown; None when no example's
            true label is known.
        ranked_by: "weight" (lowest first) or "loss" (highest first): what
            `suspect_order` ranks by. `audit_labels` chooses "weight" only
            where V decreases over the losses seen.
        weighting_shape: `weighting_function_shape` of V over these losses,
            or None.
        suggested_label: int64 [N], the label to consider instead: the
            averaged classifier's top class where one is given, else the
            classifier's (None: the same as `predicted_label`).
        suggested_probability: float32 [N], its probability.
        suggested_by: "averaged classifier" or "classifier".
        true_label: int64 [N] of the true labels where known (-1
            elsewhere), or None when none is known.
        relabel_confidence: The least `suggested_probability` of a
            "relabel" verdict.
    """

    index: np.ndarray
    file: Optional[np.ndarray]
    given_label: np.ndarray
    predicted_label: np.ndarray
    predicted_probability: np.ndarray
    loss: np.ndarray
    weight: np.ndarray
    corrupted: Optional[np.ndarray]
    ranked_by: str = "weight"
    weighting_shape: Optional[dict] = None
    suggested_label: Optional[np.ndarray] = None
    suggested_probability: Optional[np.ndarray] = None
    suggested_by: str = "classifier"
    true_label: Optional[np.ndarray] = None
    relabel_confidence: float = DEFAULT_RELABEL_CONFIDENCE

    def __post_init__(self):
        if self.suggested_label is None:
            object.__setattr__(self, "suggested_label", self.predicted_label)
            object.__setattr__(self, "suggested_probability",
                               self.predicted_probability)

    def __len__(self):
        return int(self.index.shape[0])

    @property
    def suspect(self):
        """bool [N]: the suggestion differs from the given label."""
        return self.suggested_label != self.given_label

    @property
    def relabel(self):
        """bool [N]: the suggestion differs, with a probability of at least
        `relabel_confidence`."""
        return self.suspect & (self.suggested_probability
                               >= self.relabel_confidence)

    def verdicts(self):
        """str [N] of `VERDICTS`: relabel, suspect (unsure) or keep."""
        return np.where(self.relabel, VERDICTS[0],
                        np.where(self.suspect, VERDICTS[1], VERDICTS[2]))

    def suspect_order(self):
        """Row order of the CSV and the gallery, most suspect first.

        By weight: ascending weight, ties by descending loss. By loss:
        descending loss, ties by ascending weight.
        """
        if self.ranked_by == "weight":
            return np.lexsort((-self.loss, self.weight))
        if self.ranked_by == "loss":
            return np.lexsort((self.weight, -self.loss))
        raise ValueError(f"ranked_by must be one of {RANKINGS}; got "
                         f"{self.ranked_by!r}.")


def curve_shape(weights):
    """(shape, rise, fall) of a weighting curve sampled at increasing losses.

    Rise and fall are the sums of its increments up and down; a small MLP
    has small wiggles, so the curve counts as decreasing when it rises by at
    most a tenth of what it falls (likewise increasing), as "flat" when it
    moves by less than 0.02 in all, and as "non-monotone" otherwise.
    """
    steps = np.diff(np.asarray(weights, dtype=np.float64))
    rise, fall = float(steps[steps > 0].sum()), float(-steps[steps < 0].sum())
    if rise + fall < 0.02:
        shape = "flat"
    elif rise <= 0.1 * fall:
        shape = "decreasing"
    elif fall <= 0.1 * rise:
        shape = "increasing"
    else:
        shape = "non-monotone"
    return shape, rise, fall


def _curve_over(weighting_net, losses, label, grid_size):
    losses = np.asarray(losses, dtype=np.float64)
    low, high = (np.quantile(losses, [0.01, 0.99]) if losses.size
                 else (0.0, 0.0))
    grid = np.linspace(low, high, grid_size).astype(np.float32)
    labels = None if label is None else np.full(grid.shape, label, np.int32)
    weights = ops.convert_to_numpy(weighting_net(ops.convert_to_tensor(
        grid, weighting_net.compute_dtype), labels)).astype(np.float64)
    shape, rise, fall = curve_shape(weights)
    return {"shape": shape, "loss_range": [float(low), float(high)],
            "weight_at_low_loss": float(weights[0]),
            "weight_at_high_loss": float(weights[-1]),
            "lowest_weight_at_loss": float(grid[int(np.argmin(weights))]),
            "rise": rise, "fall": fall}


def weighting_function_shape(weighting_net, losses, labels=None,
                             grid_size=101):
    """Whether V falls with the loss over the losses it is applied to.

    V is evaluated on an even grid between the 1st and 99th percentiles of
    `losses` (where the examples are, not where V was never asked) and
    classified by `curve_shape`. A class-aware V (CMW-Net) is described per
    task family, over the losses of the examples labelled with the family's
    classes (`labels` are the examples' given labels); its `shape` is the
    families' common shape, or "mixed" when they differ, and its other
    fields are those of the family with the most examples.

    Returns:
        A JSON-serialisable dict: `shape` ("decreasing", "increasing",
        "non-monotone", "mixed" or "flat" when V moves by less than 0.02 in
        all), `loss_range` (the grid's ends), `weight_at_low_loss` /
        `weight_at_high_loss` (V there), `rise`, `fall`, and
        `lowest_weight_at_loss` (where on the grid V is lowest); for a
        class-aware V also `families`: per family with examples, these
        fields and its `family`, `classes` and `examples`.
    """
    if not getattr(weighting_net, "class_aware", False):
        return _curve_over(weighting_net, losses, None, grid_size)
    losses = np.asarray(losses, dtype=np.float64)
    if labels is None:
        raise ValueError("A class-aware V's shape needs the examples' labels.")
    families = np.asarray(weighting_net.class_families)
    family_of_example = families[np.asarray(labels, dtype=np.int64)]
    described = []
    for family in range(weighting_net.num_families):
        members = family_of_example == family
        if not members.any():
            continue
        classes = np.flatnonzero(families == family)
        curve = _curve_over(weighting_net, losses[members], int(classes[0]),
                            grid_size)
        curve.update({"family": family, "classes": classes.tolist(),
                      "examples": int(members.sum())})
        described.append(curve)
    shapes = {curve["shape"] for curve in described}
    largest = max(described, key=lambda curve: curve["examples"])
    summary = {key: value for key, value in largest.items()
               if key not in ("family", "classes", "examples")}
    summary["shape"] = shapes.pop() if len(shapes) == 1 else "mixed"
    summary["families"] = described
    return summary


def audit_labels(classifier, weighting_net, dataset, examples=None,
                 from_logits=True, verbose=1, averaged_classifier=None,
                 relabel_confidence=DEFAULT_RELABEL_CONFIDENCE):
    """Scores every training example with the classifier and V.

    Streams `dataset` batch by batch: only the per-example numbers are kept.

    Args:
        classifier: The trained classifier (inputs -> logits).
        weighting_net: The trained V.
        dataset: `(image, given_label)` batches of the training split, one
            plain pass in the order of `examples` (`PreparedData.train_eval`).
        examples: The training split as a `Split` (`PreparedData.train_examples`):
            where each example came from and, if known, its true label;
            None for any dataset of (image, class index) batches (the
            rows are then numbered in its order, no truth known).
        from_logits: Whether the classifier outputs logits.
        verbose: 1 shows a progress bar, 0 nothing.
        averaged_classifier: The run's averaged (EMA) classifier, if it kept
            one (`MetaWeightNet.averaged_classifier`): its predictions are
            the suggested labels; None: the classifier's are.
        relabel_confidence: The least probability of a suggestion for a
            "relabel" verdict, in (0, 1].

    Returns:
        A `LabelAudit`, ranked by V's weight if V decreases over the losses
        seen (`weighting_function_shape`), else by the loss.

    Raises:
        ValueError: `dataset` does not yield `examples`' labels in order,
            or `relabel_confidence` is not in (0, 1].
    """
    check_relabel_confidence(relabel_confidence)
    loss_dtype = weighting_net.compute_dtype

    def probabilities_of(model, x):
        outputs = ops.cast(model(x, training=False), loss_dtype)
        return outputs, ops.softmax(outputs) if from_logits else outputs

    @tf.function
    def score(x, y):
        outputs, probabilities = probabilities_of(classifier, x)
        losses = keras.losses.sparse_categorical_crossentropy(
            y, outputs, from_logits=from_logits)
        suggested = probabilities
        if averaged_classifier is not None:
            _, suggested = probabilities_of(averaged_classifier, x)
        return (ops.argmax(probabilities, axis=-1),
                ops.max(probabilities, axis=-1), losses,
                weighting_net(losses, y), ops.argmax(suggested, axis=-1),
                ops.max(suggested, axis=-1))

    columns = ([], [], [], [], [], [], [])
    progress = keras.utils.Progbar(
        None if examples is None else len(examples), verbose=verbose,
        unit_name="example")
    for x, y in dataset:
        for column, value in zip(columns, (y,) + score(x, y)):
            column.append(ops.convert_to_numpy(value))
        progress.add(int(y.shape[0]))
    given, predicted, probability, loss, weight, suggested, confidence = (
        np.concatenate(column) if column else np.zeros(0) for column in columns)
    if examples is None:
        index, files, clean = np.arange(len(given), dtype=np.int64), None, None
    else:
        if not np.array_equal(given, examples.labels):
            raise ValueError(
                f"The audit dataset yields {len(given)} labels that are not "
                f"the {len(examples)} given labels of the training split in "
                "order; pass PreparedData.train_eval with "
                "PreparedData.train_examples.")
        index, files = np.asarray(examples.index), examples.files
        clean = examples.clean_labels
    corrupted = None
    if clean is not None:
        corrupted = np.where(clean < 0, -1, clean != given).astype(np.int8)
    shape = weighting_function_shape(weighting_net, loss, given)
    return LabelAudit(
        index=index, file=files, given_label=given.astype(np.int64),
        predicted_label=predicted.astype(np.int64),
        predicted_probability=probability.astype(np.float32),
        loss=loss.astype(np.float32), weight=weight.astype(np.float32),
        corrupted=corrupted,
        ranked_by="weight" if shape["shape"] == "decreasing" else "loss",
        weighting_shape=shape, suggested_label=suggested.astype(np.int64),
        suggested_probability=confidence.astype(np.float32),
        suggested_by=("classifier" if averaged_classifier is None
                      else "averaged classifier"),
        true_label=None if clean is None else np.asarray(clean, np.int64),
        relabel_confidence=float(relabel_confidence))


def check_relabel_confidence(confidence):
    """Raises ValueError unless 0 < confidence <= 1."""
    check_fraction(confidence, "relabel_confidence is the least probability "
                   "of a suggested label to change to")


def audit_model(model, x, y=None, batch_size=256, verbose=0,
                relabel_confidence=DEFAULT_RELABEL_CONFIDENCE):
    """The label audit of any data by a `MetaWeightNet`, from Python.

    Scores every example: its loss, V's weight, the predicted and the
    suggested label (the averaged classifier's, if the model keeps one).

    Args:
        model: A trained `mwnet_tf.MetaWeightNet`.
        x: Inputs (with labels `y`), or a `tf.data.Dataset` of `(x, y)`
            batches, read once in order (not shuffled).
        y: Labels, class indices or one-hot, when `x` is an array.
        batch_size: Batch size for arrays.
        verbose: 1 shows a progress bar.
        relabel_confidence: The least probability of a suggestion for a
            "relabel" verdict.

    Returns:
        A `LabelAudit`, rows in the data's order: `suspect_order()` lists
        the most suspect first, `verdicts()` says which labels to change
        ("relabel": a confident suggestion), to look at ("suspect") or to
        keep. Where V does not fall with the loss its low
        weights do not mark wrong labels: the audit then ranks by the loss
        instead and warns (as the command-line audit does).
    """
    from mwnet_tf import inputs  # Light; the model module already loaded it.
    dataset = x if isinstance(x, tf.data.Dataset) else \
        tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
    dataset = dataset.map(lambda x, y: (x, inputs.integer_labels(y)))
    averaged = (None if model.ema_decay is None  # It keeps no average.
                else model.averaged_classifier())
    audit = audit_labels(model.classifier, model.weighting_net, dataset,
                         from_logits=model.from_logits, verbose=verbose,
                         averaged_classifier=averaged,
                         relabel_confidence=relabel_confidence)
    if audit.ranked_by != "weight":
        warnings.warn(
            f"V is {audit.weighting_shape['shape']} over these losses, not "
            f"decreasing: {why_not_by_weight(audit.weighting_shape)}; the "
            "audit ranks by the loss instead (highest first).", stacklevel=2)
    return audit


def roc_auc(scores, positive):
    """Exact ROC AUC: P(score of a positive > score of a negative), ties 1/2.

    Returns None when there are no positives or no negatives.
    """
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    num_positive = int(positive.sum())
    num_negative = len(positive) - num_positive
    if num_positive == 0 or num_negative == 0:
        return None
    # Mann-Whitney: the rank sum of the positives, ties at their mean rank.
    _, inverse, counts = np.unique(scores, return_inverse=True,
                                   return_counts=True)
    mean_ranks = np.cumsum(counts) - (counts - 1) / 2.0
    rank_sum = mean_ranks[inverse][positive].sum()
    return float((rank_sum - num_positive * (num_positive + 1) / 2.0)
                 / (num_positive * num_negative))


def _detection(suspicion, corrupted, flagged):
    """AUC, precision and recall of the `flagged` most suspicious examples."""
    most_suspicious = np.argsort(-suspicion, kind="stable")[:flagged]
    hits = int(corrupted[most_suspicious].sum())
    return {"roc_auc": roc_auc(suspicion, corrupted),
            "precision": hits / flagged if flagged else None,
            "recall": hits / int(corrupted.sum()) if corrupted.any() else None}


def _relabel_report(audit, known):
    """How right the "relabel" verdicts are, among the known labels."""
    relabel = audit.relabel[known]
    corrupted = audit.corrupted[known].astype(bool)
    right = (audit.suggested_label[known] == audit.true_label[known])
    return {
        "confidence": audit.relabel_confidence,
        "count": int(relabel.sum()),
        # The share of the changes that would make the label right.
        "accuracy": float(right[relabel].mean()) if relabel.any() else None,
        "corrupted": (float(corrupted[relabel].mean()) if relabel.any()
                      else None),
        # The share of the wrong labels the changes would fix.
        "fixes_of_corrupted": (float((relabel & right & corrupted).sum()
                                     / corrupted.sum())
                               if corrupted.any() else None),
    }


def correction_report(audit, epoch_mean_weights=None):
    """How much label correction leaned on the model instead of the labels.

    Each example's target was v onehot(y) + (1 - v) p, p the averaged
    model's prediction: 1 - v is the weight on the model. The audit gives V's
    weights at the end of training, on the training images without
    augmentation; `epoch_mean_weights` (the run's history) gives them over
    training, where the end may differ from the start.

    Args:
        audit: The run's final `LabelAudit`.
        epoch_mean_weights: V's mean weight on the training batches of each
            epoch that corrected (after the warm-up), or None.

    Returns:
        A JSON-serialisable dict: `model_weight_final` (mean 1 - v at the
        end), `model_weight_by_epoch` (1 - each epoch's mean weight; None
        without a history), `changed_little` (the model's weight below
        LITTLE_CORRECTION at the end and in every epoch), `agreement` (the
        suggesting model's top class is the given label), `suggested_by`;
        where true labels are known, `model_accuracy` (that top class is the
        true label) and `given_label_accuracy`, over the same examples.
    """
    final = float(1.0 - audit.weight.astype(np.float64).mean())
    by_epoch = (None if epoch_mean_weights is None
                else [float(1.0 - w) for w in epoch_mean_weights])
    report = {
        "model_weight_final": final,
        "model_weight_by_epoch": by_epoch,
        "changed_little": max([final] + (by_epoch or []))
                          < LITTLE_CORRECTION,
        "agreement": float(np.mean(audit.suggested_label
                                   == audit.given_label)),
        "suggested_by": audit.suggested_by,
    }
    known = (np.zeros(len(audit), bool) if audit.true_label is None
             else audit.true_label >= 0)
    if known.any():
        truth = audit.true_label[known]
        report["model_accuracy"] = float(np.mean(
            audit.suggested_label[known] == truth))
        report["given_label_accuracy"] = float(np.mean(
            audit.given_label[known] == truth))
    return report


def _log_correction(report):
    model = "the " + report["suggested_by"]
    truth = ("" if "model_accuracy" not in report else
             f"; where the true label is known {model} is right for "
             f"{100 * report['model_accuracy']:.1f}%, the given labels for "
             f"{100 * report['given_label_accuracy']:.1f}%")
    during = report["model_weight_by_epoch"]
    during = ("" if not during else
              f" ({100 * min(during):.1f}-{100 * max(during):.1f}% in the "
              f"epochs that corrected)")
    message = (f"weight on {model}'s prediction in the targets: "
               f"{100 * report['model_weight_final']:.1f}% at the end"
               f"{during}; it agrees with "
               f"{100 * report['agreement']:.1f}% of the given labels{truth}")
    if report["changed_little"]:
        logging.warning(
            "Label correction changed little: V trusted the given labels "
            "throughout (%s). Correction needs a model V can trust over the "
            "labels where they are wrong: a longer run, or leave "
            "--label_correction off.", message)
    else:
        logging.info("Label correction: %s.", message)


def detection_report(audit):
    """How well low weights (and, for comparison, high losses) find corrupted labels.

    Over the examples whose true label is known. The k lowest weights (highest
    losses) are flagged, k = the number of corrupted labels, i.e. the
    realised noise rate; precision and recall are then equal by construction
    and say what fraction of the flagged labels are wrong.

    Returns:
        A JSON-serialisable dict, or None when no true label is known.
    """
    if audit.corrupted is None or not (audit.corrupted >= 0).any():
        return None
    known = audit.corrupted >= 0
    corrupted = audit.corrupted[known].astype(bool)
    flagged = int(corrupted.sum())
    # The suggestions for the k examples the audit's own ranking puts
    # first: how often they are the true label (for the labels known wrong
    # among them, whether the fix is right).
    ranked = audit.suspect_order()
    ranked = ranked[known[ranked]][:flagged]
    suggestion = None
    if audit.true_label is not None and flagged:
        right = audit.suggested_label[ranked] == audit.true_label[ranked]
        wrong_labels = audit.corrupted[ranked].astype(bool)
        suggestion = {
            "by": audit.suggested_by, "ranked_by": audit.ranked_by,
            "flagged": int(len(ranked)),
            "accuracy_among_flagged": float(right.mean()),
            "accuracy_among_flagged_corrupted": (
                float(right[wrong_labels].mean()) if wrong_labels.any()
                else None),
            "suspects": int(audit.suspect[known].sum()),
            "suspects_corrupted": float(
                audit.corrupted[known][audit.suspect[known]].mean())
            if audit.suspect[known].any() else None,
            "suspects_suggestion_accuracy": float(np.mean(
                audit.suggested_label[known][audit.suspect[known]]
                == audit.true_label[known][audit.suspect[known]]))
            if audit.suspect[known].any() else None,
            "relabel": _relabel_report(audit, known),
        }
    return {
        "suggestions": suggestion,
        "num_examples_with_known_label": int(known.sum()),
        "realised_noise_rate": float(corrupted.mean()),
        "flagged": flagged,
        "weight": _detection(-audit.weight[known].astype(np.float64),
                             corrupted, flagged),
        "loss": _detection(audit.loss[known].astype(np.float64), corrupted,
                           flagged),
        "mean_weight_clean": float(audit.weight[known][~corrupted].mean())
                             if (~corrupted).any() else None,
        "mean_weight_corrupted": float(audit.weight[known][corrupted].mean())
                                 if corrupted.any() else None,
    }


def write_csv(audit, path, class_names):
    """Writes the audit, most suspect first (`suspect_order`), one row each."""
    order = audit.suspect_order()
    names = np.asarray(class_names, dtype=object)
    verdicts = audit.verdicts()

    def write(file):
        writer = csv.writer(file)
        writer.writerow(CSV_COLUMNS)
        for start in range(0, len(order), 10000):
            rows = order[start:start + 10000]
            corrupted = (audit.corrupted[rows] if audit.corrupted is not None
                         else np.full(len(rows), -1))
            files = (audit.file[rows] if audit.file is not None
                     else [""] * len(rows))
            writer.writerows(
                (start + i + 1, int(audit.index[r]), files[i],
                 int(audit.given_label[r]), names[audit.given_label[r]],
                 int(audit.predicted_label[r]),
                 names[audit.predicted_label[r]],
                 f"{audit.predicted_probability[r]:.4f}",
                 f"{audit.loss[r]:.4f}", f"{audit.weight[r]:.4f}",
                 int(audit.suggested_label[r]),
                 names[audit.suggested_label[r]],
                 f"{audit.suggested_probability[r]:.4f}", verdicts[r],
                 "" if corrupted[i] < 0 else int(corrupted[i]))
                for i, r in enumerate(rows))

    replace_atomically(path, write)


def write_relabel_csv(audit, path, class_names):
    """Writes the "relabel" verdicts (a suggestion other than the given
    label, at least `relabel_confidence` probable), most suspect first:
    the changes to review and apply (the unsure "suspect" rows are in
    audit.csv)."""
    order = audit.suspect_order()
    order = order[audit.relabel[order]]
    names = np.asarray(class_names, dtype=object)

    def write(file):
        writer = csv.writer(file)
        writer.writerow(RELABEL_COLUMNS)
        writer.writerows(
            (rank + 1, int(audit.index[r]),
             audit.file[r] if audit.file is not None else "",
             int(audit.given_label[r]), names[audit.given_label[r]],
             int(audit.suggested_label[r]), names[audit.suggested_label[r]],
             f"{audit.suggested_probability[r]:.4f}")
            for rank, r in enumerate(order))

    replace_atomically(path, write)


def _display_images(examples, rows, size=96):
    """uint8 images of `rows` of a split, for a gallery (files decoded here)."""
    if examples.images is not None:
        return np.asarray(examples.images[rows])
    images = []
    for path in examples.paths[rows]:
        image = tf.io.decode_image(tf.io.read_file(path), channels=3,
                                   expand_animations=False)
        images.append(tf.cast(tf.image.resize_with_pad(image, size, size),
                              tf.uint8).numpy())
    return np.stack(images)


def why_not_by_weight(shape):
    """Why V's lowest weights do not mark likely-wrong labels, per shape
    (a `weighting_function_shape` dict)."""
    if shape["shape"] == "increasing":
        return "its lowest weights mark easy, likely correct labels"
    if shape["shape"] == "flat":
        return "its weights barely differ between examples"
    if shape["shape"] == "mixed":
        return ("its task families' functions differ (" + ", ".join(
            f"family {f['family']} {f['shape']}" for f in shape["families"])
            + "), so a low weight does not mean the same in every family")
    return ("its lowest weights sit at middling losses (lowest at loss "
            f"{shape['lowest_weight_at_loss']:.2f})")


def gallery_heading(audit):
    """What the gallery shows, and why it is ranked as it is."""
    if audit.ranked_by == "weight":
        return ("Suspect labels: the lowest weights V gives (V falls with "
                "the loss)")
    shape = audit.weighting_shape
    return (f"Suspect labels: the highest losses. V is {shape['shape']} "
            f"over the losses seen: {why_not_by_weight(shape)}")


def plot_suspects(audit, examples, class_names, count=DEFAULT_GALLERY_SIZE,
                  path=None):
    """A gallery of the `count` most suspect images, "given -> predicted".

    Headed by what they are ranked by (V's weight, or the loss where V does
    not decrease, with the reason). Titles are red where the given label is
    known to be wrong, green where known to be right. Returns PNG bytes (and
    writes `path`).
    """
    # keras-cv draws the gallery; imported here, as only the audit needs it.
    import keras_cv
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    rows = audit.suspect_order()[:count]
    columns = int(np.ceil(np.sqrt(len(rows))))
    grid_rows = int(np.ceil(len(rows) / columns))
    images = _display_images(examples, rows)
    padding = grid_rows * columns - len(rows)
    if padding:
        images = np.concatenate([images, np.full(
            (padding,) + images.shape[1:], 255, images.dtype)])
    colours = {1: "tab:red", 0: "tab:green"}
    legend = None
    if audit.corrupted is not None:
        from matplotlib import patches
        legend = [patches.Patch(color=colours[1], label="label known wrong"),
                  patches.Patch(color=colours[0], label="label known right")]
    figure = keras_cv.visualization.plot_image_gallery(
        images, value_range=(0, 255), rows=grid_rows, cols=columns,
        scale=1.6, transparent=False, legend_handles=legend)
    if legend is not None:  # keras-cv puts it over the last row; move it up.
        figure.legends[0].set_bbox_to_anchor((0.5, 1.0))
        figure.legends[0].set(ncols=2)
    relabel = audit.relabel
    for axes, row in zip(figure.axes, rows):
        known = -1 if audit.corrupted is None else int(audit.corrupted[row])
        given = class_names[audit.given_label[row]]
        if audit.suspect[row]:
            # "probably" only where the verdict is to relabel.
            verdict = (f"{'probably' if relabel[row] else 'perhaps'} "
                       f"{class_names[audit.suggested_label[row]]} "
                       f"({audit.suggested_probability[row]:.2f})")
        else:
            verdict = "no other label suggested"
        axes.set_title(
            f"labelled {given},\n{verdict}\n"
            f"w={audit.weight[row]:.2f} loss={audit.loss[row]:.1f}",
            fontsize=6, color=colours.get(known, "black"))
    # Above the legend, wrapped by hand (matplotlib's wrap=True stretches
    # the tight bounding box).
    heading = figure.text(0.5, 1.0 + 0.45 / grid_rows,
                          textwrap.fill(gallery_heading(audit), 70),
                          ha="center", va="bottom", fontsize=9)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight",
                   bbox_extra_artists=figure.legends + [heading])
    plt.close(figure)
    if path is not None:
        replace_atomically(path, lambda file: file.write(buffer.getvalue()),
                           mode="wb")
    return buffer.getvalue()


def run_audit(workdir, classifier, weighting_net, data,
              gallery_size=DEFAULT_GALLERY_SIZE, verbose=1,
              averaged_classifier=None,
              relabel_confidence=DEFAULT_RELABEL_CONFIDENCE,
              label_correction=False, epoch_mean_weights=None):
    """Audits a run's training labels and writes the audit into `workdir`.

    Args:
        workdir: The run's work directory.
        classifier, weighting_net: The trained networks.
        data: The run's `PreparedData`.
        gallery_size: Images in `suspect_labels.png`.
        verbose: 1 shows a progress bar.
        averaged_classifier: The run's averaged classifier, if it kept one:
            the suggested labels are its predictions.
        relabel_confidence: The least probability of a suggestion for a
            "relabel" verdict (and a row of relabel.csv).
        label_correction: The run corrected labels: add its
            `correction_report` (`label_correction`) and say whether the
            correction did anything.
        epoch_mean_weights: With `label_correction`, V's mean training
            weight in each epoch that corrected (see `correction_report`).

    Returns:
        A JSON-serialisable summary (for results.json): files written,
        seconds, V's shape over the losses seen (`weighting_function`),
        what the CSV and gallery are ranked by (`ranked_by`), the
        `detection_report` (None when no truth is known) and, with
        `label_correction`, the `correction_report`.
    """
    start = time.perf_counter()
    audit = audit_labels(classifier, weighting_net, data.train_eval,
                         data.train_examples, verbose=verbose,
                         averaged_classifier=averaged_classifier,
                         relabel_confidence=relabel_confidence)
    write_csv(audit, os.path.join(workdir, "audit.csv"), data.class_names)
    write_relabel_csv(audit, os.path.join(workdir, "relabel.csv"),
                      data.class_names)
    labels_out = None
    table = data.label_table
    if table is not None:
        # The labels back out in the kind they came in, with the verdicts.
        labels_out = label_file.LABELS_OUT[table.kind]
        label_file.write_labels(os.path.join(workdir, labels_out), table,
                                audit, data.train_table_rows)
    png = plot_suspects(audit, data.train_examples, data.class_names,
                        count=gallery_size,
                        path=os.path.join(workdir, "suspect_labels.png"))
    writer = tf.summary.create_file_writer(
        os.path.join(workdir, "tensorboard", "audit"))
    with writer.as_default():
        tf.summary.image("suspect_labels", tf.image.decode_png(png)[None],
                         step=0)
    writer.close()
    detection = detection_report(audit)
    summary = {"examples": len(audit), "csv": "audit.csv",
               "relabel_csv": "relabel.csv",
               "labels_out": labels_out,
               "suspects": int(audit.suspect.sum()),
               "relabel": int(audit.relabel.sum()),
               "relabel_confidence": audit.relabel_confidence,
               "suggested_by": audit.suggested_by,
               "gallery": "suspect_labels.png",
               "seconds": time.perf_counter() - start,
               "weighting_function": audit.weighting_shape,
               "ranked_by": audit.ranked_by,
               "detection": detection}
    if label_correction:
        summary["label_correction"] = correction_report(
            audit, epoch_mean_weights)
    logging.info("Label audit of %d training examples in %.0f s: %s/audit.csv",
                 len(audit), summary["seconds"], workdir)
    shape = audit.weighting_shape
    if audit.ranked_by == "weight":
        logging.info("V falls with the loss (%.2f at loss %.2f, %.2f at "
                     "%.2f): suspects are ranked by V's weight, lowest first.",
                     shape["weight_at_low_loss"], shape["loss_range"][0],
                     shape["weight_at_high_loss"], shape["loss_range"][1])
    else:
        logging.warning(
            "V is %s over the losses seen (%.2f at loss %.2f, %.2f at %.2f), "
            "not decreasing: %s, so audit.csv and %s rank by the loss "
            "instead (highest first).", shape["shape"],
            shape["weight_at_low_loss"], shape["loss_range"][0],
            shape["weight_at_high_loss"], shape["loss_range"][1],
            why_not_by_weight(shape), summary["gallery"])
    if detection is not None:
        logging.info(
            "Finding the %d corrupted labels: ROC AUC %.3f by V's weight "
            "(%.3f by the loss); %.1f%% of the %d lowest weights are "
            "corrupted (%.1f%% of the highest losses).", detection["flagged"],
            detection["weight"]["roc_auc"] or float("nan"),
            detection["loss"]["roc_auc"] or float("nan"),
            100 * (detection["weight"]["precision"] or 0),
            detection["flagged"],
            100 * (detection["loss"]["precision"] or 0))
        suggestions = detection.get("suggestions")
        if suggestions:
            logging.info(
                "Suggested labels (%s): right for %.1f%% of the %d flagged "
                "examples (%s of those whose label is wrong).",
                suggestions["by"],
                100 * suggestions["accuracy_among_flagged"],
                suggestions["flagged"],
                "n/a" if suggestions["accuracy_among_flagged_corrupted"]
                is None else
                f"{100 * suggestions['accuracy_among_flagged_corrupted']:.1f}%")
        relabel = suggestions and suggestions["relabel"]
        if relabel and relabel["count"]:
            logging.info(
                "Changes suggested with probability >= %.2f: the true label "
                "for %.1f%% of the %d (they fix %.1f%% of the wrong labels).",
                relabel["confidence"], 100 * relabel["accuracy"],
                relabel["count"], 100 * (relabel["fixes_of_corrupted"] or 0))
    if label_correction:
        _log_correction(summary["label_correction"])
    logging.info(
        "%d labels to change (a suggestion at least %.2f probable) in "
        "%s/relabel.csv, to review and apply; %d more suspect without a "
        "confident suggestion (audit.csv, verdict \"suspect\").",
        summary["relabel"], audit.relabel_confidence, workdir,
        summary["suspects"] - summary["relabel"])
    json.dumps(summary)  # Fails here, not after training, if not JSON.
    return summary
