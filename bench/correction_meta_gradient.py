"""Which way does the meta step push V's weights under label correction?

    python bench/correction_meta_gradient.py RUN_WORKDIR [--batches=5]

For a run that kept an averaged (EMA) classifier (`--label_correction` or
`--meta_source=pseudo_clean`), at its saved weights: the per-example
meta-gradient d J / d v_i, J the meta loss one lookahead step ahead, with
each training example's target v_i onehot(y_i) + (1 - v_i) p_i (p_i the
averaged classifier's prediction) and, for comparison, with MW-Net's plain
weighted loss v_i CE(f(x_i), y_i). d J / d v_i < 0 means the meta step
raises v_i: with correction, trust the given label more than the model;
without, give the example more weight. Reported separately for clean and
corrupted labels (the run's noise is synthetic, so which is which is
known), as Markdown.

The meta batch is the run's pseudo-clean choice made now: the 10 examples
per given class with the lowest loss under the averaged classifier. The
training batches are the first `--batches` of the training split in order,
without augmentation; every v_i starts at `--weight` (V's weights at the
end of a warm-up are about 0.6). The lookahead is MW-Net's (plain SGD at
`--lr`, the classifier's learning rate during the first epochs).
"""

import argparse
import json
import os

import keras
import numpy as np
import tensorflow as tf

from mwnet_tf import meta_gradient as mg
from mwnet_tf import pseudo_clean
from mwnet_tf.runner import experiment
from mwnet_tf.runner.run_config import RunConfig


def per_example_meta_gradients(classifier, averaged, x, y, x_meta, y_meta,
                               weight, lr, corrected):
    """d J / d v_i at v_i = `weight` for one training batch."""
    loss = mg.cross_entropy
    soft = (keras.ops.softmax(averaged(x, training=False)) if corrected
            else None)
    forward = mg.Forward(classifier, x, y, loss, soft_targets=soft)
    weights = tf.Variable(np.full(len(y), weight, np.float32))
    lookahead = mg.Lookahead(keras.optimizers.SGD(lr))
    with tf.GradientTape() as tape:
        objective = mg.meta_objective(
            forward, mg.loss_coefficients(weights, "mean", corrected),
            lookahead, x_meta, y_meta, loss)
    return tape.gradient(objective.loss, weights).numpy()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("workdir")
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--weight", type=float, default=0.6)
    parser.add_argument("--lr", type=float, default=0.1)
    args = parser.parse_args()

    with open(os.path.join(args.workdir, "config.json")) as file:
        config = RunConfig.from_dict(json.load(file))
    data = experiment.prepare_data(config)
    classifier = keras.saving.load_model(
        os.path.join(args.workdir, "classifier.keras"), compile=False)
    averaged = keras.saving.load_model(
        os.path.join(args.workdir, "averaged_classifier.keras"),
        compile=False)
    images, labels, top = [], [], []
    for x, y in data.train_eval:
        outputs = averaged(x, training=False)
        images.append(x.numpy())
        labels.append(y.numpy())
        top.append(outputs.numpy())
    images = np.concatenate(images)
    labels = np.concatenate(labels).astype(np.int64)
    outputs = np.concatenate(top)
    losses = mg.cross_entropy(labels, outputs).numpy()
    clean = data.train_examples.clean_labels
    chosen = pseudo_clean.lowest_loss_per_class(losses, labels, 10,
                                                data.num_classes)
    x_meta, y_meta = images[chosen], labels[chosen]
    corrupted = labels != clean
    print(f"# {args.workdir}: averaged classifier right for "
          f"{np.mean(outputs.argmax(-1) == clean):.3f} of the training "
          f"labels ({np.mean(outputs.argmax(-1)[corrupted] == clean[corrupted]):.3f}"
          f" of the corrupted), given labels {np.mean(~corrupted):.3f}; "
          f"meta labels right {np.mean(y_meta == clean[chosen]):.2f}; "
          f"mean top probability of the averaged model "
          f"{np.mean(keras.ops.softmax(outputs).numpy().max(-1)):.2f}")

    batch = config.batch_size
    rows = ["| loss | labels | examples | v rises: corrected | mean d J / d v: "
            "corrected | v rises: plain MW-Net | mean d J / d v: plain |",
            "|---|---|---|---|---|---|---|"]
    gradients = {True: [], False: []}
    for b in range(args.batches):
        part = slice(b * batch, (b + 1) * batch)
        for corrected in (True, False):
            gradients[corrected].append(per_example_meta_gradients(
                classifier, averaged, images[part], labels[part], x_meta,
                y_meta, args.weight, args.lr, corrected))
    seen = slice(0, args.batches * batch)
    example_losses = mg.cross_entropy(
        labels[seen], classifier.predict(images[seen], verbose=0)).numpy()
    median = np.median(example_losses)
    for wrong in (False, True):
        for half, in_half in (("below median", example_losses < median),
                              ("above median", example_losses >= median)):
            mask = (corrupted[seen] == wrong) & in_half
            cells = []
            for corrected in (True, False):
                g = np.concatenate(gradients[corrected])[mask]
                cells += [f"{np.mean(g < 0):.2f}", f"{g.mean():.2e}"]
            rows.append(f"| {half} | {'corrupted' if wrong else 'clean'} | "
                        f"{int(mask.sum())} | " + " | ".join(cells) + " |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
