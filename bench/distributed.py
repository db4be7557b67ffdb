"""Seconds per step of MetaWeightNet over replicas, with and without
synchronized BatchNorm.

    python bench/distributed.py              # ResNet-32, batch 64 + 64 meta
    python bench/distributed.py --steps 10 --repeats 1
    python bench/distributed.py --methods mwnet --batch_norms synchronized
    python bench/distributed.py --input      # input work per worker

Times CE and MW-Net on one device, on two replicas in one process
(MirroredStrategy over two logical CPUs) and on two worker processes on
localhost (MultiWorkerMirroredStrategy, the cluster in TF_CONFIG), each with
per-replica and with synchronized BatchNorm, at the same global batch. On
this machine's two cores the replicas share the cores, so the table shows
what the strategies and the all-reduces cost, not a speed-up: on N machines
compute divides by N and these costs remain. Prints a Markdown table for
BENCHMARKS.md.

`--input` measures instead what one worker's input pipeline does per global
batch with one worker and with two (`shard` of `mwnet_tf.data.pipeline`, what
`PreparedData.training_input` builds under
`distribute_datasets_from_function`): examples read, decoded and augmented,
and the CPU seconds of the whole process spent on them, for in-memory CIFAR
arrays (gather, crop, flip, normalise) and for JPEG files (read, decode,
resize, crop, flip: Clothing1M's pipeline). Every process is fresh; the CPU
time is `time.process_time()` around the iteration, so it counts tf.data's
threads and not the time spent waiting for a core.
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


INPUT_PIPELINES = {"arrays": 100, "files": 32}  # Global batch of each.


def measure_input(kind, workers, batches, warmup):
    """CPU and wall seconds per global batch of worker 0's training input."""
    import time

    import numpy as np
    import tensorflow as tf

    from mwnet_tf.data import pipeline

    batch_size = INPUT_PIPELINES[kind]
    shard = None if workers == 1 else (0, workers)
    rng = np.random.default_rng(0)
    count = batch_size * (batches + warmup)
    labels = rng.integers(0, 10, count)
    with tempfile.TemporaryDirectory() as folder:
        if kind == "arrays":
            images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
            dataset = pipeline.array_dataset(
                images, labels, batch_size, shuffle=True, augment=True,
                drop_remainder=True, seed=0, shard=shard)
        else:
            # Clothing1M's photos are JPEGs of a few hundred pixels a side.
            paths = []
            for i in range(count):
                paths.append(os.path.join(folder, f"{i}.jpg"))
                pixels = rng.integers(0, 256, (300 + i % 50, 400, 3),
                                      dtype=np.uint8)
                tf.io.write_file(paths[-1], tf.io.encode_jpeg(pixels))
            dataset = pipeline.file_dataset(
                np.array(paths), labels, batch_size, shuffle=True,
                augment=True, drop_remainder=True, seed=0, shard=shard)
        iterator = iter(dataset)
        for _ in range(warmup):
            next(iterator)
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(batches):
            examples = len(next(iterator)[1])
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"examples": examples, "cpu_s": cpu / batches,
            "wall_s": wall / batches}


def input_table(args):
    """Worker 0's input work with one and two workers, fresh processes."""
    configs = [(kind, workers) for kind in args.input_pipelines.split(",")
               for workers in (1, 2)]
    runs = {config: [] for config in configs}
    for repeat in range(args.repeats):
        for kind, workers in configs:
            command = [sys.executable, os.path.abspath(__file__),
                       "--one_input", f"{kind},{workers}",
                       "--steps", str(args.steps), "--warmup",
                       str(args.warmup)]
            output = subprocess.run(command, check=True, capture_output=True,
                                    text=True).stdout
            runs[kind, workers].append(
                json.loads(output.strip().splitlines()[-1]))
            print(f"# repeat {repeat + 1}: {kind}, {workers} worker(s): "
                  f"{runs[kind, workers][-1]}", file=sys.stderr, flush=True)
    print(f"Worker 0's training input per global batch (arrays: 32x32, "
          f"batch {INPUT_PIPELINES['arrays']}; files: JPEG to 224x224, batch "
          f"{INPUT_PIPELINES['files']}); median over {args.repeats} "
          f"processes of {args.steps} batches after {args.warmup}; "
          f"{os.cpu_count()} CPUs\n")
    print("| input | workers | examples per worker | CPU s / batch | "
          "x one worker | wall s / batch |")
    print("|---|---|---|---|---|---|")
    for kind, workers in configs:
        cpu = statistics.median(r["cpu_s"] for r in runs[kind, workers])
        one = statistics.median(r["cpu_s"] for r in runs[kind, 1])
        wall = statistics.median(r["wall_s"] for r in runs[kind, workers])
        print(f"| {kind} | {workers} | {runs[kind, workers][0]['examples']} "
              f"| {cpu:.4f} | {cpu / one:.2f} | {wall:.4f} |")


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
    parser.add_argument("--input", action="store_true",
                        help="measure input work per worker instead")
    parser.add_argument("--input_pipelines", default=",".join(INPUT_PIPELINES),
                        help="with --input: comma-separated, of "
                        + ", ".join(INPUT_PIPELINES))
    parser.add_argument("--one", help="internal: DISTRIBUTE,METHOD,SYNC")
    parser.add_argument("--one_input", help="internal: PIPELINE,WORKERS")
    args = parser.parse_args()
    if args.one_input:
        kind, workers = args.one_input.split(",")
        print(json.dumps(measure_input(kind, int(workers), args.steps,
                                       args.warmup)), flush=True)
        return
    if args.input:
        unknown = [k for k in args.input_pipelines.split(",")
                   if k not in INPUT_PIPELINES]
        if unknown:
            parser.error(f"unknown input pipeline {', '.join(unknown)}; "
                         f"choose from {', '.join(INPUT_PIPELINES)}")
        input_table(args)
        return
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
