"""Tests of zoo/resnet_cifar.py."""

import keras
import numpy as np
import pytest

from zoo import resnet_cifar


def _expected_params(depth, num_classes):
    """Counts the weights of the architecture by hand.

    Returns:
        (trainable, moving_statistics): the first is what PyTorch reports; the
        second, BatchNorm's moving means and variances, Keras also counts in
        `count_params()`.
    """
    n = (depth - 2) // 6
    convs = 3 * 3 * 3 * 16  # Stem.
    bn_channels = 16
    in_filters = 16
    for filters in (16, 32, 64):
        for _ in range(n):
            convs += 3 * 3 * in_filters * filters + 3 * 3 * filters * filters
            bn_channels += 2 * filters
            in_filters = filters
    trainable = convs + 2 * bn_channels + 64 * num_classes + num_classes
    return trainable, 2 * bn_channels


def _trainable_params(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


# Published sizes: He et al. (2016), Table 6; 0.46M for ResNet-32 in MW-Net.
@pytest.mark.parametrize("depth, published", [
    (20, 0.27e6), (32, 0.46e6), (44, 0.66e6), (56, 0.85e6)])
def test_param_count_matches_published(depth, published):
    model = resnet_cifar.resnet_cifar(num_classes=10, depth=depth)
    trainable, moving_statistics = _expected_params(depth, 10)
    assert _trainable_params(model) == trainable
    assert model.count_params() == trainable + moving_statistics
    assert trainable == pytest.approx(published, rel=0.01)


def test_resnet32_has_the_reference_layout():
    model = resnet_cifar.resnet_cifar(num_classes=10, depth=32)
    assert model.name == "resnet32"
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert len(convs) == 31  # 6n+1 convolutions plus the logits layer: 32.
    shortcuts = [l for l in model.layers
                 if isinstance(l, resnet_cifar.ZeroPadShortcut)]
    assert [l.name for l in shortcuts] == [
        "stage2_block1_shortcut", "stage3_block1_shortcut"]
    assert model.get_layer("avg_pool").output.shape == (None, 64)


def test_zero_pad_shortcut_subsamples_and_pads_channels():
    layer = resnet_cifar.ZeroPadShortcut(filters=8, strides=2)
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 4)).astype("float32")
    y = layer(x).numpy()
    assert y.shape == (2, 2, 2, 8)
    np.testing.assert_array_equal(y[..., 2:6], x[:, ::2, ::2, :])
    np.testing.assert_array_equal(y[..., :2], 0.0)
    np.testing.assert_array_equal(y[..., 6:], 0.0)
    assert layer.compute_output_shape((None, 5, 5, 4)) == (None, 3, 3, 8)
    assert not layer.weights
    clone = resnet_cifar.ZeroPadShortcut.from_config(layer.get_config())
    assert (clone.filters, clone.strides) == (8, 2)


@pytest.mark.parametrize("depth", [33, 6, 2, 0, 32.0, "32"])
def test_rejects_bad_depth(depth):
    with pytest.raises(ValueError, match=r"depth should be 6n\+2"):
        resnet_cifar.resnet_cifar(num_classes=10, depth=depth)


def test_bad_depth_message():
    with pytest.raises(ValueError) as error:
        resnet_cifar.resnet_cifar(num_classes=10, depth=33)
    assert str(error.value) == (
        "depth should be 6n+2 (e.g. 20, 32, 44, 56, 110), got 33")
