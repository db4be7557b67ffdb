"""A meta set chosen by the model itself, for data with no trusted labels.

CMW-Net-SL (Shu et al., TPAMI 2023) has no trusted subset: after a warm-up,
at each epoch it takes the k examples of each given class with the lowest
loss under an exponential moving average (EMA) of the classifier's weights,
scored without augmentation, as the next epoch's meta set (k = 10; they stay
in the training set). Small-loss examples are mostly correctly labelled:
networks fit clean labels before wrong ones, and the average smooths out
the last steps' noise. The labels stay the given ones, so the set is
"pseudo-clean": nothing here knows which labels are right.

`PseudoCleanSelection` is the Keras callback that makes the choice; the
meta pipeline reads the chosen indices from a `tf.Variable`
(`mwnet_tf.data.prepare(meta_source="pseudo_clean")` builds both).

Scoring every example costs an inference pass over the training split per
epoch (a quarter to two fifths of a CE step per training step on
ResNet-32). With `pseudo_clean_pool` under 1 the choice scores a fresh
seeded draw of that fraction of each class instead: the k lowest of a
quarter of a class are nearly as often right (BENCHMARKS.md, "Your own
noisy data") at a quarter of the cost.
"""

import keras
import numpy as np
import tensorflow as tf

from mwnet_tf import meta_gradient as mg


def lowest_loss_per_class(losses, labels, per_class, num_classes):
    """The `per_class` examples of each label with the lowest loss.

    Args:
        losses: Float array [N] of per-example losses.
        labels: Integer array [N] of the labels they were computed for.
        per_class: k, examples per label.
        num_classes: K.

    Returns:
        Sorted int64 indices, k per label (ties broken by index).

    Raises:
        ValueError: If a label has fewer than k examples.
    """
    losses = np.asarray(losses, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    chosen = []
    for label in range(num_classes):
        members = np.flatnonzero(labels == label)
        if members.size < per_class:
            raise ValueError(
                f"A pseudo-clean meta set of {per_class} per class needs "
                f"{per_class} examples labelled {label}; there are "
                f"{members.size}. Lower the number per class.")
        order = np.lexsort((members, losses[members]))
        chosen.append(members[order[:per_class]])
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def check_labels_allow(labels, per_class, num_classes):
    """Raises ValueError, before any training, where a given class is too
    small for k examples per class."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64),
                         minlength=num_classes)
    if counts.min() < per_class:
        label = int(np.argmin(counts))
        raise ValueError(
            f"A pseudo-clean meta set of {per_class} per class needs "
            f"{per_class} training examples labelled {label}; there are "
            f"{counts[label]}. Lower pseudo_clean_per_class to at most "
            f"{counts[label]}.")


class PseudoCleanSelection(keras.callbacks.Callback):
    """At the start of each epoch from `first_epoch` on, chooses the meta
    set: the k lowest-loss examples per given label under the model's EMA
    classifier (`MetaWeightNet.averaged_outputs`, inference mode), and
    writes their indices into `selection`.

    The choice depends only on the EMA weights, which a checkpoint holds,
    and on the epoch (the pool's draw), so a resumed run chooses what the
    uninterrupted one did.

    Args:
        dataset: The training examples as `(x, given_label)` batches, one
            pass in index order, not augmented.
        labels: The given labels [N] (in the dataset's order).
        per_class: k.
        selection: The int64 `tf.Variable` [k * K] the meta pipeline reads.
        first_epoch: The first epoch (0-based) to choose at: one whose
            steps take meta steps, after at least one epoch of training.
        clean_labels: True labels [N] where known (-1 elsewhere), or None:
            then each epoch's log gets `meta_label_precision`, the share of
            the chosen examples whose given label is right, and
            `averaged_model_accuracy`, the share of the examples scored at
            the epoch's start (the EMA as the previous epoch left it) whose
            true label is the EMA classifier's top class: to read against
            the share of given labels that are right (1 - the realised noise
            rate), which the model label correction trusts must beat where
            the labels are wrong. From the first choice on: an epoch before
            it, or with no known true label among the chosen (scored)
            examples, logs none.
        pool: Optional `mwnet_tf.data.preparation.ScoringPool`: score only
            its draw for the epoch (from its own dataset), not `dataset`.
    """

    def __init__(self, dataset, labels, per_class, selection, first_epoch,
                 clean_labels=None, pool=None):
        super().__init__()
        self.dataset = dataset
        self.labels = np.asarray(labels, dtype=np.int64)
        self.per_class = int(per_class)
        self.selection = selection
        self.first_epoch = int(first_epoch)
        self.clean_labels = (None if clean_labels is None
                             else np.asarray(clean_labels, dtype=np.int64))
        self.num_classes = int(selection.shape[0]) // self.per_class
        self.pool = pool
        self.precision = None
        self.averaged_accuracy = None
        self._score = None

    def scores(self, dataset=None):
        """(loss, top class) of every example under the EMA classifier, in
        order (of `dataset`'s `(x, label)` batches; default the training
        set)."""
        if self._score is None:
            model = self.model

            @tf.function
            def score(x, y):
                outputs = model.averaged_outputs(x)
                return (mg.cross_entropy(y, outputs,
                                         from_logits=model.from_logits),
                        keras.ops.argmax(outputs, axis=-1))
            self._score = score
        losses, top = zip(*[(loss.numpy(), top.numpy()) for loss, top in (
            self._score(x, y) for x, y in (
                self.dataset if dataset is None else dataset))])
        return np.concatenate(losses), np.concatenate(top)

    def on_epoch_begin(self, epoch, logs=None):
        if epoch < self.first_epoch:
            return
        if self.pool is None:
            scored = np.arange(self.labels.shape[0])
            losses, top = self.scores()
        else:
            scored = self.pool.draw(self.labels, epoch)
            losses, top = self.scores(self.pool.dataset)
        chosen = scored[lowest_loss_per_class(
            losses, self.labels[scored], self.per_class, self.num_classes)]
        self.selection.assign(chosen)
        self.precision = self.averaged_accuracy = None
        if self.clean_labels is not None:
            known = self.clean_labels[chosen] >= 0
            if known.any():
                self.precision = float(np.mean(
                    self.clean_labels[chosen][known]
                    == self.labels[chosen][known]))
            truth = self.clean_labels[scored]
            if (truth >= 0).any():
                self.averaged_accuracy = float(np.mean(
                    top[truth >= 0] == truth[truth >= 0]))

    def on_epoch_end(self, epoch, logs=None):
        # Only what was measured. (Keras's CSVLogger takes its columns from
        # the first epoch it writes; the runner's HistoryLogger has these
        # from the start.)
        if logs is not None and self.precision is not None:
            logs["meta_label_precision"] = self.precision
        if logs is not None and self.averaged_accuracy is not None:
            logs["averaged_model_accuracy"] = self.averaged_accuracy
