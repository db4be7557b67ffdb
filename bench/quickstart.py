"""The quickstart as a new user meets it, against CE with the same flags.

    python bench/quickstart.py                    # seed 1: MW-Net (cold) + CE
    python bench/quickstart.py --seeds=1,2,3
    python bench/quickstart.py --trial=d2 --flags='--lr_decay_epochs=2'
    python bench/quickstart.py --table_only

For each seed it runs `python -m mwnet_tf.main --flagfile=flags/quickstart.cfg`
twice in its own process from the repository root: as README gives it
(MW-Net) with an empty `--cache_dir`, so the wall clock includes unpacking
and decoding the archive as on a first run, then with `--method=ce` on the
decoded cache. `--flags` are appended to both commands (a trial: the
flagfile's settings with some changed); `--trial` names its records.

What it checks is what the quickstart promises (issue 18): at most
`TARGET_SECONDS` from a cold start, V decreasing over the losses the label
audit saw, clean weight at least `TARGET_GAP` above corrupted, the audit's
weight AUC at least `TARGET_AUC`, and test accuracy above CE's. Each run's
record (command, wall clock, results.json, per-epoch history, how many
images of the gallery are corrupted labels) goes to
`bench/results/quickstart/<trial>_<method>_seed<seed>.json` as it finishes;
a run whose record exists is skipped. The wall clock is only meaningful on
an otherwise idle machine (the record does not know; BENCHMARKS.md says
which runs were).
"""

import argparse
import csv
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_RESULTS = os.path.join(REPO, "bench", "results", "quickstart")
FLAGFILE = "flags/quickstart.cfg"
TARGET_SECONDS = 300
TARGET_GAP = 0.15
TARGET_AUC = 0.8
METHODS = ("mwnet", "ce")


def record_path(results_dir, trial, method, seed):
    return os.path.join(results_dir, f"{trial}_{method}_seed{seed}.json")


def gallery_corrupted(audit_csv, count):
    """How many of the gallery's images (the audit's first `count` rows, as
    ranked) carry a corrupted label; None without the noise's ground truth."""
    with open(audit_csv, newline="") as file:
        rows = [row for _, row in zip(range(count), csv.DictReader(file))]
    if not rows or rows[0].get("corrupted", "") == "":
        return None
    return sum(int(row["corrupted"]) for row in rows)


def cpu_kind(cpuinfo="/proc/cpuinfo"):
    """What sets this CPU's float32 speed here: "AVX-512", "AVX2", or the
    machine's architecture (the quickstart takes about 3x as long on an
    AVX2-only CPU as on an AVX-512 one of this project's VMs)."""
    from mwnet_tf.precision import cpu_flags

    flags = cpu_flags(cpuinfo) or set()
    if "avx512f" in flags:
        return "AVX-512"
    return "AVX2" if "avx2" in flags else platform.machine()


def run_one(trial, method, seed, extra_flags, scratch, results_dir):
    """Runs the quickstart once (MW-Net from an empty cache) and records it."""
    from mwnet_tf.label_audit import DEFAULT_GALLERY_SIZE
    from mwnet_tf.runner.callbacks import read_history

    name = os.path.splitext(os.path.basename(
        record_path("", trial, method, seed)))[0]
    workdir = os.path.join(scratch, name)
    cache = os.path.join(scratch, "cache")
    cold = method == "mwnet"
    # A fresh work directory: a resumed run's wall clock would mean nothing.
    shutil.rmtree(workdir, ignore_errors=True)
    if cold:
        shutil.rmtree(cache, ignore_errors=True)
    flags = [f"--flagfile={FLAGFILE}", f"--seed={seed}",
             *([] if method == "mwnet" else [f"--method={method}"]),
             *extra_flags]
    command = [sys.executable, "-m", "mwnet_tf.main", *flags,
               f"--workdir={workdir}", f"--cache_dir={cache}"]
    print("#", " ".join(command[1:]), flush=True)
    started = time.time()
    subprocess.run(command, cwd=REPO, check=True)
    wall = time.time() - started
    with open(os.path.join(workdir, "results.json")) as file:
        results = json.load(file)
    history = read_history(os.path.join(workdir, "history.csv"))
    record = {
        "trial": trial, "method": method, "seed": seed,
        "command": "python -m mwnet_tf.main " + shlex.join(flags),
        "cold_cache": cold, "wall_seconds": wall, "cpu": cpu_kind(),
        "results": results,
        "history": {key: [row.get(key) for row in history]
                    for key in ("val_accuracy", "clean_weight",
                                "corrupted_weight", "mean_weight",
                                "epoch_seconds")},
    }
    audit_csv = os.path.join(workdir, "audit.csv")
    if os.path.isfile(audit_csv):
        record["gallery"] = {
            "images": DEFAULT_GALLERY_SIZE,
            "corrupted": gallery_corrupted(audit_csv, DEFAULT_GALLERY_SIZE)}
    os.makedirs(results_dir, exist_ok=True)
    with open(record_path(results_dir, trial, method, seed), "w") as file:
        json.dump(record, file, indent=1)
    return record


def load_records(results_dir):
    records = {}
    for name in sorted(os.listdir(results_dir)) if os.path.isdir(
            results_dir) else []:
        if name.endswith(".json"):
            with open(os.path.join(results_dir, name)) as file:
                record = json.load(file)
            records[record["trial"], record["method"], record["seed"]] = record
    return records


def verdict(mwnet, ce):
    """The quickstart's conditions this pair of runs misses ([] = all met)."""
    audit = mwnet["results"].get("label_audit") or {}
    detection = audit.get("detection") or {}
    missed = []
    if mwnet["wall_seconds"] > TARGET_SECONDS or not mwnet["cold_cache"]:
        missed.append(f"time > {TARGET_SECONDS} s from a cold start")
    if (audit.get("weighting_function") or {}).get("shape") != "decreasing":
        missed.append("V not decreasing")
    if not detection:
        missed.append("no audit with known labels")
    else:
        if (detection["mean_weight_clean"] - detection["mean_weight_corrupted"]
                < TARGET_GAP):
            missed.append(f"gap < {TARGET_GAP}")
        if detection["weight"]["roc_auc"] < TARGET_AUC:
            missed.append(f"AUC < {TARGET_AUC}")
    if ce is None:
        missed.append("no CE run")
    elif (mwnet["results"]["final_test_accuracy"]
          <= ce["results"]["final_test_accuracy"]):
        missed.append("not above CE")
    return missed


def table(records):
    lines = ["| trial | seed | wall s (cold) | CPU | test acc | "
             "CE, same flags | minus CE | clean / corrupted weight (audit) | "
             "AUC weight / loss | V | gallery: corrupted | conditions missed |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (trial, method, seed), mwnet in sorted(records.items()):
        if method != "mwnet":
            continue
        ce = records.get((trial, "ce", seed))
        accuracy = 100 * mwnet["results"]["final_test_accuracy"]
        audit = mwnet["results"].get("label_audit") or {}
        detection = audit.get("detection") or {}
        shape = (audit.get("weighting_function") or {}).get("shape", "-")
        gallery = mwnet.get("gallery") or {}
        if detection:
            weights = (f"{detection['mean_weight_clean']:.2f} / "
                       f"{detection['mean_weight_corrupted']:.2f}")
            auc = (f"{detection['weight']['roc_auc']:.3f} / "
                   f"{detection['loss']['roc_auc']:.3f}")
        else:
            weights = auc = "-"
        if ce is None:
            ce_accuracy = difference = "-"
        else:
            ce_value = 100 * ce["results"]["final_test_accuracy"]
            ce_accuracy = f"{ce_value:.2f}"
            difference = f"{accuracy - ce_value:+.2f}"
        corrupted = ("-" if gallery.get("corrupted") is None
                     else f"{gallery['corrupted']} / {gallery['images']}")
        missed = ", ".join(verdict(mwnet, ce)) or "none"
        cold = "" if mwnet["cold_cache"] else " (warm)"
        lines.append(
            f"| {trial} | {seed} | {mwnet['wall_seconds']:.0f}{cold} | "
            f"{mwnet.get('cpu', '-')} | {accuracy:.2f} | {ce_accuracy} | "
            f"{difference} | {weights} | {auc} | {shape} | {corrupted} | "
            f"{missed} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1")
    parser.add_argument("--trial", default="quickstart",
                        help="name of the records (letters, digits, _ or -)")
    parser.add_argument("--flags", default="",
                        help="flags appended to both commands (shell-quoted)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="comma-separated, of mwnet, ce")
    parser.add_argument("--scratch", default="/tmp/mwnet_quickstart",
                        help="work directories and the (emptied) cache")
    parser.add_argument("--results_dir", default=DEFAULT_RESULTS)
    parser.add_argument("--table_only", action="store_true")
    args = parser.parse_args()
    seeds = args.seeds.split(",")
    methods = args.methods.split(",")
    bad = ([s for s in seeds if not s.isdigit()]
           + [m for m in methods if m not in METHODS]
           + ([] if args.trial.replace("_", "").replace("-", "").isalnum()
              else [args.trial]))
    if bad:
        sys.exit(f"quickstart.py: error: unknown {', '.join(bad)}; seeds are "
                 "non-negative integers, methods mwnet and ce, the trial a "
                 "name of letters, digits, _ or -.")
    if not args.table_only:
        extra_flags = shlex.split(args.flags)
        for seed in map(int, seeds):
            for method in methods:
                if not os.path.exists(record_path(
                        args.results_dir, args.trial, method, seed)):
                    run_one(args.trial, method, seed, extra_flags,
                            args.scratch, args.results_dir)
    print(table(load_records(args.results_dir)))


if __name__ == "__main__":
    main()
