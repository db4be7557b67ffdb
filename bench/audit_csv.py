"""Time and memory of writing a label audit of Clothing1M's size.

    python bench/audit_csv.py --rows=1000000
    python bench/audit_csv.py --rows=1000 --csv=/tmp/audit.csv  # keep the CSV

The audit keeps only per-example numbers (the images stream through in
batches), so what grows with the data set is the CSV. This writes the CSV of
a synthetic audit of --rows examples with Clothing1M-like file paths and
reports seconds, file size and the peak resident memory above the process's
baseline.
"""

import argparse
import os
import resource
import tempfile
import time

import numpy as np


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--csv", help="write the CSV here and keep it "
                        "(default: a temporary file, deleted)")
    args = parser.parse_args()

    from mwnet_tf import label_audit

    rng = np.random.default_rng(0)
    n = args.rows
    classes = [f"class_{k}" for k in range(14)]
    given = rng.integers(0, 14, n)
    audit = label_audit.LabelAudit(
        index=np.arange(n), given_label=given,
        file=np.array([f"images/{i % 10}/{i % 100:02d}/{i:09d}.jpg"
                       for i in range(n)]),
        predicted_label=rng.integers(0, 14, n),
        predicted_probability=rng.random(n, dtype=np.float32),
        loss=rng.exponential(1.0, n).astype(np.float32),
        weight=rng.random(n, dtype=np.float32),
        corrupted=np.where(rng.random(n) < 0.07,
                           (rng.random(n) < 0.4).astype(np.int8), -1))
    baseline = peak_rss_mib()
    with tempfile.TemporaryDirectory() as directory:
        path = args.csv or os.path.join(directory, "audit.csv")
        start = time.perf_counter()
        label_audit.write_csv(audit, path, classes)
        seconds = time.perf_counter() - start
        size = os.path.getsize(path) / 2**20
    print(f"{n} rows: {seconds:.1f} s, {size:.0f} MiB of CSV, peak memory "
          f"+{peak_rss_mib() - baseline:.0f} MiB over the "
          f"{baseline:.0f} MiB of the audit's columns and the interpreter")


if __name__ == "__main__":
    main()
