"""Seconds per step of MetaWeightNet over replicas, with and without
synchronized BatchNorm.

    python bench/distributed.py              # ResNet-32, batch 64 + 64 meta
    python bench/distributed.py --steps 10 --repeats 1
    python bench/distributed.py --methods mwnet --batch_norms synchronized

Times CE and MW-Net on one device, on two replicas in one process
(MirroredStrategy over two logical CPUs) and on two worker processes on
localhost (MultiWorkerMirroredStrategy, the cluster in TF_CONFIG), each with
per-replica and with synchronized BatchNorm, at the same global batch. On
this machine's two cores the replicas share the cores, so the table shows
what the strategies and the all-reduces cost, not a speed-up: on N machines
compute divides by N and these costs remain. Prints a Markdown table for
BENCHMARKS.md.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

import step_time  # bench/, the script's own directory (quiets TF's C++ logs)

DISTRIBUTES = ("none", "mirrored", "multi_worker")
METHODS = ("ce", "mwnet")
BATCH_NORMS = {"per_replica": False, "synchronized": True}


def measure(distribute, method, synchronized, model_name, batch_size, steps,
            warmup):
    """Runs one configuration in this process; returns its median step."""
    import tensorflow as tf

    if distribute == "mirrored":  # Before the runtime starts.
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np

    import mwnet_tf
    import zoo
    from mwnet_tf import distribute as distribute_lib

    if distribute == "mirrored":
        strategy = tf.distribute.MirroredStrategy(
            [d.name for d in tf.config.list_logical_devices("CPU")])
    else:
        strategy = distribute_lib.make_strategy(distribute)
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)

    def batch():
        return (rng.normal(size=(batch_size, 32, 32, 3)).astype("float32"),
                rng.integers(0, 10, batch_size))

    dataset = tf.data.Dataset.from_tensors((batch(), batch())).repeat()
    with strategy.scope():
        model = mwnet_tf.MetaWeightNet(
            zoo.build(model_name, 10, synchronized_batch_norm=synchronized),
            method=method)
        model.compile()

    return {"median_s": step_time.median_step_seconds(model, dataset, steps,
                                                      warmup),
            "replicas": strategy.num_replicas_in_sync}


def run_one(config, args):
    """One configuration in fresh process(es); returns its result dict."""
    command = [sys.executable, os.path.abspath(__file__), "--one",
               ",".join(map(str, config)), "--model", args.model,
               "--batch_size", str(args.batch_size), "--steps",
               str(args.steps), "--warmup", str(args.warmup)]
    if config[0] != "multi_worker":
        output = subprocess.run(command, check=True, capture_output=True,
                                text=True).stdout
        return json.loads(output.strip().splitlines()[-1])
    from mwnet_tf.testing import local_cluster
    with tempfile.TemporaryDirectory() as logs:
        chief_log = local_cluster.run_workers(command, logs, timeout=1800)[0]
    return json.loads(chief_log.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet32")
    parser.add_argument("--batch_size", type=int, default=64,
                        help="global batch (and meta batch)")
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2,
                        help="round-robin repeats of every configuration")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="comma-separated, of " + ", ".join(METHODS))
    parser.add_argument("--batch_norms", default=",".join(BATCH_NORMS),
                        help="comma-separated, of " + ", ".join(BATCH_NORMS)
                        + "; a ratio whose baseline was not timed shows -")
    parser.add_argument("--one", help="internal: DISTRIBUTE,METHOD,SYNC")
    args = parser.parse_args()
    methods = args.methods.split(",")
    batch_norms = args.batch_norms.split(",")
    unknown = ([m for m in methods if m not in METHODS]
               + [b for b in batch_norms if b not in BATCH_NORMS])
    if unknown:
        parser.error(f"unknown {', '.join(unknown)}; methods are "
                     f"{', '.join(METHODS)}, batch norms "
                     f"{', '.join(BATCH_NORMS)}")
    if args.one:
        distribute, method, synchronized = args.one.split(",")
        print(json.dumps(measure(distribute, method, synchronized == "True",
                                 args.model, args.batch_size, args.steps,
                                 args.warmup)), flush=True)
        return
    configs = [(distribute, method, BATCH_NORMS[batch_norm])
               for distribute in DISTRIBUTES for method in methods
               for batch_norm in batch_norms]
    runs = {config: [] for config in configs}
    for repeat in range(args.repeats):
        for config in configs:
            result = run_one(config, args)
            runs[config].append(result)
            print(f"# repeat {repeat + 1}: {config}: {result}",
                  file=sys.stderr, flush=True)
    median = {config: statistics.median(r["median_s"] for r in results)
              for config, results in runs.items()}
    print(f"{args.model}, global batch {args.batch_size} + "
          f"{args.batch_size} meta, float32; median over {args.repeats} "
          f"processes of each one's median of {args.steps} steps after "
          f"{args.warmup} warm-up; {os.cpu_count()} CPUs shared by all "
          "replicas\n")
    print("| strategy | replicas | method | BatchNorm | s / step | "
          "x same on one device | x per-replica BN |")
    print("|---|---|---|---|---|---|---|")

    def ratio(seconds, baseline):
        return (f"{seconds / median[baseline]:.2f}" if baseline in median
                else "-")

    for (distribute, method, synchronized), seconds in median.items():
        replicas = runs[distribute, method, synchronized][0]["replicas"]
        print(f"| {distribute} | {replicas} | {method} | "
              f"{'synchronized' if synchronized else 'per replica'} | "
              f"{seconds:.3f} | "
              f"{ratio(seconds, ('none', method, synchronized))} | "
              f"{ratio(seconds, (distribute, method, False))} |")


if __name__ == "__main__":
    main()
