"""Tests of zoo/wide_resnet.py."""

import keras
import numpy as np
import pytest

from zoo import wide_resnet


def _expected_trainable_params(depth, widen_factor, num_classes):
    """Counts the weights of the architecture by hand (what PyTorch reports)."""
    n = (depth - 4) // 6
    params = 3 * 3 * 3 * 16  # Stem.
    in_filters = 16
    for filters in (16 * widen_factor, 32 * widen_factor, 64 * widen_factor):
        for _ in range(n):
            params += 2 * in_filters + 2 * filters  # The two BatchNorms.
            params += 3 * 3 * in_filters * filters + 3 * 3 * filters * filters
            if in_filters != filters:
                params += in_filters * filters  # 1x1 projection shortcut.
            in_filters = filters
    return params + 2 * in_filters + in_filters * num_classes + num_classes


def test_wrn28_10_param_count_matches_published():
    model = wide_resnet.wide_resnet(num_classes=10, depth=28, widen_factor=10)
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    assert trainable == _expected_trainable_params(28, 10, 10)
    # Published: 36.5M (Zagoruyko & Komodakis 2016); 36.48M for 10 classes.
    assert trainable == pytest.approx(36.48e6, rel=0.01)
    assert model.count_params() == pytest.approx(36.5e6, rel=0.01)
    assert model.name == "wrn28_10"
    # With 100 classes only the logits layer grows: 36.54M.
    assert _expected_trainable_params(28, 10, 100) == pytest.approx(
        36.54e6, rel=0.001)


def test_shortcuts_are_identity_unless_the_shape_changes():
    model = wide_resnet.wide_resnet(num_classes=10, depth=10, widen_factor=1)
    projections = [l.name for l in model.layers if l.name.endswith("_shortcut")]
    # Widen factor 1 keeps 16 channels in stage 1: no projection there.
    assert projections == ["stage2_block1_shortcut", "stage3_block1_shortcut"]
    model = wide_resnet.wide_resnet(num_classes=10, depth=10, widen_factor=2)
    projections = [l.name for l in model.layers if l.name.endswith("_shortcut")]
    assert projections == ["stage1_block1_shortcut", "stage2_block1_shortcut",
                           "stage3_block1_shortcut"]


def test_dropout_only_when_asked():
    def dropouts(model):
        return [l for l in model.layers if isinstance(l, keras.layers.Dropout)]
    assert not dropouts(wide_resnet.wide_resnet(10, depth=16, widen_factor=1))
    with_dropout = dropouts(wide_resnet.wide_resnet(
        10, depth=16, widen_factor=1, dropout_rate=0.3))
    assert len(with_dropout) == 6  # One per block: 3 stages x 2 blocks.
    assert all(l.rate == 0.3 for l in with_dropout)


def test_logits_bias_starts_at_zero():
    model = wide_resnet.wide_resnet(num_classes=10, depth=10, widen_factor=1)
    np.testing.assert_array_equal(model.get_layer("logits").bias.numpy(), 0.0)


@pytest.mark.parametrize("kwargs, message", [
    ({"depth": 27}, r"depth should be 6n\+4 \(e.g. 10, 16, 22, 28, 40\), "
                    r"got 27"),
    ({"depth": 4}, r"depth should be 6n\+4"),
    ({"widen_factor": 0}, "widen_factor should be a positive integer"),
    ({"dropout_rate": 1.0}, r"dropout_rate should be in \[0, 1\)"),
    ({"dropout_rate": -0.1}, r"dropout_rate should be in \[0, 1\)"),
])
def test_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        wide_resnet.wide_resnet(num_classes=10, **kwargs)
