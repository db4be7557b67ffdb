"""Wide ResNets (Zagoruyko & Komodakis 2016), e.g. WRN-28-10.

Matches the `WideResNet` of the official Meta-Weight-Net code: pre-activation
basic blocks (BN-ReLU-conv, twice) in three stages of widths 16k, 32k and 64k
after a 16-filter stem, a 1x1 convolution shortcut where the shape changes,
and BN-ReLU-average-pool before the classifier.
"""

import keras

from zoo import common


def _wide_block(x, filters, strides, dropout_rate, seeds,
                synchronized_batch_norm, name):
    """A pre-activation basic block, with dropout between its convolutions."""
    preactivated = common.batch_norm(name + "_bn1",
                                      synchronized_batch_norm)(x)
    preactivated = keras.layers.ReLU(name=name + "_relu1")(preactivated)
    if strides == 1 and x.shape[-1] == filters:
        shortcut = x
    else:
        # As in the reference, a projection shortcut reads the pre-activated
        # input, while an identity shortcut carries the raw input.
        shortcut = common.conv2d(preactivated, filters, 1, strides,
                                 common.he_normal("fan_out", seeds()),
                                 name=name + "_shortcut")
    y = common.conv2d(preactivated, filters, 3, strides,
                      common.he_normal("fan_out", seeds()),
                      name=name + "_conv1")
    y = common.batch_norm(name + "_bn2", synchronized_batch_norm)(y)
    y = keras.layers.ReLU(name=name + "_relu2")(y)
    if dropout_rate > 0:
        y = keras.layers.Dropout(dropout_rate, seed=seeds(),
                                 name=name + "_dropout")(y)
    y = common.conv2d(y, filters, 3, 1, common.he_normal("fan_out", seeds()),
                      name=name + "_conv2")
    return keras.layers.Add(name=name + "_add")([shortcut, y])


def check_dropout_rate(dropout_rate):
    """Raises ValueError unless `dropout_rate` is in [0, 1) (also the
    runner's rule for --dropout_rate, checked when the flags are parsed)."""
    if not 0 <= dropout_rate < 1:
        raise ValueError(
            f"dropout_rate should be in [0, 1), got {dropout_rate!r}")


def wide_resnet(num_classes, depth=28, widen_factor=10, dropout_rate=0.0,
                input_shape=(32, 32, 3), seed=None,
                synchronized_batch_norm=False, name=None):
    """Builds WRN-depth-widen_factor that outputs logits.

    Initialisation follows the reference: convolutions N(0, 2 / fan_out),
    batch-norm scale 1 and offset 0, dense weight PyTorch's `nn.Linear`
    default, dense bias 0.

    Args:
        num_classes: Number of classes (logits), at least 1.
        depth: Number of weighted layers, 6n+4 for n blocks per stage:
            10, 16, 22, 28, 40, ...
        widen_factor: Width multiplier k of the three stages (16k, 32k, 64k
            filters), at least 1.
        dropout_rate: Dropout rate between the two convolutions of each block,
            in [0, 1); 0 (the reference default) adds no dropout layers.
        input_shape: Shape of one image, (height, width, channels).
        seed: Optional integer seed of the initial weights and dropout masks.
        synchronized_batch_norm: Whether batch statistics are computed over
            the global batch of all replicas (see `common.batch_norm`).
        name: Model name; defaults to "wrn{depth}_{widen_factor}".

    Returns:
        A functional `keras.Model` from images to float32 logits of shape
        (batch, num_classes).

    Raises:
        ValueError: If `depth` is not 6n+4 with n >= 1, or `widen_factor`,
            `dropout_rate` or `num_classes` is out of range.
    """
    if not common.is_integer(depth) or depth < 10 or (depth - 4) % 6:
        raise ValueError(
            f"depth should be 6n+4 (e.g. 10, 16, 22, 28, 40), got {depth!r}")
    if not common.is_integer(widen_factor) or widen_factor < 1:
        raise ValueError(
            f"widen_factor should be a positive integer, got {widen_factor!r}")
    check_dropout_rate(dropout_rate)
    depth, widen_factor = int(depth), int(widen_factor)
    dropout_rate = float(dropout_rate)
    num_classes = common.check_num_classes(num_classes)
    blocks_per_stage = (depth - 4) // 6
    stage_filters = (16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
    seeds = common.SeedStream(seed)

    inputs = keras.Input(shape=input_shape, name="images")
    x = common.conv2d(inputs, 16, 3, 1, common.he_normal("fan_out", seeds()),
                      name="stem_conv")
    for stage, filters in enumerate(stage_filters, start=1):
        for block in range(1, blocks_per_stage + 1):
            strides = 2 if stage > 1 and block == 1 else 1
            x = _wide_block(x, filters, strides, dropout_rate, seeds,
                            synchronized_batch_norm,
                            name=f"stage{stage}_block{block}")
    x = common.batch_norm("final_bn", synchronized_batch_norm)(x)
    x = keras.layers.ReLU(name="final_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    logits = common.logits_layer(
        num_classes,
        kernel_initializer=common.torch_linear_default(stage_filters[-1],
                                                       seeds()),
        bias_initializer="zeros")(x)
    return keras.Model(inputs, logits,
                       name=name or f"wrn{depth}_{widen_factor}")
