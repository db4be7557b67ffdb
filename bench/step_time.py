"""Seconds per training step of MetaWeightNet, CE vs MW-Net, float32 vs bfloat16.

    python bench/step_time.py                 # ResNet-32, batch 100 + 100 meta
    python bench/step_time.py --steps 30 --model resnet20

Each configuration runs in its own process, so that its peak resident memory
(ru_maxrss) is its own; all configurations run one after the other in one
invocation, so their ratios share the machine's conditions. Prints a Markdown
table for BENCHMARKS.md.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CONFIGS = [("ce", "float32"), ("mwnet", "float32"),
           ("ce", "mixed_bfloat16"), ("mwnet", "mixed_bfloat16")]


def measure(method, policy, model_name, batch_size, steps, warmup):
    """Runs one configuration; returns its median step time and peak memory."""
    import keras
    import numpy as np
    import tensorflow as tf

    import mwnet_tf
    import zoo

    keras.config.set_dtype_policy(policy)
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)

    def batch():
        return (rng.normal(size=(batch_size, 32, 32, 3)).astype("float32"),
                rng.integers(0, 10, batch_size))

    element = (batch(), batch())
    dataset = tf.data.Dataset.from_tensors(element).repeat()
    model = mwnet_tf.MetaWeightNet(zoo.build(model_name, 10), method=method)
    model.compile()

    class StepTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.durations = []

        def on_train_batch_begin(self, batch, logs=None):
            self._start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.durations.append(time.perf_counter() - self._start)

    timer = StepTimer()
    model.fit(dataset, epochs=1, steps_per_epoch=warmup + steps, verbose=0,
              callbacks=[timer])
    timed = timer.durations[warmup:]
    return {"method": method, "policy": policy,
            "median_s": float(np.median(timed)),
            "peak_rss_mib": resource.getrusage(
                resource.RUSAGE_SELF).ru_maxrss / 1024}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet32")
    parser.add_argument("--batch_size", type=int, default=100)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--one", help="internal: run one METHOD,POLICY")
    args = parser.parse_args()
    if args.one:
        method, policy = args.one.split(",")
        print(json.dumps(measure(method, policy, args.model, args.batch_size,
                                 args.steps, args.warmup)))
        return
    results = {}
    for method, policy in CONFIGS:
        output = subprocess.run(
            [sys.executable, __file__, "--one", f"{method},{policy}",
             "--model", args.model, "--batch_size", str(args.batch_size),
             "--steps", str(args.steps), "--warmup", str(args.warmup)],
            check=True, capture_output=True, text=True).stdout
        results[method, policy] = json.loads(output.strip().splitlines()[-1])
        print(f"# done {method} {policy}: {results[method, policy]}",
              file=sys.stderr)
    print(f"{args.model}, batch {args.batch_size} + {args.batch_size} meta, "
          f"median of {args.steps} steps after {args.warmup} warm-up, "
          f"{os.cpu_count()} CPUs\n")
    print("| method | policy | s / step | x CE (same policy) | peak RSS MiB |")
    print("|---|---|---|---|---|")
    for (method, policy), result in results.items():
        ratio = result["median_s"] / results["ce", policy]["median_s"]
        print(f"| {method} | {policy} | {result['median_s']:.3f} | "
              f"{ratio:.2f} | {result['peak_rss_mib']:.0f} |")


if __name__ == "__main__":
    main()
