"""How well does the training loss tell corrupted labels from clean ones?

    python bench/loss_separation.py /tmp/mwnet_accuracy/flip40_ce_seed1 ...

A weighting function V(loss) can only down-weight corrupted examples as far as
their losses differ from those of clean ones. For each finished run directory
(of `python -m mwnet_tf.main`) this rebuilds the run's noisy training set from
its config.json (same seed, so the same labels and the same corrupted
examples), passes it once through the saved classifier (inference mode,
with the run's augmentation) and prints:

- the mean loss of clean and of corrupted examples;
- AUC, the probability that a random corrupted example has a higher loss than
  a random clean one (0.5: the loss carries no information; 1: a threshold
  on the loss separates them perfectly);
- for Meta-Weight-Net runs, the mean weight V(loss) of clean and corrupted
  examples at these losses;
- with `--l2rw_batches=N`, on N training batches (each with a meta batch), the
  share of clean and of corrupted examples to which Learning to Reweight
  would give a non-zero weight at this classifier (its weights are the
  meta-gradient clipped at zero; the share does not depend on the learning
  rate, which only scales the meta-gradient), and its effective batch size
  (sum w)^2 / sum w^2 as a share of the batch: how many examples carry the
  step.
"""

import argparse
import json
import os
import sys

import numpy as np



def auc(negatives, positives):
    """P(positive > negative) + P(tie) / 2, from the Mann-Whitney rank sum."""
    values = np.concatenate([negatives, positives])
    order = values.argsort(kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    # Average ranks over ties.
    sorted_values = values[order]
    _, start, counts = np.unique(sorted_values, return_index=True,
                                 return_counts=True)
    for first, count in zip(start, counts):
        if count > 1:
            ranks[order[first:first + count]] = first + (count + 1) / 2
    positive_ranks = ranks[len(negatives):].sum()
    n_pos, n_neg = len(positives), len(negatives)
    return (positive_ranks - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def load_run(workdir):
    """The run's config, its data (same seed, same labels) and classifier."""
    import keras

    import mwnet_tf  # noqa: F401  Registers the custom layers for loading.
    import zoo  # noqa: F401
    from mwnet_tf import data as data_lib
    with open(os.path.join(workdir, "config.json")) as file:
        config = json.load(file)
    data = data_lib.prepare(
        config["dataset"], data_dir=config["data_dir"],
        path=config["data_path"], noise=config["noise"],
        noise_rate=config["noise_rate"],
        imbalance_factor=config["imbalance_factor"],
        meta_per_class=config["meta_per_class"], seed=config["seed"],
        batch_size=config["batch_size"],
        meta_batch_size=config["meta_batch_size"],
        cache_dir=config["cache_dir"], train_subset=config["train_subset"],
        download=False)
    classifier = keras.saving.load_model(
        os.path.join(workdir, "classifier.keras"), compile=False)
    return config, data, classifier


def training_losses(data, classifier):
    """Per-example losses and corruption flags of one epoch of the data."""
    import keras
    import tensorflow as tf
    predict = tf.function(lambda images: classifier(images, training=False))
    losses, corrupted = [], []
    for images, labels, is_corrupted in data.train:
        logits = tf.cast(predict(images), tf.float32)
        losses.append(keras.losses.sparse_categorical_crossentropy(
            labels, logits, from_logits=True).numpy())
        corrupted.append(is_corrupted.numpy() > 0.5)
    return np.concatenate(losses), np.concatenate(corrupted)


def l2rw_statistics(data, classifier, num_batches):
    """L2RW's non-zero shares (clean, corrupted) and effective batch share."""
    import tensorflow as tf

    import mwnet_tf
    model = mwnet_tf.MetaWeightNet(classifier, method="l2rw")
    model.compile()

    @tf.function
    def raw_weights(x, y, x_meta, y_meta):
        # The training step's own pieces, without its update.
        tape, _, losses, state = model._forward(x, y)
        return model._l2rw_weights(tape, losses, state, x_meta, y_meta)

    positive, corrupted, effective = [], [], []
    batches = zip(data.train.take(num_batches), data.meta)
    for (x, y, is_corrupted), (x_meta, y_meta) in batches:
        weights = raw_weights(x, y, x_meta, y_meta).numpy().astype("float64")
        positive.append(weights > 0)
        corrupted.append(is_corrupted.numpy() > 0.5)
        effective.append(weights.sum() ** 2 / max((weights ** 2).sum(), 1e-300)
                         / len(weights))
    positive, corrupted = np.concatenate(positive), np.concatenate(corrupted)
    return {"l2rw_clean_share": float(positive[~corrupted].mean()),
            "l2rw_corrupted_share": float(positive[corrupted].mean()),
            "l2rw_effective_share": float(np.mean(effective))}


def separation(workdir, l2rw_batches=0):
    import keras
    config, data, classifier = load_run(workdir)
    losses, corrupted = training_losses(data, classifier)
    clean_losses, corrupted_losses = losses[~corrupted], losses[corrupted]
    row = {"run": os.path.basename(os.path.normpath(workdir)),
           "method": config["method"], "noise": config["noise"],
           "clean_loss": float(clean_losses.mean()),
           "corrupted_loss": float(corrupted_losses.mean()),
           "auc": float(auc(clean_losses, corrupted_losses))}
    net_path = os.path.join(workdir, "weighting_net.keras")
    if config["method"] == "mwnet" and os.path.exists(net_path):
        net = keras.saving.load_model(net_path, compile=False)
        weights = np.asarray(net(losses.astype("float32"))).reshape(-1)
        row["clean_weight"] = float(weights[~corrupted].mean())
        row["corrupted_weight"] = float(weights[corrupted].mean())
    if l2rw_batches:
        row.update(l2rw_statistics(data, classifier, l2rw_batches))
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdirs", nargs="+",
                        help="finished run directories (with config.json and "
                             "classifier.keras)")
    parser.add_argument("--l2rw_batches", type=int, default=0,
                        help="batches on which to count L2RW's non-zero "
                             "weights (0: skip)")
    args = parser.parse_args()
    for workdir in args.workdirs:
        for name in ("config.json", "classifier.keras"):
            if not os.path.exists(os.path.join(workdir, name)):
                sys.exit(f"loss_separation.py: error: {workdir} has no {name}; "
                         "give the directory of a finished run.")
    columns = ["clean_loss", "corrupted_loss", "auc", "clean_weight",
               "corrupted_weight", "l2rw_clean_share", "l2rw_corrupted_share",
               "l2rw_effective_share"]
    print("| run | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for workdir in args.workdirs:
        row = separation(workdir, args.l2rw_batches)
        print(f"| {row['run']} | " + " | ".join(
            f"{row[c]:.3f}" if c in row else "-" for c in columns) + " |",
            flush=True)


if __name__ == "__main__":
    main()
