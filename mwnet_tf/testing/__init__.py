"""Test support shipped with the package: `local_cluster` runs one command
as N TF_CONFIG workers on this machine (tests/test_multi_worker.py and
bench/distributed.py)."""
