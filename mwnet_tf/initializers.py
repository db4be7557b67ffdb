"""PyTorch's default initializers as Keras initializers.

The Meta-Weight-Net results we compare against come from PyTorch code; V and
the zoo's classifiers start where the references' layers start.
"""

import math

import keras


def torch_linear_default(fan_in, seed):
    """PyTorch's default `nn.Linear` initializer: U(-1/sqrt(fan_in), +...).

    PyTorch draws both the weight and the bias of a fresh `nn.Linear` from
    this distribution; the references keep it where they do not re-initialise.

    Args:
        fan_in: Number of inputs of the layer.
        seed: Integer seed or None.

    Returns:
        A `keras.initializers.RandomUniform`.
    """
    limit = 1.0 / math.sqrt(fan_in)
    return keras.initializers.RandomUniform(-limit, limit, seed=seed)
