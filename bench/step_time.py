"""Seconds per training step of MetaWeightNet: CE vs MW-Net and its meta scopes.

    python bench/step_time.py                 # ResNet-32, batch 100 + 100 meta
    python bench/step_time.py --models resnet32,wrn28_10:mixed_bfloat16 \
        --policies float32,mixed_bfloat16 --steps 20 --warmup 3

For every model and policy (`--policies`, or the policies after a model's
name, `wrn28_10:mixed_bfloat16`, separated by `+`) it times CE, `--methods`
(default `fixed`: a frozen V, no meta step; `cmwnet`: MW-Net with CMW-Net's
class-aware V, three task families; `reuse`: MW-Net whose real step on a
meta step reuses the lookahead's gradient, `real_step_weights="lookahead"`;
`reuse_sl`: `reuse` with soft label correction, `label_correction=True`,
whose step adds a forward pass of the EMA classifier; `reuse_ema`: `reuse`
keeping the EMA classifier the pseudo-clean choice scores with
(flags/own_data.cfg's step); `selection`: the pseudo-clean meta set's
choice, one inference pass of the EMA classifier over the training set per
epoch, timed per batch, which is its amortised cost per training step;
with `pseudo_clean_pool=f` it scores a fraction f, so costs f times that), MW-Net with the exact lookahead
(`meta_scope="all"`) and each partial scope of `--scopes`: `head` (the
logits layer) and `block` (the top residual block and everything above it:
the last 5 layers with weights of ResNet-32, the last 6 of WRN-28-10, as in
FaMUS's "top block" ablation). Each configuration runs in its own process, so
that its peak resident memory (ru_maxrss) is its own; all run one after the
other in one invocation, so their ratios share the machine's conditions.
`--max_steps_for` caps the steps of big models (WRN-28-10 takes tens of
seconds per MW-Net step on 2 cores). Prints a Markdown table for
BENCHMARKS.md.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# MW-Net whose real step reuses the lookahead's gradient, as flags/fast.cfg:
# plain, with label correction, with the EMA classifier kept.
REUSE = ("reuse", "reuse_sl", "reuse_ema")
# Layers with weights in the top residual block plus those above it.
TOP_BLOCK = {"resnet8": 5, "resnet14": 5, "resnet20": 5, "resnet32": 5,
             "resnet56": 5, "resnet110": 5,
             "wrn28_10": 6, "wrn28_2": 6, "wrn40_2": 6}


def meta_scope_of(scope, model_name):
    if scope == "block":
        if model_name not in TOP_BLOCK:
            sys.exit(f"step_time.py: error: no top block known for "
                     f"{model_name}; add it to TOP_BLOCK.")
        return TOP_BLOCK[model_name]
    return int(scope) if scope.isdigit() else scope


def median_step_seconds(model, dataset, steps, warmup, statistic="median"):
    """Fits `model` for `warmup + steps` steps; the median (or the mean) of
    the last `steps`. With a meta step every k-th step only, the mean over
    a multiple of k steps is the amortised cost: every k consecutive steps
    hold exactly one meta step."""
    import keras
    import numpy as np

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
    reduce = {"median": np.median, "mean": np.mean}[statistic]
    return float(reduce(timer.durations[warmup:]))


def whole_intervals(steps, interval):
    """`steps` rounded up to a multiple of `interval`."""
    return -(-steps // interval) * interval


def measure(method, scope, policy, model_name, batch_size, steps, warmup,
            meta_interval=1):
    """Runs one configuration; returns its step time and peak memory.

    The median step, or with `meta_interval` k > 1 the mean of `steps`
    rounded up to a multiple of k (the amortised step).
    """
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
    if method == "selection":
        return measure_selection(model_name, batch(), steps, warmup, policy)
    # `fixed` needs a V; an untrained one costs what a learned one does.
    weighting_net = mwnet_tf.WeightingNet() if method == "fixed" else None
    if method == "cmwnet":
        weighting_net = mwnet_tf.WeightingNet(
            class_families=[label % 3 for label in range(10)])
    model = mwnet_tf.MetaWeightNet(
        zoo.build(model_name, 10), weighting_net,
        method=("mwnet" if method in REUSE + ("cmwnet",) else method),
        meta_scope=meta_scope_of(scope, model_name),
        meta_interval=meta_interval,
        real_step_weights="lookahead" if method in REUSE else "updated",
        label_correction=method == "reuse_sl",
        ema_decay=0.997 if method == "reuse_ema" else None)
    model.compile()
    statistic = "median"
    if meta_interval > 1:
        steps = whole_intervals(steps, meta_interval)
        statistic = "mean"
    return {"method": method, "scope": scope, "policy": policy,
            "meta_interval": meta_interval,
            "step_s": median_step_seconds(model, dataset, steps, warmup,
                                            statistic),
            "peak_rss_mib": resource.getrusage(
                resource.RUSAGE_SELF).ru_maxrss / 1024}


def measure_selection(model_name, batch, steps, warmup, policy):
    """Seconds per batch of the pseudo-clean choice's pass over the
    training set (`PseudoCleanSelection.scores`): the mean of `steps`
    batches after `warmup`."""
    import tensorflow as tf

    import mwnet_tf
    import zoo
    from mwnet_tf import pseudo_clean

    x, y = batch
    model = mwnet_tf.MetaWeightNet(zoo.build(model_name, 10),
                                   ema_decay=0.997)
    model.compile()
    selection = tf.Variable(tf.zeros([10], tf.int64))

    def batches(count):
        return tf.data.Dataset.from_tensors((x, y)).repeat(count)

    choice = pseudo_clean.PseudoCleanSelection(batches(steps), y, 1,
                                               selection, first_epoch=0)
    choice.set_model(model)
    choice.scores(batches(warmup))  # Traces.
    start = time.perf_counter()
    choice.scores()
    seconds = (time.perf_counter() - start) / steps
    return {"method": "selection", "scope": "all", "policy": policy,
            "meta_interval": 1, "step_s": seconds,
            "peak_rss_mib": resource.getrusage(
                resource.RUSAGE_SELF).ru_maxrss / 1024}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet32")
    parser.add_argument("--policies", default="float32,mixed_bfloat16")
    parser.add_argument("--scopes", default="head,block",
                        help="partial meta scopes timed besides all")
    parser.add_argument("--methods", default="fixed",
                        help="methods timed besides ce and mwnet (fixed: a "
                        "frozen V, no meta step; cmwnet: the class-aware "
                        "V; reuse: MW-Net whose real step on a meta step "
                        "reuses the lookahead's gradient, "
                        "real_step_weights='lookahead'; the last two also "
                        "at each of --intervals), comma-separated")
    parser.add_argument("--batch_size", type=int, default=100)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3,
                        help="round-robin repeats of every configuration")
    parser.add_argument("--max_steps_for", default="wrn28_10:3:1",
                        help="MODEL:STEPS:WARMUP caps, comma-separated")
    parser.add_argument("--intervals", default="",
                        help="meta intervals k > 1 timed for exact MW-Net "
                        "(the meta step every k-th step), comma-separated; "
                        "amortised: the mean of --steps rounded up to a "
                        "multiple of k")
    parser.add_argument("--one", help="internal: run one "
                        "MODEL,METHOD,SCOPE,POLICY")
    args = parser.parse_args()
    if args.one:
        model, method, scope, policy, interval = (
            args.one.split(",") + ["1"])[:5]
        print(json.dumps(measure(method, scope, policy, model,
                                 args.batch_size, args.steps, args.warmup,
                                 int(interval))))
        return
    caps = {}
    for cap in filter(None, args.max_steps_for.split(",")):
        model, steps, warmup = cap.split(":")
        caps[model] = (int(steps), int(warmup))
    policies_of = {}
    for entry in args.models.split(","):
        model, _, policies = entry.partition(":")
        policies_of[model] = (policies.split("+") if policies
                              else args.policies.split(","))
    intervals = [int(k) for k in args.intervals.split(",") if k]
    configs = [(model, policy, method, scope, interval)
               for model, policies in policies_of.items()
               for policy in policies
               for method, scope, interval in [
                   ("ce", "all", 1), ("mwnet", "all", 1)] + [
                   ("mwnet", scope, 1) for scope in args.scopes.split(",")
                   if scope] + [(method, "all", 1) for method in
                                args.methods.split(",") if method] + [
                   (method, "all", k) for k in intervals
                   for method in ("mwnet", "cmwnet") + REUSE
                   if method == "mwnet" or method in args.methods.split(",")]]
    # Round-robin repeats: a slow spell of the shared machine then hits one
    # repeat of every configuration, not every repeat of one.
    runs = {config: [] for config in configs}
    for repeat in range(args.repeats):
        for model, policy, method, scope, interval in configs:
            if repeat and model in caps:
                continue  # Capped models run once.
            steps, warmup = caps.get(model, (args.steps, args.warmup))
            output = subprocess.run(
                [sys.executable, __file__, "--one",
                 f"{model},{method},{scope},{policy},{interval}",
                 "--batch_size", str(args.batch_size), "--steps", str(steps),
                 "--warmup", str(warmup)],
                check=True, capture_output=True, text=True).stdout
            result = json.loads(output.strip().splitlines()[-1])
            runs[model, policy, method, scope, interval].append(result)
            print(f"# repeat {repeat + 1}: {model} {policy} {method} {scope}"
                  f" every {interval}: "
                  f"{result}", file=sys.stderr, flush=True)
    results = {}
    for config, repeats in runs.items():
        steps = caps.get(config[0], (args.steps, args.warmup))[0]
        interval = config[4]
        steps = whole_intervals(steps, interval)  # As measure() times.
        results[config] = {
            "step_s": statistics.median(r["step_s"] for r in repeats),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in repeats),
            "steps": f"{steps} x {len(repeats)}"}
    print(f"batch {args.batch_size} + {args.batch_size} meta; s / step is "
          "the median over repeats of each process's median step after "
          f"warm-up; {os.cpu_count()} CPUs\n")
    print("| model | policy | method | meta_scope | meta step every | steps "
          "x processes | s / step | x CE | peak RSS MiB | x CE |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (model, policy, method, scope, interval), result in results.items():
        ce = results[model, policy, "ce", "all", 1]
        scope_name = "-" if method in ("ce", "fixed", "selection") else (
            f"{scope} ({TOP_BLOCK[model]} layers)" if scope == "block"
            else scope)
        every = ("-" if method in ("ce", "fixed", "selection") else
                 f"{interval} (mean)" if interval > 1 else "1")
        print(f"| {model} | {policy} | {method} | {scope_name} | {every} | "
              f"{result['steps']} | {result['step_s']:.3f} | "
              f"{result['step_s'] / ce['step_s']:.2f} | "
              f"{result['peak_rss_mib']:.0f} | "
              f"{result['peak_rss_mib'] / ce['peak_rss_mib']:.2f} |")


if __name__ == "__main__":
    main()
