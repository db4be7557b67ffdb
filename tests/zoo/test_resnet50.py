"""Tests of zoo/resnet50.py. Offline: no test downloads anything."""

import keras
import numpy as np
import pytest

from zoo import resnet50

_SMALL = (64, 64, 3)  # Small images keep the backbone quick to build and run.


def test_param_count_matches_keras_reference():
    model = resnet50.resnet50(num_classes=1000)
    # keras.applications.ResNet50 with its own 1000-way top: 25,636,712 (the
    # published 25.6M).
    assert model.count_params() == 25_636_712
    assert model.output.shape == (None, 1000)


def test_loads_local_weights_file(tmp_path):
    backbone = keras.applications.ResNet50(
        include_top=False, weights=None, input_shape=_SMALL, pooling="avg")
    path = tmp_path / "backbone.weights.h5"
    backbone.save_weights(path)
    model = resnet50.resnet50(num_classes=5, weights=path,  # A pathlib.Path.
                              input_shape=_SMALL)
    head = model.get_layer("logits")
    loaded = [v for v in model.weights if not any(v is w for w in head.weights)]
    assert len(loaded) == len(backbone.weights)
    for saved, restored in zip(backbone.weights, loaded):
        np.testing.assert_array_equal(saved.numpy(), restored.numpy())


def test_missing_weights_file_fails_before_building(tmp_path, monkeypatch):
    def must_not_build(*args, **kwargs):
        raise AssertionError("built the backbone before checking the file")
    monkeypatch.setattr(keras.applications, "ResNet50", must_not_build)
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        resnet50.resnet50(num_classes=5, weights=str(tmp_path / "none.h5"))


def test_failed_imagenet_download_says_what_to_do(monkeypatch):
    # Patch the downloader Keras's ResNet50 calls, so the test never touches
    # the network (or a cached file) wherever it runs.
    from keras.src.utils import file_utils

    def offline_get_file(*args, **kwargs):
        raise Exception("URL fetch failure on https://example: None -- "
                        "[Errno -3] Temporary failure in name resolution")
    monkeypatch.setattr(file_utils, "get_file", offline_get_file)
    with pytest.raises(RuntimeError) as error:
        resnet50.resnet50(num_classes=5, weights="imagenet",
                          input_shape=(32, 32, 3))
    message = str(error.value)
    assert "\n" not in message
    assert "Downloading the ImageNet weights of ResNet-50 failed" in message
    assert "Temporary failure in name resolution" in message
    assert "pass weights=<path of a local backbone weights file" in message


def test_input_conversion_matches_keras_preprocessing():
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (2, 4, 4, 3)).astype("float32")
    normalised = ((images / 255.0 - np.array(resnet50._INPUT_MEAN))
                  / np.array(resnet50._INPUT_STD)).astype("float32")
    expected = keras.applications.resnet50.preprocess_input(images.copy())
    np.testing.assert_allclose(resnet50.CaffeInput()(normalised), expected,
                               rtol=1e-5, atol=1e-3)
