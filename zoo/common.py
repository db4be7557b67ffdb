"""Pieces every zoo family shares: PyTorch-matching layers and argument checks.

The Meta-Weight-Net results we compare against come from PyTorch code, so the
zoo builds its layers the way PyTorch would (batch-norm statistics, padding of
strided convolutions, initial weights). Keeping these choices here means each
family module only describes its architecture.
"""

import random

import keras

from mwnet_tf import keras_compat
# Shared with the library, which must not import the zoo.
from mwnet_tf.arguments import is_integer  # noqa: F401
from mwnet_tf.initializers import torch_linear_default  # noqa: F401

# PyTorch's BatchNorm2d defaults. PyTorch's momentum 0.1 weights the new batch,
# Keras's momentum weights the running value, so the same update is 0.9 here.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


class SeedStream:
    """Hands out one integer seed per initializer, all derived from one seed.

    Every initializer needs its own seed: Keras initializers that share an
    integer seed draw identical values for same-shaped weights.

    Args:
        seed: Integer seed of the whole model, or None to leave each
            initializer unseeded (then `keras.utils.set_random_seed` decides).
    """

    def __init__(self, seed):
        # A private generator: drawing seeds never touches global random state.
        self._rng = None if seed is None else random.Random(seed)

    def __call__(self):
        """Returns the next seed (None if the stream is unseeded)."""
        return None if self._rng is None else self._rng.randrange(2**31 - 1)


def check_num_classes(num_classes):
    """Returns `num_classes` as a Python int.

    A NumPy integer (e.g. read from dataset metadata) is accepted, and
    converted so that the model config stays JSON-serialisable.

    Raises:
        ValueError: If `num_classes` is not a positive integer.
    """
    if not is_integer(num_classes) or num_classes < 1:
        raise ValueError(
            f"num_classes should be a positive integer, got {num_classes!r}")
    return int(num_classes)


def he_normal(mode, seed):
    """PyTorch's `kaiming_normal_` for ReLU nets: N(0, 2 / fan), not truncated.

    Keras's `HeNormal` truncates at two standard deviations; the references
    sample the full normal.

    Args:
        mode: "fan_in" or "fan_out", the fan the variance is divided by.
        seed: Integer seed or None.

    Returns:
        A `keras.initializers.VarianceScaling`.
    """
    return keras.initializers.VarianceScaling(
        scale=2.0, mode=mode, distribution="untruncated_normal", seed=seed)


def batch_norm(name, synchronized=False):
    """A `BatchNormalization` layer with PyTorch's momentum and epsilon.

    Args:
        name: Layer name.
        synchronized: Whether training-mode batch statistics are all-reduced
            over the replicas of a tf.distribute strategy, so that N replicas
            normalise with the global batch's statistics as one device would
            (see `synchronize_batch_norm`).
    """
    return keras.layers.BatchNormalization(
        momentum=BN_MOMENTUM, epsilon=BN_EPSILON, synchronized=synchronized,
        name=name)


def synchronize_batch_norm(model):
    """Makes every `BatchNormalization` layer of `model` synchronized.

    For models whose layers the zoo does not construct itself (the
    `keras.applications` backbone of ResNet-50). The flag is read when the
    layer is called, so setting it on built layers takes effect; it is part
    of each layer's config, so saved models keep it.
    """
    for layer in keras_compat.flatten_layers(model, include_self=False,
                                             recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True
    return model


def conv2d(x, filters, kernel_size, strides, kernel_initializer, name):
    """A bias-free convolution padded like PyTorch's `padding=kernel_size // 2`.

    Keras's "same" padding of a strided convolution on an even-sized input
    pads only the bottom and right, which shifts every output by one pixel
    against PyTorch and against a `x[:, ::2, ::2]` shortcut. Strided
    convolutions therefore pad explicitly and symmetrically.

    Args:
        x: Input tensor, NHWC.
        filters: Number of output channels.
        kernel_size: Side of the square kernel (odd).
        strides: Stride in both spatial dimensions.
        kernel_initializer: Initializer of the kernel.
        name: Name of the convolution layer (the padding layer, if any, gets
            `name + "_pad"`).

    Returns:
        The output tensor.
    """
    padding = "same"
    if strides > 1:
        if kernel_size > 1:
            x = keras.layers.ZeroPadding2D(kernel_size // 2,
                                           name=name + "_pad")(x)
        padding = "valid"
    return keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding=padding, use_bias=False,
        kernel_initializer=kernel_initializer, name=name)(x)


def logits_layer(num_classes, kernel_initializer, bias_initializer):
    """The final `Dense` layer, named "logits", computing in float32.

    It is float32 whatever the global dtype policy, so that under
    `mixed_bfloat16` the logits, and the losses the weighting net reads, keep
    float32 precision.

    Args:
        num_classes: Number of outputs.
        kernel_initializer: Initializer of the weight matrix.
        bias_initializer: Initializer of the bias.

    Returns:
        A `keras.layers.Dense` with no activation.
    """
    return keras.layers.Dense(
        num_classes, kernel_initializer=kernel_initializer,
        bias_initializer=bias_initializer, dtype="float32", name="logits")
