"""The committed accuracy records say how to rerun them on any machine."""

import glob
import json
import os

import pytest

RESULTS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "bench",
                       "results")


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(RESULTS,
                                                              "*.json"))),
                         ids=os.path.basename)
def test_record_has_no_machine_paths(path):
    with open(path) as file:
        record = json.load(file)
    for text in _strings(record):
        for word in text.split():
            value = word.split("=", 1)[-1]
            assert not os.path.isabs(value), (
                f"{os.path.basename(path)} records the absolute path {value}; "
                "record paths relative to the repository.")
    assert "--data_path=../shared/data/cifar10-jpeg.tar.gz" in record["command"]
