"""Every script in bench/ runs at tiny sizes and prints what it claims.

Each script runs in its own process from the repository root, as a user runs
it, so that a change to the package that breaks a benchmark fails here rather
than at the next (hours-long) benchmark. Sizes are the smallest that still
take each script's real code path; most numbers they print are timings, so
the tests check that the tables and files have the promised shape and hold
finite, positive (or in-range) numbers, not what the numbers are.
"""

import csv
import glob
import importlib.util
import json
import math
import os
import platform
import re
import shlex
import subprocess
import sys
import tarfile

import pytest
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "bench", "results")
# Fails a hung script (e.g. a worker waiting for its peer) instead of CI.
TIMEOUT_SECONDS = 900
# A tiny image folder: train, test and a clean meta split per class. With a
# meta split, bench/input_pipeline.py (which asks for the default meta set)
# takes it whole instead of drawing 1,000 meta images from a tiny train split.
CLASSES = ("ant", "bee", "cat", "dog")
TRAIN_PER_CLASS = 12
SPLIT_COUNTS = {"train": TRAIN_PER_CLASS, "test": 3, "meta": 3}


def _data_fakes():
    """tests/data/data_fakes.py, loaded by path.

    Its directory is on sys.path only once pytest has collected tests/data,
    which running this file alone does not do.
    """
    spec = importlib.util.spec_from_file_location(
        "data_fakes", os.path.join(REPO, "tests", "data", "data_fakes.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_archive(tmp_path_factory):
    """A .tar.gz image folder of 32x32 JPEGs (as ../shared/data) plus meta."""
    root = tmp_path_factory.mktemp("archive")
    tree = _data_fakes().make_folder(root / "tree", CLASSES, SPLIT_COUNTS,
                                     size=(32, 32), ext="jpg")
    archive = str(root / "tiny.tar.gz")
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname="tiny")
    return archive


def _run(script, *args):
    """Runs bench/<script> with `args` from the repository root; its stdout."""
    completed = subprocess.run(
        [sys.executable, os.path.join("bench", script), *map(str, args)],
        cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT_SECONDS)
    assert completed.returncode == 0, (
        f"bench/{script} exited with {completed.returncode}:\n"
        f"{completed.stdout[-3000:]}\n{completed.stderr[-5000:]}")
    return completed.stdout


def _cells(line):
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _markdown_table(text, header_start):
    """The rows, as dicts by header, of the first table whose header starts so.

    A repeated column name (step_time.py's two "x CE") is prefixed with the
    name of the column before it: "peak RSS MiB x CE".
    """
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines)
              if line.startswith(f"| {header_start}")]
    assert starts, f"no table whose header starts {header_start!r} in:\n{text}"
    header = []
    for name in _cells(lines[starts[0]]):
        header.append(f"{header[-1]} {name}" if name in header else name)
    assert set(_cells(lines[starts[0] + 1])) == {"---"}
    rows = []
    for line in lines[starts[0] + 2:]:
        if not line.startswith("|"):
            break
        cells = _cells(line)
        assert len(cells) == len(header), line
        rows.append(dict(zip(header, cells)))
    return rows


def _positive(text):
    value = float(text)
    assert math.isfinite(value) and value > 0, text
    return value


# bench/accuracy.py


def _committed_records():
    records = []
    for path in sorted(glob.glob(os.path.join(RESULTS, "*.json"))):
        with open(path) as file:
            records.append(json.load(file))
    return records


def test_accuracy_tables_and_figure_of_the_committed_results(tmp_path):
    # Read first: a benchmark running beside the tests may add records.
    records = _committed_records()
    assert records, f"no committed results in {RESULTS}"
    figure = tmp_path / "accuracy.png"
    output = _run("accuracy.py", "--table_only", f"--figure={figure}")

    table = _markdown_table(output,
                            "protocol | noise | variant | seed | final")
    listed = {(row["protocol"], row["noise"], row["variant"], row["seed"])
              for row in table}
    def setting(record):  # Records before rates varied are at 40%.
        return (f"{record['noise']} "
                f"{round(100 * record.get('noise_rate', 0.4))}%")

    for record in records:
        key = (record["protocol"], setting(record),
               record["variant"], str(record["seed"]))
        assert key in listed, f"{key} is missing from the table"
    for row in table:
        assert 0 < float(row["final test acc"]) <= 100

    comparison = _markdown_table(output, "protocol | noise | variant | "
                                 "minus CE")
    has_ce = {(r["protocol"], setting(r)) for r in records
              if r["variant"] == "ce"}
    compared = {(r["protocol"], setting(r), r["variant"]) for r in records
                if r["variant"] != "ce" and (r["protocol"], setting(r))
                in has_ce}
    assert {(row["protocol"], row["noise"], row["variant"])
            for row in comparison} == compared

    # The frontier's "relabels right": per seed, in seed order, the share
    # of the audit's relabel verdicts that are right and their number; "-"
    # for none, an audit from before the verdicts, or no audit.
    def relabels(record):
        audit = record["results"].get("label_audit") or {}
        relabel = ((audit.get("detection") or {}).get("suggestions")
                   or {}).get("relabel") or {}
        return ("-" if not relabel.get("count") else
                f"{100 * relabel['accuracy']:.1f}% of {relabel['count']}")
    frontier = _markdown_table(output, "noise | variant | step x CE")
    with_relabels = 0
    for row in frontier:
        runs = sorted((r for r in records if r["protocol"] == "reduced"
                       and r["variant"] == row["variant"]
                       and setting(r) == row["noise"]),
                      key=lambda r: r["seed"])
        assert runs, row
        assert row["relabels right"] == " / ".join(map(relabels, runs))
        with_relabels += row["relabels right"] != "-"
    assert with_relabels  # The pseudo-clean runs' audits have verdicts.

    audits = _markdown_table(output, "protocol | noise | variant | seed | "
                             "ROC AUC")
    assert len(audits) == sum(
        bool((r["results"].get("label_audit") or {}).get("detection"))
        for r in records)
    for row in audits:
        assert 0 <= float(row["ROC AUC, weight"]) <= 1
        assert 0 <= float(row["ROC AUC, loss"]) <= 1

    with Image.open(figure) as image:
        assert image.format == "PNG"
        # Three panels side by side: much wider than high.
        assert image.width > 2 * image.height > 0


@pytest.mark.slow
def test_accuracy_trains_one_tiny_variant_end_to_end(tiny_archive, tmp_path):
    # An MW-Net variant: run_one keeps its V (under --results_dir, never in
    # the repository's results), records V's curve, and the run is audited.
    results_dir = tmp_path / "results"
    committed = sorted(os.listdir(os.path.join(REPO, "bench", "results",
                                               "weighting_nets")))
    # A subset smaller than the train split, as the protocol takes one.
    tiny = ["--model=resnet8", "--meta_per_class=2",
            f"--train_subset={len(CLASSES) * TRAIN_PER_CLASS - 8}",
            "--batch_size=8", "--meta_batch_size=8", "--epochs=1",
            f"--cache_dir={tmp_path / 'cache'}"]
    output = _run("accuracy.py", "--noises=uniform", "--variants=mwnet_k10",
                  "--seeds=1", f"--archive={tiny_archive}",
                  f"--scratch={tmp_path / 'scratch'}",
                  f"--results_dir={results_dir}",
                  "--extra_flags=" + shlex.join(tiny))

    assert sorted(os.listdir(results_dir)) == [
        "uniform40_mwnet_k10_seed1.json", "weighting_nets"]
    assert os.listdir(results_dir / "weighting_nets") == [
        "uniform40_mwnet_k10_seed1.keras"]
    assert sorted(os.listdir(os.path.join(
        REPO, "bench", "results", "weighting_nets"))) == committed
    with open(results_dir / "uniform40_mwnet_k10_seed1.json") as file:
        record = json.load(file)
    assert (record["protocol"], record["noise"], record["variant"],
            record["method"], record["seed"]) == (
                "reduced", "uniform", "mwnet_k10", "mwnet", 1)
    # The variant's and the extra flags are recorded, the extra ones last,
    # so that they are what ran.
    assert "--meta_interval=10" in record["command"].split()
    assert record["command"].endswith(" ".join(tiny))
    results = record["results"]
    assert results["epochs_completed"] == 1
    assert results["data"]["num_classes"] == len(CLASSES)
    assert 0 <= results["final_test_accuracy"] <= 1
    assert len(record["history"]["val_accuracy"]) == 1
    curve = record["weighting_function"]
    assert len(curve["loss"]) == len(curve["weight"]) == 101
    assert all(0 <= w <= 1 for w in curve["weight"])

    [row] = _markdown_table(output,
                            "protocol | noise | variant | seed | final")
    assert (row["variant"], row["seed"]) == ("mwnet_k10", "1")
    assert float(row["final test acc"]) == pytest.approx(
        100 * results["final_test_accuracy"], abs=0.005)
    # mwnet_tf.main audits runs with a V by default; the audit table and
    # the frontier show it, the frontier with V's shape over the losses seen.
    audit = results["label_audit"]
    [audit_row] = _markdown_table(output, "protocol | noise | variant | seed "
                                  "| ROC AUC")
    assert float(audit_row["ROC AUC, loss"]) == pytest.approx(
        audit["detection"]["loss"]["roc_auc"], abs=0.0005)
    [frontier_row] = _markdown_table(output, "noise | variant | step x CE")
    assert frontier_row["variant"] == "mwnet_k10"
    assert frontier_row["V's shape"] == audit["weighting_function"]["shape"]
    assert frontier_row["AUC, weight"] == (
        f"{audit['detection']['weight']['roc_auc']:.3f}")


# bench/audit_csv.py


def test_audit_csv_writes_and_times_the_csv(tmp_path):
    from mwnet_tf import label_audit

    rows = 500
    path = tmp_path / "audit.csv"
    output = _run("audit_csv.py", f"--rows={rows}", f"--csv={path}")

    match = re.fullmatch(
        rf"{rows} rows: ([\d.]+) s, (\d+) MiB of CSV, peak memory \+(-?\d+) "
        r"MiB over the (\d+) MiB of the audit's columns and the interpreter",
        output.strip())
    assert match, output
    assert float(match[1]) >= 0
    _positive(match[4])

    with open(path, newline="") as file:
        table = list(csv.reader(file))
    assert tuple(table[0]) == label_audit.CSV_COLUMNS
    written = [dict(zip(table[0], row)) for row in table[1:]]
    assert [int(row["rank"]) for row in written] == list(range(1, rows + 1))
    assert sorted(int(row["index"]) for row in written) == list(range(rows))
    for row in written:
        assert row["file"].endswith(f"{int(row['index']):09d}.jpg")
        assert row["given_class"] == f"class_{row['given_label']}"
        assert row["corrupted"] in ("", "0", "1")
    # Most suspect (lowest weight) first.
    weights = [float(row["weight"]) for row in written]
    assert weights == sorted(weights)


# bench/input_pipeline.py

PIPELINE_LINE = re.compile(
    r"input pipeline: (\d+) images/s \(train, augmented, batch (\d+), median "
    r"of (\d+) x (\d+) batches, (.+), \d+ CPUs visible\)")


@pytest.mark.slow
def test_input_pipeline_on_an_archive_with_the_alternatives(tiny_archive,
                                                           tmp_path):
    output = _run("input_pipeline.py", f"--archive={tiny_archive}",
                  f"--cache_dir={tmp_path / 'cache'}", "--batch_size=8",
                  "--num_batches=2", "--warmup=1", "--repeats=1",
                  "--compare_alternatives")

    lines = output.strip().splitlines()
    match = PIPELINE_LINE.fullmatch(lines[0])
    assert match, output
    _positive(match[1])
    assert match.group(2, 3, 4) == ("8", "1", "2")
    # The meta split is the archive's own, so all training images are used.
    assert match[5] == (f"CIFAR-10 archive ({len(CLASSES) * TRAIN_PER_CLASS} "
                        "training images)")
    alternatives = [re.fullmatch(r"  (.+): (\d+) images/s", line)
                    for line in lines[1:]]
    assert len(alternatives) == 4 and all(alternatives), output
    assert len({m[1] for m in alternatives}) == 4
    for alternative in alternatives:
        _positive(alternative[2])


def test_input_pipeline_falls_back_to_synthetic_images(tmp_path):
    output = _run("input_pipeline.py", f"--archive={tmp_path / 'missing'}",
                  "--synthetic_images=64", "--batch_size=8",
                  "--num_batches=2", "--warmup=1", "--repeats=1")

    match = PIPELINE_LINE.fullmatch(output.strip())
    assert match, output
    _positive(match[1])
    assert match[5] == "64 synthetic 32x32 images (archive not found)"


# bench/step_time.py and bench/distributed.py: ResNet-8 (the smallest model
# in the zoo with a known top block), batch 4, one timed step after one
# warm-up step, float32, one process per configuration.
TINY_TIMING = ["--batch_size=4", "--steps=1", "--warmup=1", "--repeats=1"]


def _half_unit(printed):
    """Half a unit of the last digit printed: the rounding's largest error."""
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    return 0.5 * 10 ** -decimals


def _ratio_bounds(numerator, denominator):
    """The smallest and largest ratio of the unrounded values behind two
    printed numbers: the bench scripts print a ratio of two medians before
    rounding either (0.0034 / 0.0036 prints as 0.003, 0.004 and 0.94), so
    a printed ratio is checked against this interval."""
    n, d = float(numerator), float(denominator)
    dn, dd = _half_unit(numerator), _half_unit(denominator)
    return (n - dn) / (d + dd), (n + dn) / max(d - dd, 1e-12)


@pytest.mark.slow
def test_step_time_table(tmp_path):
    output = _run("step_time.py", "--models=resnet8", "--policies=float32",
                  "--scopes=block",
                  "--methods=fixed,reuse,reuse_sl,reuse_ema,selection",
                  "--intervals=2", *TINY_TIMING)

    table = _markdown_table(output, "model |")
    assert [(row["method"], row["meta_scope"], row["meta step every"])
            for row in table] == [
        ("ce", "-", "-"), ("mwnet", "all", "1"),
        ("mwnet", "block (5 layers)", "1"), ("fixed", "-", "-"),
        ("reuse", "all", "1"), ("reuse_sl", "all", "1"),
        ("reuse_ema", "all", "1"), ("selection", "-", "-"),
        ("mwnet", "all", "2 (mean)"), ("reuse", "all", "2 (mean)"),
        ("reuse_sl", "all", "2 (mean)"), ("reuse_ema", "all", "2 (mean)")]
    for row in table:
        # The amortised row times whole intervals: 1 step rounds up to 2.
        steps = "2 x 1" if row["meta step every"] == "2 (mean)" else "1 x 1"
        assert (row["model"], row["policy"], row["steps x processes"]) == (
            "resnet8", "float32", steps)
        _positive(row["s / step"])
        _positive(row["peak RSS MiB"])
        # Each "x CE" is the column before it over CE's, computed before
        # either was rounded for printing: check it against the interval
        # the printed values allow (tiny steps print as 0.003 or 0.004 s).
        for column, ratio in (("s / step", "x CE"),
                              ("peak RSS MiB", "peak RSS MiB x CE")):
            low, high = _ratio_bounds(row[column], table[0][column])
            assert low - 0.005 <= float(row[ratio]) <= high + 0.005, (
                column, row[column], table[0][column], row[ratio])
    assert table[0]["x CE"] == table[0]["peak RSS MiB x CE"] == "1.00"


@pytest.mark.slow
def test_distributed_table_over_one_device_replicas_and_workers():
    # One configuration per strategy: 4 processes, two of them the workers
    # of a local cluster. CE takes the script's every line as MW-Net does
    # (only `method=` differs) at a fraction of the tracing time (MW-Net on
    # two replicas traces for about a minute); synchronized BatchNorm is the
    # variant that needs cross-replica communication in the forward pass.
    # MW-Net on replicas and workers is tested in test_trainer.py and
    # test_multi_worker.py.
    output = _run("distributed.py", "--model=resnet8", "--methods=ce",
                  "--batch_norms=synchronized", *TINY_TIMING)

    table = _markdown_table(output, "strategy |")
    assert [(row["strategy"], row["replicas"]) for row in table] == [
        ("none", "1"), ("mirrored", "2"), ("multi_worker", "2")]
    for row in table:
        assert (row["method"], row["BatchNorm"]) == ("ce", "synchronized")
        _positive(row["s / step"])
        low, high = _ratio_bounds(row["s / step"], table[0]["s / step"])
        assert low - 0.005 <= float(row["x same on one device"]) <= (
            high + 0.005)
        # Per-replica BatchNorm was not timed: no ratio to it.
        assert row["x per-replica BN"] == "-"


@pytest.mark.slow
def test_distributed_input_work_per_worker(monkeypatch):
    """Worker 0 of two reads half of every global batch of either pipeline:
    the files through the script's table (a process per row), the arrays
    in this process (the same function, without two more TF start-ups)."""
    output = _run("distributed.py", "--input", "--input_pipelines=files",
                  "--steps=2", "--warmup=1", "--repeats=1")

    table = _markdown_table(output, "input |")
    assert [(row["input"], row["workers"], row["examples per worker"])
            for row in table] == [("files", "1", "32"), ("files", "2", "16")]
    assert table[0]["x one worker"] == "1.00"
    _positive(table[1]["CPU s / batch"])
    _positive(table[0]["CPU s / batch"])
    low, high = _ratio_bounds(table[1]["CPU s / batch"],
                              table[0]["CPU s / batch"])
    assert low - 0.005 <= float(table[1]["x one worker"]) <= high + 0.005
    _positive(table[1]["wall s / batch"])

    monkeypatch.syspath_prepend(os.path.join(REPO, "bench"))
    spec = importlib.util.spec_from_file_location(
        "bench_distributed", os.path.join(REPO, "bench", "distributed.py"))
    distributed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(distributed)
    for workers, examples in ((1, 100), (2, 50)):
        result = distributed.measure_input("arrays", workers, batches=2,
                                           warmup=0)
        assert result["examples"] == examples
        _positive(result["cpu_s"] + result["wall_s"])


def test_accuracy_variants_name_the_files_they_need():
    """The fixed variant reuses the other seed's committed mwnet_block V at
    every noise rate; ce_matched_lr is refused where no rate is matched."""
    spec = importlib.util.spec_from_file_location(
        "bench_accuracy", os.path.join(REPO, "bench", "accuracy.py"))
    accuracy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(accuracy)
    flags = accuracy.variant_flags("fixed", "uniform", 2)
    assert flags[-1] == ("--weighting_net=bench/results/weighting_nets/"
                         "uniform40_mwnet_block_seed1.keras")
    assert accuracy.missing_inputs("fixed", "uniform", 2) == []
    assert accuracy.variant_flags("fixed", "asym", 1, rate=0.6)[-1].endswith(
        "asym60_mwnet_block_seed2.keras")
    assert os.path.basename(accuracy.result_path(
        "", "reduced", "asym", "cmwnet", 1, 0.6)) == "asym60_cmwnet_seed1.json"
    process = subprocess.run(
        [sys.executable, "bench/accuracy.py", "--noises=asym",
         "--variants=ce_matched_lr"], cwd=REPO, capture_output=True,
        text=True, timeout=TIMEOUT_SECONDS)
    assert process.returncode != 0
    assert "matched learning rate for uniform, flip noise only" in (
        process.stderr)


# bench/quickstart.py


def _bench_module(name):
    spec = importlib.util.spec_from_file_location(
        f"bench_{name}", os.path.join(REPO, "bench", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_quickstart_runs_mwnet_cold_then_ce_and_records_both(tiny_archive,
                                                              tmp_path):
    scratch, results_dir = tmp_path / "scratch", tmp_path / "results"
    # Left by an earlier run: the MW-Net run must start from an empty cache.
    (scratch / "cache").mkdir(parents=True)
    (scratch / "cache" / "stale").write_text("")
    # 40 training images in batches of 8: 5 steps, the last 3 meta steps.
    tiny = ["--model=resnet8", f"--data_path={tiny_archive}",
            f"--train_subset={len(CLASSES) * TRAIN_PER_CLASS - 8}",
            "--meta_per_class=2", "--batch_size=8", "--meta_batch_size=8",
            "--epochs=1", "--lr_decay_epochs=", "--meta_warmup_steps=2",
            "--meta_interval=1"]
    output = _run("quickstart.py", "--trial=tiny", "--seeds=3",
                  f"--scratch={scratch}", f"--results_dir={results_dir}",
                  "--flags=" + shlex.join(tiny))

    assert sorted(os.listdir(results_dir)) == [
        "tiny_ce_seed3.json", "tiny_mwnet_seed3.json"]
    assert not (scratch / "cache" / "stale").exists()
    records = {}
    for method in ("mwnet", "ce"):
        with open(results_dir / f"tiny_{method}_seed3.json") as file:
            records[method] = json.load(file)
    mwnet, ce = records["mwnet"], records["ce"]
    assert (mwnet["cold_cache"], ce["cold_cache"]) == (True, False)
    # The flagfile first, the trial's flags last (they are what ran).
    assert mwnet["command"].split()[3] == "--flagfile=flags/quickstart.cfg"
    assert mwnet["command"].endswith(shlex.join(tiny))
    assert ce["command"].endswith("--method=ce " + shlex.join(tiny))
    assert "label_audit" not in ce["results"]
    for record in records.values():
        assert record["results"]["data"]["seed"] == 3
        assert record["results"]["epochs_completed"] == 1
        _positive(record["wall_seconds"])
    # The gallery count is read back from the audit's ranking.
    with open(scratch / "tiny_mwnet_seed3" / "audit.csv") as file:
        rows = list(csv.DictReader(file))[:36]
    assert mwnet["gallery"] == {
        "images": 36, "corrupted": sum(int(r["corrupted"]) for r in rows)}

    [row] = _markdown_table(output, "trial | seed")
    accuracy = 100 * mwnet["results"]["final_test_accuracy"]
    ce_accuracy = 100 * ce["results"]["final_test_accuracy"]
    assert (row["trial"], row["seed"]) == ("tiny", "3")
    assert row["CPU"] == mwnet["cpu"] == ce["cpu"] in ("AVX-512", "AVX2",
                                                      platform.machine())
    assert float(row["minus CE"]) == pytest.approx(accuracy - ce_accuracy,
                                                   abs=0.011)
    assert row["V"] == (
        mwnet["results"]["label_audit"]["weighting_function"]["shape"])
    assert ("not above CE" in row["conditions missed"]) == (
        accuracy <= ce_accuracy)

    # A second call runs nothing (the records exist) and prints the table.
    assert _markdown_table(_run(
        "quickstart.py", "--trial=tiny", "--seeds=3",
        f"--scratch={scratch}", f"--results_dir={results_dir}",
        "--flags=--epochs=0"), "trial | seed") == [row]


def test_quickstart_records_the_kind_of_cpu(tmp_path):
    quickstart = _bench_module("quickstart")
    cpuinfo = tmp_path / "cpuinfo"
    for flags, kind in (("fpu avx2 avx512f avx512_bf16", "AVX-512"),
                        ("fpu sse4_2 avx2 fma", "AVX2"),
                        ("fp asimd", platform.machine())):
        cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        assert quickstart.cpu_kind(str(cpuinfo)) == kind


def test_quickstart_verdict_names_each_condition_missed():
    quickstart = _bench_module("quickstart")

    def pair(seconds=250.0, cold=True, shape="decreasing", clean=0.7,
             corrupted=0.3, auc=0.9, accuracy=0.56, ce_accuracy=0.55):
        audit = {"weighting_function": {"shape": shape},
                 "detection": {"mean_weight_clean": clean,
                               "mean_weight_corrupted": corrupted,
                               "weight": {"roc_auc": auc},
                               "loss": {"roc_auc": auc}}}
        mwnet = {"wall_seconds": seconds, "cold_cache": cold,
                 "results": {"final_test_accuracy": accuracy,
                             "label_audit": audit}}
        ce = {"results": {"final_test_accuracy": ce_accuracy}}
        return mwnet, ce

    assert quickstart.verdict(*pair()) == []
    assert quickstart.verdict(*pair(seconds=301)) == [
        "time > 300 s from a cold start"]
    assert quickstart.verdict(*pair(cold=False)) == [
        "time > 300 s from a cold start"]
    assert quickstart.verdict(*pair(shape="increasing")) == [
        "V not decreasing"]
    assert quickstart.verdict(*pair(clean=0.44, corrupted=0.30)) == [
        "gap < 0.15"]
    assert quickstart.verdict(*pair(auc=0.79)) == ["AUC < 0.8"]
    assert quickstart.verdict(*pair(ce_accuracy=0.56)) == ["not above CE"]
    assert quickstart.verdict(pair()[0], None) == ["no CE run"]


def test_quickstart_refuses_bad_arguments_before_any_run(tmp_path):
    for argument in ("--seeds=1,x", "--methods=l2rw", "--trial=a/b"):
        process = subprocess.run(
            [sys.executable, "bench/quickstart.py", argument,
             f"--scratch={tmp_path}", f"--results_dir={tmp_path}"],
            cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT_SECONDS)
        assert process.returncode != 0
        assert "quickstart.py: error: unknown" in process.stderr
        assert os.listdir(tmp_path) == []


# bench/pseudo_clean_pool.py


def test_pool_replay_measures_the_chosen_labels_right(tmp_path):
    # Two classes of 40: in each, the 5 lowest losses of the whole class
    # are right labels; every other example's label is wrong. A pool of
    # the whole class finds only right labels; a pool of a quarter (10 of
    # 40) holds on average 1.25 of the 5, so most of its choice is wrong.
    rows = []
    for label in (0, 1):
        for k in range(40):
            right = k < 5
            rows.append({"given_label": label, "loss": k / 10,
                         "corrupted": 0 if right else 1})
    run = tmp_path / "run"
    run.mkdir()
    with open(run / "audit.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, ["given_label", "loss", "corrupted"])
        writer.writeheader()
        writer.writerows(rows)
    output = _run("pseudo_clean_pool.py", run, "--fractions=1,0.25",
                  "--per_class=5", "--draws=50")
    (row,) = _markdown_table(output, "run |")
    whole, quarter = (row[f"pool {f}: mean / worst"] for f in ("1", "0.25"))
    assert whole == "1.000 / 1.00"
    mean = float(quarter.split(" / ")[0])
    # Expected share right: E[hypergeometric(10 of 40, 5 marked)] / 5.
    assert abs(mean - 0.25) < 0.08, quarter

