"""How clean is a pseudo-clean meta set chosen from a part of each class?

    python bench/pseudo_clean_pool.py /tmp/mwnet_accuracy/uniform40_mwnet_pseudo_seed1 ...

`--pseudo_clean_pool=f` scores a fresh draw of a fraction f of each given
class per epoch and takes the k lowest losses of each class from it. This
replays that choice on finished runs' audits (`audit.csv`: each training
example's loss and whether its label is known corrupted), many draws per
fraction, and prints a Markdown table of the share of chosen labels that
are right: the mean over draws and the worst draw.

The audit's loss is the final classifier's, not the averaged classifier's
during training that the run chose with: a stand-in, which ranks the same
examples low where the two agree.
"""

import argparse
import csv
import os

import numpy as np

from mwnet_tf import pseudo_clean
from mwnet_tf.data import meta_split


def read_audit(workdir):
    """(given labels, losses, corrupted) of a run's audit.csv, known rows."""
    with open(os.path.join(workdir, "audit.csv")) as file:
        rows = [row for row in csv.DictReader(file) if row["corrupted"]]
    if not rows:
        raise SystemExit(f"{workdir}/audit.csv knows no true label: the "
                         "share of right labels cannot be measured.")
    return (np.array([int(row["given_label"]) for row in rows]),
            np.array([float(row["loss"]) for row in rows]),
            np.array([row["corrupted"] == "1" for row in rows]))


def chosen_right(labels, losses, corrupted, fraction, per_class, draw):
    """The share of right labels among what the library chooses: the k
    lowest losses of each class within draw number `draw` of `fraction` of
    each class (`meta_split.pool_sizes`, `draw_pool`,
    `pseudo_clean.lowest_loss_per_class`, as `--pseudo_clean_pool` does)."""
    classes, labels = np.unique(labels, return_inverse=True)
    sizes = meta_split.pool_sizes(labels, fraction, per_class, len(classes))
    pool = meta_split.draw_pool(labels, sizes, seed=0, epoch=draw)
    chosen = pool[pseudo_clean.lowest_loss_per_class(
        losses[pool], labels[pool], per_class, len(classes))]
    return float(np.mean(~corrupted[chosen]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdirs", nargs="+")
    parser.add_argument("--fractions", default="1,0.5,0.25,0.125")
    parser.add_argument("--per_class", type=int, default=10)
    parser.add_argument("--draws", type=int, default=200)
    args = parser.parse_args()
    fractions = [float(f) for f in args.fractions.split(",")]
    print("| run | " + " | ".join(f"pool {f:g}: mean / worst"
                                   for f in fractions) + " |")
    print("|---|" + "---|" * len(fractions))
    for workdir in args.workdirs:
        labels, losses, corrupted = read_audit(workdir)
        cells = []
        for fraction in fractions:
            shares = [chosen_right(labels, losses, corrupted, fraction,
                                   args.per_class, draw)
                      for draw in range(1 if fraction == 1 else args.draws)]
            cells.append(f"{np.mean(shares):.3f} / {np.min(shares):.2f}")
        print(f"| {os.path.basename(os.path.normpath(workdir))} | "
              + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
