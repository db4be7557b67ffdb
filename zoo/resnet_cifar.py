"""ResNets for 32x32 images (He et al. 2016, Sec. 4.2): ResNet-20/32/44/56/110.

Matches the `ResNet32` of the official Meta-Weight-Net code: three stages of
basic blocks with 16, 32 and 64 filters, and parameter-free "option A"
shortcuts where the shape changes, which keeps ResNet-32 at 0.46M parameters.
"""

import keras
from keras import ops

from zoo import common

_STAGE_FILTERS = (16, 32, 64)


@keras.saving.register_keras_serializable(package="zoo")
class ZeroPadShortcut(keras.layers.Layer):
    """The parameter-free shortcut of He et al. (2016), "option A".

    Subsamples the input spatially by `strides` (keeping pixels 0, strides,
    2 * strides, ...) and zero-pads the channels evenly on both sides up to
    `filters`.

    Args:
        filters: Number of output channels, at least the number of input
            channels.
        strides: Spatial subsampling factor.
        **kwargs: Passed to `keras.layers.Layer` (e.g. `name`).
    """

    def __init__(self, filters, strides=2, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.strides = strides

    def build(self, input_shape):
        if input_shape[-1] > self.filters:
            raise ValueError(
                f"ZeroPadShortcut cannot reduce {input_shape[-1]} channels to "
                f"{self.filters}")
        self.built = True

    def call(self, inputs):
        x = inputs[:, ::self.strides, ::self.strides, :]
        extra = self.filters - inputs.shape[-1]
        return ops.pad(x, [[0, 0], [0, 0], [0, 0],
                           [extra // 2, extra - extra // 2]])

    def compute_output_shape(self, input_shape):
        def subsampled(size):
            return None if size is None else -(-size // self.strides)
        return (input_shape[0], subsampled(input_shape[1]),
                subsampled(input_shape[2]), self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({"filters": self.filters, "strides": self.strides})
        return config


def _basic_block(x, filters, strides, seeds, synchronized_batch_norm, name):
    """conv-BN-ReLU-conv-BN, plus the shortcut, then ReLU."""
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = ZeroPadShortcut(filters, strides, name=name + "_shortcut")(x)
    y = common.conv2d(x, filters, 3, strides,
                      common.he_normal("fan_in", seeds()), name=name + "_conv1")
    y = common.batch_norm(name + "_bn1", synchronized_batch_norm)(y)
    y = keras.layers.ReLU(name=name + "_relu1")(y)
    y = common.conv2d(y, filters, 3, 1, common.he_normal("fan_in", seeds()),
                      name=name + "_conv2")
    y = common.batch_norm(name + "_bn2", synchronized_batch_norm)(y)
    y = keras.layers.Add(name=name + "_add")([shortcut, y])
    return keras.layers.ReLU(name=name + "_out")(y)


def resnet_cifar(num_classes, depth=32, input_shape=(32, 32, 3), seed=None,
                 synchronized_batch_norm=False, name=None):
    """Builds a CIFAR ResNet of depth 6n+2 that outputs logits.

    Initialisation follows the reference: convolution and dense weights from
    `kaiming_normal_` (N(0, 2 / fan_in)), the dense bias from PyTorch's
    `nn.Linear` default, batch-norm scale 1 and offset 0.

    Args:
        num_classes: Number of classes (logits), at least 1.
        depth: Number of weighted layers, 6n+2 for n blocks per stage:
            20, 32, 44, 56, 110, ...
        input_shape: Shape of one image, (height, width, channels).
        seed: Optional integer seed of the initial weights.
        synchronized_batch_norm: Whether batch statistics are computed over
            the global batch of all replicas (see `common.batch_norm`).
        name: Model name; defaults to "resnet{depth}".

    Returns:
        A functional `keras.Model` from images to float32 logits of shape
        (batch, num_classes).

    Raises:
        ValueError: If `depth` is not 6n+2 with n >= 1, or `num_classes` is
            not a positive integer.
    """
    if not common.is_integer(depth) or depth < 8 or (depth - 2) % 6:
        raise ValueError(
            f"depth should be 6n+2 (e.g. 20, 32, 44, 56, 110), got {depth!r}")
    depth = int(depth)
    num_classes = common.check_num_classes(num_classes)
    blocks_per_stage = (depth - 2) // 6
    seeds = common.SeedStream(seed)

    inputs = keras.Input(shape=input_shape, name="images")
    x = common.conv2d(inputs, _STAGE_FILTERS[0], 3, 1,
                      common.he_normal("fan_in", seeds()), name="stem_conv")
    x = common.batch_norm("stem_bn", synchronized_batch_norm)(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    for stage, filters in enumerate(_STAGE_FILTERS, start=1):
        for block in range(1, blocks_per_stage + 1):
            strides = 2 if stage > 1 and block == 1 else 1
            x = _basic_block(x, filters, strides, seeds,
                             synchronized_batch_norm,
                             name=f"stage{stage}_block{block}")
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    logits = common.logits_layer(
        num_classes,
        kernel_initializer=common.he_normal("fan_in", seeds()),
        bias_initializer=common.torch_linear_default(_STAGE_FILTERS[-1],
                                                     seeds()))(x)
    return keras.Model(inputs, logits, name=name or f"resnet{depth}")
