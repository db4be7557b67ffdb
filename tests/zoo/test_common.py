"""Tests of zoo/common.py: the PyTorch-matching pieces."""

import keras
import numpy as np
import pytest

from zoo import common


def test_strided_conv_centres_like_pytorch():
    # A kernel that copies its centre pixel: with PyTorch's symmetric padding
    # output (i, j) is centred on input (2i, 2j), the pixel a ZeroPadShortcut
    # keeps. Keras's "same" padding would centre it on (2i+1, 2j+1).
    inputs = keras.Input((6, 6, 1))
    outputs = common.conv2d(inputs, 1, 3, 2, "zeros", name="conv")
    model = keras.Model(inputs, outputs)
    kernel = np.zeros((3, 3, 1, 1), "float32")
    kernel[1, 1] = 1.0
    model.get_layer("conv").set_weights([kernel])
    x = np.random.default_rng(0).normal(size=(1, 6, 6, 1)).astype("float32")
    np.testing.assert_allclose(model(x).numpy(), x[:, ::2, ::2, :])


def test_he_normal_is_untruncated_with_variance_two_over_fan():
    fan_in = 3 * 3 * 64
    values = common.he_normal("fan_in", seed=0)((3, 3, 64, 64)).numpy()
    std = np.sqrt(2.0 / fan_in)
    assert values.std() == pytest.approx(std, rel=0.02)
    # A full normal puts 4.6% of its mass beyond two standard deviations,
    # Keras's truncated HeNormal none.
    assert np.mean(np.abs(values) > 2 * std) == pytest.approx(0.0455, abs=0.01)


def test_torch_linear_default_bounds():
    values = common.torch_linear_default(64, seed=0)((64, 1000)).numpy()
    assert np.abs(values).max() <= 1 / 8
    assert np.abs(values).max() > 0.99 / 8


def test_seed_stream_is_deterministic_and_distinct():
    stream, again = common.SeedStream(7), common.SeedStream(7)
    seeds = [stream() for _ in range(5)]
    assert seeds == [again() for _ in range(5)]
    assert len(set(seeds)) == 5
    assert seeds != [common.SeedStream(8)() for _ in range(5)]
    assert common.SeedStream(None)() is None


@pytest.mark.parametrize("num_classes", [0, -1, 2.0, True, "10"])
def test_check_num_classes_rejects(num_classes):
    with pytest.raises(ValueError, match="num_classes should be a positive"):
        common.check_num_classes(num_classes)
