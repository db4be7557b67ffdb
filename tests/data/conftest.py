"""Fixtures of the data tests."""

import pytest
from data_fakes import make_folder


@pytest.fixture
def tiny_folder(tmp_path):
    """3 classes, 12 train / 3 test images each, PNG 8x8."""
    return make_folder(tmp_path / "tiny", ("cherry", "apple", "banana"),
                       {"train": 12, "test": 3})


@pytest.fixture
def cache_dir(tmp_path):
    return str(tmp_path / "cache")
