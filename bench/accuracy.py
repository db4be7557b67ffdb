"""MW-Net vs CE vs L2RW on real CIFAR-10 under a reduced protocol.

    python bench/accuracy.py                          # all runs not yet done
    python bench/accuracy.py --noises=flip --seeds=1  # a subset
    python bench/accuracy.py --table_only             # print the table
    python bench/accuracy.py --table_only --figure=docs/accuracy.png

Each run is `python -m mwnet_tf.main` in its own process with the flags of
PROTOCOL below; when it finishes, its results.json, per-epoch history and (for
mwnet) the learned weighting function are written to
`bench/results/<noise>40_<method>_seed<seed>.json`, so finished runs are never
lost and the table grows run by run. A run whose result file exists is skipped.

The reduced protocol (the paper trains 60-120 epochs on 49k images):
- ResNet-32, the CIFAR-10 JPEG archive of ../shared/data, 40% uniform or flip
  noise, a 1,000-image clean meta set (100 per class) drawn from the training
  split, the same corrupted labels for every method (same seed);
- reduction 1: a 10,000-image training subset (seeded, after the meta split);
- reduction 2: 20 epochs, learning rate 0.1 divided by 10 after epochs 15 and
  18 (the paper's two decays, compressed);
- reduction 3: mixed_bfloat16 compute (losses and weights stay float32);
- everything else as in the paper (flags/base.cfg): SGD 0.1 Nesterov, L2 5e-4,
  Adam 1e-3 with L2 1e-4 for V, batch 100 + 100.
"""

import argparse
import csv
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCHIVE = os.path.join(os.path.dirname(REPO), "shared", "data",
                       "cifar10-jpeg.tar.gz")
PROTOCOL = [
    "--flagfile=flags/base.cfg", "--dataset=folder", "--model=resnet32",
    "--noise_rate=0.4", "--meta_per_class=100", "--train_subset=10000",
    "--epochs=20", "--lr_decay_epochs=15,18", "--mixed_bfloat16",
    "--verbose=2",
]
METHODS = ("ce", "mwnet", "l2rw")
NOISES = ("uniform", "flip")
# Paper, full schedule: (setting, model, MW-Net, CE baseline).
PAPER = {"uniform": ("WRN-28-10", 89.27, 68.07),
         "flip": ("ResNet-32", 87.54, 70.77)}


def result_path(results_dir, noise, method, seed):
    return os.path.join(results_dir, f"{noise}40_{method}_seed{seed}.json")


def read_history(path):
    rows = {}
    with open(path) as file:
        for row in csv.DictReader(file):
            rows[int(row["epoch"])] = {k: float(v) for k, v in row.items() if v}
    return [rows[e] for e in sorted(rows)]


def run_one(noise, method, seed, archive, scratch, results_dir):
    """Trains one configuration and stores its results; returns the record."""
    workdir = os.path.join(scratch, f"{noise}40_{method}_seed{seed}")
    command = [sys.executable, "-m", "mwnet_tf.main", *PROTOCOL,
               f"--data_path={archive}", f"--noise={noise}",
               f"--method={method}", f"--seed={seed}", f"--workdir={workdir}"]
    print("#", " ".join(command[1:]), flush=True)
    subprocess.run(command, cwd=REPO, check=True)
    with open(os.path.join(workdir, "results.json")) as file:
        results = json.load(file)
    history = read_history(os.path.join(workdir, "history.csv"))
    record = {
        "noise": noise, "method": method, "seed": seed,
        "command": "python -m mwnet_tf.main " + " ".join(
            arg for arg in command[3:] if not arg.startswith("--workdir")),
        "results": results,
        "history": {key: [row.get(key) for row in history]
                    for key in ("val_accuracy", "meta_eval_accuracy",
                                "clean_weight", "corrupted_weight",
                                "epoch_seconds")},
    }
    if method == "mwnet":
        import keras
        import numpy as np
        sys.path.insert(0, REPO)
        import mwnet_tf  # noqa: F401  Registers WeightingNet for loading.
        net = keras.saving.load_model(os.path.join(workdir,
                                                   "weighting_net.keras"))
        losses = np.linspace(0.0, 10.0, 101, dtype="float32")
        record["weighting_function"] = {
            "loss": losses.tolist(),
            "weight": np.asarray(net(losses)).astype(float).tolist()}
    os.makedirs(results_dir, exist_ok=True)
    with open(result_path(results_dir, noise, method, seed), "w") as file:
        json.dump(record, file, indent=1)
    return record


def load_records(results_dir):
    records = []
    for name in sorted(os.listdir(results_dir)) if os.path.isdir(
            results_dir) else []:
        if name.endswith(".json"):
            with open(os.path.join(results_dir, name)) as file:
                records.append(json.load(file))
    return records


def table(records):
    lines = ["| noise | method | seed | final test acc | test acc at best "
             "meta acc | clean weight | corrupted weight | s / epoch |",
             "|---|---|---|---|---|---|---|---|"]
    for r in sorted(records, key=lambda r: (r["noise"], r["method"],
                                            r["seed"])):
        res = r["results"]

        def fmt(value, pattern="{:.3f}"):
            return "-" if value is None else pattern.format(value)

        lines.append(
            f"| {r['noise']} 40% | {r['method']} | {r['seed']} | "
            f"{fmt(100 * res['final_test_accuracy'], '{:.2f}')} | "
            f"{fmt(100 * res['test_accuracy_at_best_meta_accuracy'], '{:.2f}')}"
            f" | {fmt(res.get('final_clean_weight'))} | "
            f"{fmt(res.get('final_corrupted_weight'))} | "
            f"{fmt(res.get('seconds_per_epoch'), '{:.0f}')} |")
    return "\n".join(lines)


def _summary(values):
    seeds = f"{len(values)} seed" + ("s" if len(values) > 1 else "")
    return (f"{sum(values) / len(values):.2f} "
            f"({max(values) - min(values):.2f}, {seeds})")


def comparison(records):
    """MW-Net and L2RW against CE, per noise.

    Per seed, the method's final test accuracy minus CE's (same seed, hence
    the same corrupted labels); then the mean of each over the seeds run so
    far and its range (max - min). The gain is clear of the seed-to-seed
    spread when the method's worst seed beats CE's best seed, i.e. when the
    last column is positive.
    """
    final = {(r["noise"], r["method"], r["seed"]):
             100 * r["results"]["final_test_accuracy"] for r in records}
    lines = ["| noise | method | minus CE, per seed | method: mean (range) | "
             "CE: mean (range) | worst seed minus best CE seed |",
             "|---|---|---|---|---|---|"]
    for noise in NOISES:
        ce = [final[key] for key in sorted(final) if key[:2] == (noise, "ce")]
        for method in ("mwnet", "l2rw"):
            seeds = sorted(s for n, m, s in final
                           if (n, m) == (noise, method)
                           and (noise, "ce", s) in final)
            if not seeds:
                continue
            ours = [final[noise, method, s] for s in sorted(
                s for n, m, s in final if (n, m) == (noise, method))]
            gains = ", ".join(
                f"{final[noise, method, s] - final[noise, 'ce', s]:+.2f} "
                f"(seed {s})" for s in seeds)
            lines.append(
                f"| {noise} 40% | {method} | {gains} | {_summary(ours)} | "
                f"{_summary(ce)} | {min(ours) - max(ce):+.2f} |")
    return "\n".join(lines)


def figure(records, path):
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), dpi=100)
    for r in records:
        if "weighting_function" in r:
            curve = r["weighting_function"]
            axes[0].plot(curve["loss"], curve["weight"],
                         label=f"{r['noise']} seed {r['seed']}")
    axes[0].set(title="learned weighting function (MW-Net)",
                xlabel="training loss", ylabel="weight")
    for axis, noise in zip(axes[1:], NOISES):
        for r in records:
            if r["noise"] == noise:
                accuracy = [100 * a for a in r["history"]["val_accuracy"]]
                axis.plot(range(1, len(accuracy) + 1), accuracy,
                          label=f"{r['method']} seed {r['seed']}")
        axis.set(title=f"CIFAR-10, 40% {noise} noise", xlabel="epoch",
                 ylabel="test accuracy (%)")
    for axis in axes:
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noises", default=",".join(NOISES))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--archive", default=ARCHIVE)
    parser.add_argument("--scratch", default="/tmp/mwnet_accuracy",
                        help="work directories of the runs")
    parser.add_argument("--results_dir",
                        default=os.path.join(REPO, "bench", "results"))
    parser.add_argument("--table_only", action="store_true")
    parser.add_argument("--figure", help="write the figure (PNG) here")
    args = parser.parse_args()
    if not args.table_only:
        if not os.path.isfile(args.archive):
            sys.exit(f"accuracy.py: error: --archive={args.archive} is not a "
                     "file; give the CIFAR-10 JPEG archive.")
        for seed in (int(s) for s in args.seeds.split(",")):
            for noise in args.noises.split(","):
                for method in args.methods.split(","):
                    if os.path.exists(result_path(args.results_dir, noise,
                                                  method, seed)):
                        continue
                    run_one(noise, method, seed, args.archive, args.scratch,
                            args.results_dir)
    records = load_records(args.results_dir)
    print(table(records))
    print()
    print(comparison(records))
    if args.figure:
        figure(records, args.figure)


if __name__ == "__main__":
    main()
