"""MW-Net vs CE vs L2RW on real CIFAR-10 under a reduced protocol.

    python bench/accuracy.py                          # all runs not yet done
    python bench/accuracy.py --noises=flip --seeds=1  # a subset
    python bench/accuracy.py --table_only             # print the table
    python bench/accuracy.py --table_only --figure=docs/accuracy.png
    python bench/accuracy.py --protocol=long --noises=flip --variants=ce,mwnet

Each run is `python -m mwnet_tf.main` in its own process with the flags of
its protocol and variant (below); when it finishes, its results.json,
per-epoch history and (for MW-Net variants) the learned weighting function
are written to `bench/results/[long_]<noise>40_<variant>_seed<seed>.json`, so
finished runs are never lost and the table grows run by run. A run whose
result file exists is skipped. Paths are recorded relative to the repository.

The reduced protocol (the paper trains 60-120 epochs on 49k images):
- ResNet-32, the CIFAR-10 JPEG archive of ../shared/data, 40% uniform or flip
  noise, a 1,000-image clean meta set (100 per class) drawn from the training
  split, the same corrupted labels for every method (same seed);
- reduction 1: a 10,000-image training subset (seeded, after the meta split);
- reduction 2: 20 epochs, learning rate 0.1 divided by 10 after epochs 15 and
  18 (the paper's two decays, compressed);
- reduction 3: mixed_bfloat16 compute (losses and weights stay float32)
  where the hardware computes bfloat16, float32 elsewhere (the record's
  command says which);
- everything else as in the paper (flags/base.cfg): SGD 0.1 Nesterov, L2 5e-4,
  Adam 1e-3 with L2 1e-4 for V, batch 100 + 100.

The long protocol is the reduced one with 3x the steps (60 epochs, decays
after 45 and 54): long enough to see whether V turns decreasing under flip
noise, where the reduced protocol still underfits.

Variants are a method plus the flags that set it apart (VARIANTS): `ce`,
`mwnet`, `l2rw`; `mwnet_sum` normalises the weighted loss by the sum of the
weights, which removes the effective-learning-rate confound of the mean;
`mwnet_block` and `mwnet_head` look ahead through the top of the network
only (`--meta_scope`), at about 1.3x the cost of a CE step;
`mwnet_block_sum` is `mwnet_block` with the sum normalisation;
`ce_matched_lr` is CE at MW-Net's effective learning rate; `fixed`
trains with the V that `mwnet_block` learned on the other seed's labels,
frozen (`--method=fixed`). Every run that learns a V keeps it in
`bench/results/weighting_nets/`, and MW-Net runs record their label audit
(`results.label_audit`); `--audit_existing` audits finished runs whose work
directories are still in --scratch and adds it to their records
(`--audit_again`: also those audited before, after the audit changed).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCHIVE = os.path.join(os.path.dirname(REPO), "shared", "data",
                       "cifar10-jpeg.tar.gz")
COMMON = [
    "--flagfile=flags/base.cfg", "--dataset=folder", "--model=resnet32",
    "--noise_rate=0.4", "--meta_per_class=100", "--train_subset=10000",
    "--verbose=2",
]


def precision_flags():
    """Reduction 3, bfloat16, only where the hardware computes it: on a CPU
    without bfloat16 instructions it is many times slower than float32."""
    from mwnet_tf import precision
    return ["--mixed_bfloat16"] if precision.bfloat16_is_native() else []


PROTOCOLS = {
    "reduced": ["--epochs=20", "--lr_decay_epochs=15,18"],
    "long": ["--epochs=60", "--lr_decay_epochs=45,54"],
}
# flags/fast.cfg's meta step with a pseudo-clean meta set chosen each epoch
# after a 500-step warm-up (issue 36's variants below build on it).
PSEUDO_CLEAN = ["--method=mwnet", "--meta_interval=8", "--meta_lr=0.003",
                "--real_step_weights=lookahead", "--meta_source=pseudo_clean",
                "--meta_warmup_steps=500"]
VARIANTS = {
    "ce": ["--method=ce"],
    "mwnet": ["--method=mwnet"],
    "l2rw": ["--method=l2rw"],
    "mwnet_sum": ["--method=mwnet", "--weight_normalization=sum"],
    # The lookahead through ResNet-32's top residual block and the logits
    # layer only (its last 5 layers with weights): FaMUS's top-block scope.
    "mwnet_block": ["--method=mwnet", "--meta_scope=5"],
    "mwnet_head": ["--method=mwnet", "--meta_scope=head"],
    "mwnet_block_sum": ["--method=mwnet", "--meta_scope=5",
                        "--weight_normalization=sum"],
    # The exact meta step on every k-th step only (CMW-Net's official code
    # takes it every 10th); the other steps reuse the current V.
    "mwnet_k5": ["--method=mwnet", "--meta_interval=5"],
    "mwnet_k10": ["--method=mwnet", "--meta_interval=10"],
    "mwnet_k20": ["--method=mwnet", "--meta_interval=20"],
    # Every 10th step with V's learning rate x10 (as much movement of theta
    # over a run as a meta step on every step) or x3 (mwnet_k10_lr3:
    # flags/fast.cfg until 2026-12-07).
    "mwnet_k10_lr10": ["--method=mwnet", "--meta_interval=10",
                       "--meta_lr=0.01"],
    "mwnet_k10_lr3": ["--method=mwnet", "--meta_interval=10",
                      "--meta_lr=0.003"],
    # mwnet_k10_lr3 with no meta step in the first 500 steps (5 epochs):
    # V starts to learn once the loss tells corrupted labels from hard clean
    # ones, instead of first learning to rise.
    "mwnet_k10_lr3_w500": ["--method=mwnet", "--meta_interval=10",
                           "--meta_lr=0.003", "--meta_warmup_steps=500"],
    # The same with a 200-step warm-up (2 epochs): more meta steps, and
    # V weights less than 1 for less of the run.
    "mwnet_k10_lr3_w200": ["--method=mwnet", "--meta_interval=10",
                           "--meta_lr=0.003", "--meta_warmup_steps=200"],
    # mwnet_k10_lr3 with the weights normalised to mean 1 per batch: V's
    # size then sets neither the classifier's learning rate nor the meta
    # objective, only how the batch's weight is shared out (the quickstart
    # learns a falling V this way at every seed measured).
    "mwnet_k10_lr3_sum": ["--method=mwnet", "--meta_interval=10",
                          "--meta_lr=0.003", "--weight_normalization=sum"],
    # mwnet_k10_lr3 with the meta step on every 8th step: 25% more meta
    # steps, for a cost near the 1.3x target (from the AVX-512 VM's
    # components, 0.97 + (3.32 - 0.97) / k, k = 8 is the shortest interval
    # within 1.3x; measured 1.24x there, 1.39x on the AVX2 VM).
    "mwnet_k8_lr3": ["--method=mwnet", "--meta_interval=8",
                     "--meta_lr=0.003"],
    # mwnet_k8_lr3 whose real step on a meta step reuses the lookahead's
    # gradient (V before that step's meta update): one backward pass fewer
    # per meta step, a different V on one step in 8. flags/fast.cfg.
    "mwnet_k8_lr3_reuse": ["--method=mwnet", "--meta_interval=8",
                           "--meta_lr=0.003",
                           "--real_step_weights=lookahead"],
    # Without a trusted meta set (issue 36), all at flags/fast.cfg's
    # meta-gradient: the meta set drawn with the labels as given, noisy
    # ones included (what a run without a trusted set got before);
    # pseudo-clean (the 10 lowest-loss examples per given class under the
    # EMA classifier, chosen each epoch after a 5-epoch warm-up); the same
    # with soft label correction (CMW-Net-SL's loss); and CMW-Net's
    # class-aware V with both.
    "mwnet_given_draw": ["--method=mwnet", "--meta_interval=8",
                         "--meta_lr=0.003", "--real_step_weights=lookahead",
                         "--meta_source=given_draw"],
    "mwnet_pseudo": PSEUDO_CLEAN,
    # flags/own_data.cfg: the choice scores a fresh quarter of each class.
    "mwnet_pseudo_pool": PSEUDO_CLEAN + ["--pseudo_clean_pool=0.25"],
    # The same with 50 examples per class: a meta set half the trusted
    # one's size, more of the hard examples a trusted set holds (replayed on
    # the finished instance runs' audits: 94-97% of the chosen labels
    # right, as at 10; bench/pseudo_clean_pool.py --per_class 50).
    "mwnet_pseudo_pool_k50": PSEUDO_CLEAN + ["--pseudo_clean_pool=0.25",
                                             "--pseudo_clean_per_class=50"],
    "mwnet_pseudo_sl": PSEUDO_CLEAN + ["--label_correction"],
    # Correction with CMW-Net-SL's V learning rate (Adam 1e-4, 30x below
    # mwnet_pseudo_sl's; the later flag wins): over 2,000 steps V stays near
    # its start (weights about 0.6), so the targets keep about 0.4 of the
    # averaged model's prediction instead of V learning to trust the labels
    # within two epochs.
    "mwnet_pseudo_sl_slow_v": PSEUDO_CLEAN + ["--label_correction",
                                              "--meta_lr=0.0001"],
    # Correction with the average debiased (--ema_debias): at the end of
    # the 500-step warm-up the plain average still holds 22% of the random
    # initial weights and predicts near chance (bench/
    # correction_meta_gradient.py), the targets it gives are near uniform.
    "mwnet_pseudo_sl_debias": PSEUDO_CLEAN + ["--label_correction",
                                              "--ema_debias"],
    "cmwnet_pseudo_sl": PSEUDO_CLEAN + ["--label_correction",
                                        "--vnet=class_aware"],
    # CMW-Net's class-aware V (--vnet=class_aware, 3 task families from
    # k-means on the classes' label counts), exact and at k = 10, V's
    # learning rate x3.
    "cmwnet": ["--method=mwnet", "--vnet=class_aware"],
    "cmwnet_k10_lr3": ["--method=mwnet", "--vnet=class_aware",
                       "--meta_interval=10", "--meta_lr=0.003"],
    # CE at MW-Net's effective learning rate: with the mean normalisation
    # the weighted loss's gradient is scaled by the mean weight, so MW-Net
    # also trains at a lower learning rate than CE. MATCHED_LR removes that.
    "ce_matched_lr": ["--method=ce", "--lr={matched_lr}"],
    # V as learned by mwnet_block on the other seed's labels (seed 1 <-> 2),
    # frozen: no meta step, the cost of CE.
    "fixed": ["--method=fixed", "--weighting_net={weighting_nets}/"
              "{noise}_mwnet_block_seed{other_seed}.keras"],
}
# 0.1 x the mean weight of mwnet_block (seed 1) over its 20 epochs: 0.797
# under uniform noise, 0.607 under flip noise.
MATCHED_LR = {"uniform": 0.08, "flip": 0.06}
# Where run_one keeps the V each run learned (under --results_dir), for the
# `fixed` variant.
WEIGHTING_NETS = "weighting_nets"
DEFAULT_RESULTS = os.path.join(REPO, "bench", "results")
NOISES = ("uniform", "flip")
# Asymmetric noise (Patrini et al.), CMW-Net's comparison: --noises=asym
# --noise_rates=0.4,0.6; instance-dependent noise (Xia et al. 2020), closer
# to the mistakes people make: --noises=instance.
ALL_NOISES = NOISES + ("asym", "instance")
# Paper, full schedule: (setting, model, MW-Net, CE baseline).
PAPER = {"uniform": ("WRN-28-10", 89.27, 68.07),
         "flip": ("ResNet-32", 87.54, 70.77)}


def percent(rate):
    return round(100 * float(rate))


def noise_rate(record):
    """The record's noise rate (records before rates varied: 0.4)."""
    return record.get("noise_rate", 0.4)


def setting(record):
    """"uniform 40%": the noise type and rate of a record."""
    return f"{record['noise']} {percent(noise_rate(record))}%"


def result_path(results_dir, protocol, noise, variant, seed, rate=0.4):
    prefix = "" if protocol == "reduced" else f"{protocol}_"
    return os.path.join(
        results_dir, f"{prefix}{noise}{percent(rate)}_{variant}_seed{seed}.json")


def variant_flags(variant, noise, seed, results_dir=DEFAULT_RESULTS,
                  rate=0.4):
    other_seed = 2 if int(seed) == 1 else 1
    weighting_nets = os.path.relpath(
        os.path.join(results_dir, WEIGHTING_NETS), REPO)
    return [flag.format(noise=f"{noise}{percent(rate)}",
                        other_seed=other_seed,
                        matched_lr=MATCHED_LR.get(noise),
                        weighting_nets=weighting_nets)
            for flag in VARIANTS[variant]]


def missing_inputs(variant, noise, seed, results_dir=DEFAULT_RESULTS,
                   rate=0.4):
    """Files a variant's flags name that do not exist (relative to REPO)."""
    return [flag.split("=", 1)[1]
            for flag in variant_flags(variant, noise, seed, results_dir, rate)
            if flag.startswith("--weighting_net=") and not os.path.isfile(
                os.path.join(REPO, flag.split("=", 1)[1]))]


def run_one(protocol, noise, variant, seed, archive, scratch, results_dir,
            extra_flags=(), rate=0.4):
    """Trains one configuration and stores its results; returns the record.

    `extra_flags` go last on the mwnet_tf.main command line, so they override
    the protocol's and the variant's (the record's command includes them).
    """
    from mwnet_tf.runner.callbacks import read_history

    name = os.path.basename(result_path("", protocol, noise, variant, seed,
                                        rate))
    workdir = os.path.join(scratch, os.path.splitext(name)[0])
    flags = [*COMMON, *precision_flags(), *PROTOCOLS[protocol],
             f"--data_path={os.path.relpath(archive, REPO)}",
             f"--noise={noise}", f"--noise_rate={rate}",
             *variant_flags(variant, noise, seed, results_dir, rate),
             f"--seed={seed}", *extra_flags]
    command = [sys.executable, "-m", "mwnet_tf.main", *flags,
               f"--workdir={workdir}"]
    print("#", " ".join(command[1:]), flush=True)
    started = time.time()
    subprocess.run(command, cwd=REPO, check=True)
    with open(os.path.join(workdir, "results.json")) as file:
        results = json.load(file)
    history = read_history(os.path.join(workdir, "history.csv"))
    record = {
        "protocol": protocol, "noise": noise, "noise_rate": float(rate),
        "variant": variant,
        "method": next(f.split("=")[1] for f in VARIANTS[variant]
                       if f.startswith("--method=")),
        "seed": seed,
        "command": "python -m mwnet_tf.main " + " ".join(flags),
        "wall_seconds": time.time() - started,
        "results": results,
        # None where an epoch measured nothing (no test evaluation, no
        # pseudo-clean choice yet).
        "history": {key: [row.get(key) for row in history]
                    for key in ("val_accuracy", "meta_eval_accuracy",
                                "clean_weight", "corrupted_weight",
                                "mean_weight", "epoch_seconds",
                                "meta_label_precision",
                                "averaged_model_accuracy")},
    }
    if record["method"] in ("mwnet", "fixed"):
        import numpy as np
        import mwnet_tf
        saved = os.path.join(workdir, "weighting_net.keras")
        net = mwnet_tf.load_weighting_net(saved)
        if record["method"] == "mwnet":
            kept = os.path.join(results_dir, WEIGHTING_NETS)
            os.makedirs(kept, exist_ok=True)
            shutil.copyfile(saved, os.path.join(
                kept, os.path.splitext(name)[0] + ".keras"))
        losses = np.linspace(0.0, 10.0, 101, dtype="float32")
        curves = net.family_curves(losses)
        record["weighting_function"] = {
            "loss": losses.tolist(), "weight": curves[0].tolist()}
        if net.class_aware:
            # One curve per task family (CMW-Net); "weight" is family 0's.
            record["weighting_function"].update(
                class_families=list(net.class_families),
                family_weights=curves.tolist())
    os.makedirs(results_dir, exist_ok=True)
    with open(result_path(results_dir, protocol, noise, variant, seed, rate),
              "w") as file:
        json.dump(record, file, indent=1)
    return record


def audit_existing(results_dir, scratch, again=False):
    """Adds the label audit to records of MW-Net runs that lack one (with
    `again`, to every record: after the audit has changed).

    Audits each run's work directory in `scratch` if it is still there (the
    audit needs the saved classifier); returns the names audited.
    """
    from mwnet_tf.runner import audit_command as audit

    audited = []
    for name in sorted(os.listdir(results_dir)):
        path = os.path.join(results_dir, name)
        if not name.endswith(".json"):
            continue
        with open(path) as file:
            record = json.load(file)
        workdir = os.path.join(scratch, os.path.splitext(name)[0])
        if (record["method"] not in ("mwnet", "fixed")
                or ("label_audit" in record["results"] and not again)
                or not os.path.isdir(workdir)):
            continue
        print("# auditing", workdir, flush=True)
        record["results"]["label_audit"] = audit.audit_run(
            workdir, data_path=ARCHIVE, verbose=0)
        with open(path, "w") as file:
            json.dump(record, file, indent=1)
        audited.append(name)
    return audited


def audit_table(records):
    """How well V's weights (and the loss) find the corrupted labels."""
    lines = ["| protocol | noise | variant | seed | ROC AUC, weight | ROC AUC, "
             "loss | precision at the noise rate, weight | ... loss | mean "
             "weight clean / corrupted | audit s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(records, key=_order):
        audit = r["results"].get("label_audit")
        if not audit or not audit.get("detection"):
            continue
        d = audit["detection"]
        lines.append(
            f"| {r['protocol']} | {setting(r)} | {r['variant']} | "
            f"{r['seed']} | {d['weight']['roc_auc']:.3f} | "
            f"{d['loss']['roc_auc']:.3f} | {d['weight']['precision']:.3f} | "
            f"{d['loss']['precision']:.3f} | {d['mean_weight_clean']:.3f} / "
            f"{d['mean_weight_corrupted']:.3f} | {audit['seconds']:.0f} |")
    return "\n".join(lines)


def load_records(results_dir):
    records = []
    for name in sorted(os.listdir(results_dir)) if os.path.isdir(
            results_dir) else []:
        if name.endswith(".json"):
            with open(os.path.join(results_dir, name)) as file:
                records.append(json.load(file))
    return records


def _order(record):
    variants = list(VARIANTS)
    variant = record["variant"]
    return (list(PROTOCOLS).index(record["protocol"]), record["noise"],
            noise_rate(record), variants.index(variant) if variant in variants else len(variants),
            variant, record["seed"])


def table(records):
    lines = ["| protocol | noise | variant | seed | final test acc | test acc "
             "at best meta acc | clean weight | corrupted weight | s / epoch |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(records, key=_order):
        res = r["results"]

        def fmt(value, pattern="{:.3f}"):
            return "-" if value is None else pattern.format(value)

        lines.append(
            f"| {r['protocol']} | {setting(r)} | {r['variant']} | "
            f"{r['seed']} | "
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
    """Every variant against CE, per protocol and noise.

    Per seed, the variant's final test accuracy minus CE's (same seed, hence
    the same corrupted labels); then the mean of each over the seeds run so
    far and its range (max - min). The gain is clear of the seed-to-seed
    spread when the variant's worst seed beats CE's best seed, i.e. when the
    last column is positive.
    """
    final = {(r["protocol"], setting(r), r["variant"], r["seed"]):
             100 * r["results"]["final_test_accuracy"] for r in records}
    rates = {setting(r): noise_rate(r) for r in records}
    lines = ["| protocol | noise | variant | minus CE, per seed | variant: "
             "mean (range) | CE: mean (range) | worst seed minus best CE "
             "seed |", "|---|---|---|---|---|---|---|"]
    groups = sorted({key[:3] for key in final if key[2] != "ce"},
                    key=lambda g: _order({"protocol": g[0],
                                          "noise": g[1].split()[0],
                                          "noise_rate": rates[g[1]],
                                          "variant": g[2], "seed": 0}))
    for protocol, noise, variant in groups:
        ce = {s: a for (p, n, v, s), a in final.items()
              if (p, n, v) == (protocol, noise, "ce")}
        ours = {s: a for (p, n, v, s), a in final.items()
                if (p, n, v) == (protocol, noise, variant)}
        if not ce:
            continue
        gains = ", ".join(f"{ours[s] - ce[s]:+.2f} (seed {s})"
                          for s in sorted(ours) if s in ce) or "-"
        lines.append(
            f"| {protocol} | {noise} | {variant} | {gains} | "
            f"{_summary(list(ours.values()))} | {_summary(list(ce.values()))}"
            f" | {min(ours.values()) - max(ce.values()):+.2f} |")
    return "\n".join(lines)


# Step time of each variant as a multiple of a CE step: ResNet-32, float32,
# batch 100 + 100, amortised over the meta interval (the mean step of 20
# steps, so two meta steps for k = 10), all from one invocation on
# 2026-12-02 (BENCHMARKS.md, "Fast MW-Net", with an earlier invocation and
# the spread between them):
#   python bench/step_time.py --models resnet32 --policies float32 \
#       --scopes block --methods fixed --intervals 5,10,20 --steps 20 \
#       --warmup 3 --repeats 2
STEP_COST = {"ce": 1.00, "ce_matched_lr": 1.00, "fixed": 0.97,
             "mwnet": 3.32, "mwnet_block": 1.41, "mwnet_k5": 1.57,
             "mwnet_k10": 1.43, "mwnet_k20": 1.09, "mwnet_k10_lr10": 1.43,
             "mwnet_k10_lr3": 1.43, "mwnet_k10_lr3_sum": 1.43,
             # 500 fixed-V steps, then 1,500 of mwnet_k10_lr3's.
             "mwnet_k10_lr3_w500": round(0.25 * 0.97 + 0.75 * 1.43, 2),
             "mwnet_k10_lr3_w200": round(0.1 * 0.97 + 0.9 * 1.43, 2),
             # k = 8 with and without the real step reusing the
             # lookahead's gradient, from one invocation on the AVX-512 VM
             # with AMX (2026-12-07), in which exact MW-Net read 3.03x and
             # k = 10 1.20x (BENCHMARKS.md, "Step cost with the lookahead's
             # gradient reused"; on the AVX2-only VM k = 8 read 1.39x):
             #   python bench/step_time.py --models resnet32 \
             #       --policies float32 --scopes= --methods fixed,reuse \
             #       --intervals 8,10 --steps 40 --warmup 3 --repeats 2
             "mwnet_k8_lr3": 1.24, "mwnet_k8_lr3_reuse": 1.17,
             # The class-aware V, from a second invocation (BENCHMARKS.md,
             # "CMW-Net"), in which mwnet read 2.94 and mwnet_k10 1.19:
             #   python bench/step_time.py --models resnet32 \
             #       --policies float32 --scopes "" --methods cmwnet \
             #       --intervals 10 --steps 20 --warmup 3 --repeats 2
             "cmwnet": 3.06, "cmwnet_k10_lr3": 1.32,
             # Without a trusted set, from components (BENCHMARKS.md, "Your
             # own noisy data"): the fast step with the EMA kept, plus the
             # pseudo-clean choice's scoring pass per training step (all
             # scored: 1.23 + 0.24, 2026-12-07 evening; a quarter: 1.17 +
             # 0.25 x (0.23-0.44), 2026-12-07 night, the middle of
             # 1.23-1.28); label correction's extra forward pass of the
             # averaged model: 1.57; the given draw is flags/fast.cfg's.
             "mwnet_given_draw": 1.17, "mwnet_pseudo": 1.47,
             "mwnet_pseudo_pool": 1.26, "mwnet_pseudo_pool_k50": 1.26,
             "mwnet_pseudo_sl": 1.57, "mwnet_pseudo_sl_slow_v": 1.57,
             "mwnet_pseudo_sl_debias": 1.57}


def v_shape(record):
    """V's shape over the losses the audit saw (or, for records older than
    that, over losses 0-10, marked so)."""
    from mwnet_tf import label_audit
    audit = record["results"].get("label_audit") or {}
    if audit.get("weighting_function"):
        described = audit["weighting_function"]
        if described.get("families"):  # A class-aware V: each family's.
            return described["shape"] + " (" + ", ".join(
                f"family {f['family']} {f['shape']}"
                for f in described["families"]) + ")"
        return described["shape"]
    if "weighting_function" not in record:
        return "-"
    return label_audit.curve_shape(
        record["weighting_function"]["weight"])[0] + " (0-10)"


def frontier(records, protocol="reduced"):
    """Cost against meaning: every variant's step cost, accuracy, V's shape
    and how well its weights find the corrupted labels, per noise.

    Per-seed values are listed "seed 1 / seed 2"; the mean follows the
    accuracy. A shape "(0-10)" is V's over losses 0-10 (records older than
    the audit's own description of V over the losses it saw). "relabels
    right": the share of the audit's "relabel" verdicts whose suggestion is
    the true label, and their number ("-": none, or audited before the
    verdicts).
    """
    lines = ["| noise | variant | step x CE | final test acc (mean) | test acc "
             "at best meta acc | clean / corrupted weight | V's shape | AUC, "
             "weight | AUC, loss | relabels right |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    groups = {}
    for r in records:
        if r["protocol"] == protocol:
            groups.setdefault((setting(r), r["variant"]), []).append(r)
    rates = {setting(r): noise_rate(r) for r in records}

    def per_seed(runs, value, pattern="{:.2f}"):
        values = [value(r) for r in runs]
        return " / ".join("-" if v is None else pattern.format(v)
                          for v in values)

    def detection(r, key):
        d = (r["results"].get("label_audit") or {}).get("detection")
        return d and d[key]["roc_auc"]

    def relabels(r):
        d = (r["results"].get("label_audit") or {}).get("detection") or {}
        relabel = (d.get("suggestions") or {}).get("relabel") or {}
        if not relabel.get("count"):
            return "-"
        return f"{100 * relabel['accuracy']:.1f}% of {relabel['count']}"

    for (noise, variant), runs in sorted(
            groups.items(), key=lambda item: _order(
                {"protocol": protocol, "noise": item[0][0].split()[0],
                 "noise_rate": rates[item[0][0]], "variant": item[0][1],
                 "seed": 0})):
        runs = sorted(runs, key=lambda r: r["seed"])
        res = [r["results"] for r in runs]
        final = [100 * x["final_test_accuracy"] for x in res]
        cost = STEP_COST.get(variant)
        weights = " / ".join(
            "-" if x.get("final_clean_weight") is None else
            f"{x['final_clean_weight']:.2f} vs {x['final_corrupted_weight']:.2f}"
            for x in res)
        lines.append(
            f"| {noise} | {variant} | "
            f"{'-' if cost is None else f'{cost:.2f}'} | "
            f"{' / '.join(f'{a:.2f}' for a in final)} "
            f"({sum(final) / len(final):.2f}) | "
            f"{per_seed(runs, lambda r: 100 * r['results']['test_accuracy_at_best_meta_accuracy'])} | "
            f"{weights} | {' / '.join(v_shape(r) for r in runs)} | "
            f"{per_seed(runs, lambda r: detection(r, 'weight'), '{:.3f}')} | "
            f"{per_seed(runs, lambda r: detection(r, 'loss'), '{:.3f}')} | "
            f"{' / '.join(relabels(r) for r in runs)} |")
    return "\n".join(lines)


def figure(records, path, protocol="reduced"):
    """V of each MW-Net run and test accuracy per epoch, for one protocol."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    records = [r for r in records if r["protocol"] == protocol]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), dpi=100)
    for r in records:
        if "weighting_function" in r:
            curve = r["weighting_function"]
            axes[0].plot(curve["loss"], curve["weight"],
                         label=f"{setting(r)} {r['variant']} seed "
                         f"{r['seed']}")
    axes[0].set(title="learned weighting function (MW-Net)",
                xlabel="training loss", ylabel="weight")
    for axis, noise in zip(axes[1:], NOISES):
        for r in records:
            if r["noise"] == noise and noise_rate(r) == 0.4:
                # None: an epoch without a test evaluation (a gap).
                accuracy = [float("nan") if a is None else 100 * a
                            for a in r["history"]["val_accuracy"]]
                axis.plot(range(1, len(accuracy) + 1), accuracy,
                          label=f"{r['variant']} seed {r['seed']}")
        axis.set(title=f"CIFAR-10, 40% {noise} noise ({protocol})", xlabel="epoch",
                 ylabel="test accuracy (%)")
    for axis in axes:
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default="reduced",
                        choices=sorted(PROTOCOLS))
    parser.add_argument("--noises", default=",".join(NOISES),
                        help=f"comma-separated, of {', '.join(ALL_NOISES)}")
    parser.add_argument("--noise_rates", default="0.4",
                        help="comma-separated corruption probabilities")
    parser.add_argument("--variants", default="ce,mwnet,l2rw",
                        help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--archive", default=ARCHIVE)
    parser.add_argument("--scratch", default="/tmp/mwnet_accuracy",
                        help="work directories of the runs")
    parser.add_argument("--results_dir", default=DEFAULT_RESULTS)
    parser.add_argument("--table_only", action="store_true")
    parser.add_argument("--audit_existing", action="store_true",
                        help="audit finished MW-Net runs still in --scratch "
                        "whose records lack the audit, then print the tables")
    parser.add_argument("--audit_again", action="store_true",
                        help="with --audit_existing: audit every such run, "
                        "also those already audited (after the audit changed)")
    parser.add_argument("--figure", help="write the figure (PNG) of "
                        "--protocol's runs here")
    parser.add_argument("--extra_flags", default="",
                        help="flags appended to every run's mwnet_tf.main "
                        "command (shell-quoted), overriding the protocol's, "
                        "e.g. --extra_flags='--epochs=1 --train_subset=200' "
                        "for a quick check of the script (tests/"
                        "test_bench.py); give such runs their own "
                        "--results_dir and --scratch")
    args = parser.parse_args()
    import shlex
    extra_flags = shlex.split(args.extra_flags)
    noises = args.noises.split(",")
    variants = args.variants.split(",")
    seeds = args.seeds.split(",")
    try:
        rates = [float(rate) for rate in args.noise_rates.split(",")]
    except ValueError:
        rates = [-1.0]
    if not all(0.0 < rate <= 1.0 for rate in rates):
        sys.exit(f"accuracy.py: error: --noise_rates={args.noise_rates}: give "
                 "comma-separated numbers in (0, 1], e.g. 0.4,0.6.")
    if "ce_matched_lr" in variants and set(noises) - set(MATCHED_LR):
        sys.exit("accuracy.py: error: ce_matched_lr has a matched learning "
                 f"rate for {', '.join(MATCHED_LR)} noise only.")
    unknown = ([n for n in noises if n not in ALL_NOISES]
               + [v for v in variants if v not in VARIANTS]
               + [s for s in seeds if not s.isdigit()])
    if unknown:
        sys.exit(f"accuracy.py: error: unknown {', '.join(unknown)}; noises "
                 f"are {', '.join(ALL_NOISES)}, variants {', '.join(VARIANTS)}, "
                 "seeds non-negative integers.")
    if args.audit_existing:
        audit_existing(args.results_dir, args.scratch, args.audit_again)
    elif not args.table_only:
        if not os.path.isfile(args.archive):
            sys.exit(f"accuracy.py: error: --archive={args.archive} is not a "
                     "file; give the CIFAR-10 JPEG archive.")
        missing = sorted({path for seed in seeds for noise in noises
                          for rate in rates for variant in variants
                          for path in missing_inputs(variant, noise, seed,
                                                     args.results_dir, rate)})
        if missing:
            sys.exit(f"accuracy.py: error: {', '.join(missing)} not found; "
                     "the fixed variant reuses the V of an mwnet_block run "
                     "of the other seed: run that first.")
        for seed in map(int, seeds):
            for noise in noises:
                for rate in rates:
                    for variant in variants:
                        if os.path.exists(result_path(
                                args.results_dir, args.protocol, noise,
                                variant, seed, rate)):
                            continue
                        run_one(args.protocol, noise, variant, seed,
                                args.archive, args.scratch, args.results_dir,
                                extra_flags, rate)
    records = load_records(args.results_dir)
    print(table(records))
    print()
    print(comparison(records))
    print()
    print(audit_table(records))
    print()
    print(frontier(records, args.protocol))
    if args.figure:
        figure(records, args.figure, args.protocol)


if __name__ == "__main__":
    main()
