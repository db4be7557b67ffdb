"""ResNet-50 for 224x224 images with a new classifier (Clothing1M in the paper).

The backbone is `keras.applications.ResNet50`; only the head is ours. The
paper fine-tunes an ImageNet-pretrained network. Keras's ImageNet weights expect
"caffe" inputs (`keras.applications.resnet50.preprocess_input`: BGR, 0-255,
mean subtracted), while our pipelines, like PyTorch's, give RGB images scaled
to [0, 1] and normalised with the ImageNet mean and std; a first,
weight-free layer converts one into the other so the pretrained features see
what they were trained on.
"""

import os

import keras
from keras import ops

from zoo import common

_FEATURES = 2048  # Width of ResNet-50's pooled features.
# Normalisation of the inputs the model takes (torchvision's ImageNet values,
# also mwnet_tf.data's for Clothing1M), and the per-channel BGR means that
# Keras's ImageNet weights expect to have been subtracted.
_INPUT_MEAN = (0.485, 0.456, 0.406)
_INPUT_STD = (0.229, 0.224, 0.225)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="zoo")
class CaffeInput(keras.layers.Layer):
    """Maps mean/std-normalised RGB images to Keras's "caffe" ResNet input.

    Input: RGB in [0, 1], normalised with ImageNet mean and std. Output: what
    `keras.applications.resnet50.preprocess_input` makes of the 0-255 image.
    """

    def call(self, images):
        mean = ops.convert_to_tensor(_INPUT_MEAN, self.compute_dtype)
        std = ops.convert_to_tensor(_INPUT_STD, self.compute_dtype)
        caffe_mean = ops.convert_to_tensor(_CAFFE_MEAN_BGR, self.compute_dtype)
        rgb_255 = (images * std + mean) * 255.0
        return ops.flip(rgb_255, axis=-1) - caffe_mean


def check_weights(weights):
    """Raises FileNotFoundError unless `weights` is None, "imagenet" or a
    file (the runner checks --pretrained_weights with it before it loads
    any data).
    """
    if weights not in (None, "imagenet") and not os.path.isfile(
            os.fspath(weights)):
        raise FileNotFoundError(
            f"ResNet-50 weights file not found: weights={weights!r} is not a "
            "file; give 'imagenet' (downloaded) or a local weights file.")


def resnet50(num_classes, weights=None, input_shape=(224, 224, 3), seed=None,
             synchronized_batch_norm=False, name="resnet50"):
    """Builds ResNet-50 with a `num_classes`-way logits layer.

    Args:
        num_classes: Number of classes (logits), at least 1.
        weights: Initial backbone weights: None for random initialisation,
            "imagenet" to download Keras's ImageNet weights (network needed),
            or the path of a local weights file of the backbone
            (`keras.applications.ResNet50(include_top=False, pooling="avg")`),
            e.g. `resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5` or a
            `.weights.h5` file saved by Keras 3.
        input_shape: Shape of one image, (height, width, 3); each side at
            least 32. Images are RGB scaled to [0, 1] and normalised with the
            ImageNet mean and std (see `CaffeInput`).
        seed: Optional integer seed of the head's initial weights (the
            backbone's random initialisation is not seeded by it).
        synchronized_batch_norm: Whether the backbone's batch statistics are
            computed over the global batch of all replicas (see
            `common.batch_norm`).
        name: Model name.

    Returns:
        A functional `keras.Model` from images to float32 logits of shape
        (batch, num_classes). The head, like PyTorch's `nn.Linear` in the
        reference, starts from U(-1/sqrt(2048), 1/sqrt(2048)).

    Raises:
        ValueError: If `num_classes` is not a positive integer.
        FileNotFoundError: If `weights` is a path that does not exist.
        RuntimeError: If `weights="imagenet"` and the download fails.
    """
    num_classes = common.check_num_classes(num_classes)
    if weights not in (None, "imagenet"):
        weights = os.fspath(weights)  # Also accept a pathlib.Path.
    # Before the backbone is built, so that a wrong path fails fast and says
    # what is missing.
    check_weights(weights)
    try:
        backbone = keras.applications.ResNet50(
            include_top=False, weights=weights, input_shape=input_shape,
            pooling="avg")
    except ValueError:
        raise  # A bad argument, e.g. too small an input_shape.
    except Exception as error:  # pylint: disable=broad-except
        if weights != "imagenet":
            raise
        # `keras.utils.get_file` reports network failures as bare Exceptions.
        reason = " ".join(str(error).split())
        raise RuntimeError(
            f"Downloading the ImageNet weights of ResNet-50 failed ({reason}); "
            "without network access pass weights=<path of a local backbone "
            "weights file, e.g. resnet50_weights_tf_dim_ordering_tf_kernels_"
            "notop.h5> instead.") from error
    if synchronized_batch_norm:
        common.synchronize_batch_norm(backbone)
    seeds = common.SeedStream(seed)
    logits = common.logits_layer(
        num_classes,
        kernel_initializer=common.torch_linear_default(_FEATURES, seeds()),
        bias_initializer=common.torch_linear_default(_FEATURES, seeds()),
    )
    inputs = keras.Input(input_shape)
    outputs = logits(backbone(CaffeInput(name="caffe_input")(inputs)))
    return keras.Model(inputs, outputs, name=name)
