"""The model zoo: classifiers that output logits, built by name.

    import zoo
    model = zoo.build("resnet32", num_classes=10)
    model = zoo.build("wide_resnet", num_classes=100, depth=16, widen_factor=4)

Each family lives in its own module (`resnet_cifar`, `wide_resnet`,
`resnet50`); this registry maps a name to a builder and the arguments the name
fixes.
"""

# The modules, not their builders, are imported: each builder has its
# module's name, and `zoo.resnet_cifar` should stay the module.
from zoo import resnet50
from zoo import resnet_cifar
from zoo import wide_resnet

# name -> (builder, arguments fixed by the name). A general family name fixes
# nothing; a named configuration fixes its depth (and width).
_REGISTRY = {
    "resnet_cifar": (resnet_cifar.resnet_cifar, {}),
    "resnet8": (resnet_cifar.resnet_cifar, {"depth": 8}),
    "resnet14": (resnet_cifar.resnet_cifar, {"depth": 14}),
    "resnet20": (resnet_cifar.resnet_cifar, {"depth": 20}),
    "resnet32": (resnet_cifar.resnet_cifar, {"depth": 32}),
    "resnet44": (resnet_cifar.resnet_cifar, {"depth": 44}),
    "resnet56": (resnet_cifar.resnet_cifar, {"depth": 56}),
    "resnet110": (resnet_cifar.resnet_cifar, {"depth": 110}),
    "wide_resnet": (wide_resnet.wide_resnet, {}),
    "wrn28_2": (wide_resnet.wide_resnet, {"depth": 28, "widen_factor": 2}),
    "wrn28_10": (wide_resnet.wide_resnet, {"depth": 28, "widen_factor": 10}),
    "wrn40_2": (wide_resnet.wide_resnet, {"depth": 40, "widen_factor": 2}),
    "resnet50": (resnet50.resnet50, {}),
}


def names():
    """Returns the sorted names that `build` accepts."""
    return sorted(_REGISTRY)


def build(name, num_classes, **kwargs):
    """Builds the model registered under `name`.

    Args:
        name: One of `names()`.
        num_classes: Number of classes (logits), at least 1.
        **kwargs: Further arguments of the family's builder, e.g. `depth` for
            "resnet_cifar", `dropout_rate` for any wide ResNet, `weights` for
            "resnet50", and `input_shape` and `seed` for all.

    Returns:
        A functional `keras.Model` from images to float32 logits.

    Raises:
        ValueError: If `name` is unknown, `kwargs` override an argument that
            `name` fixes, or the builder rejects the arguments.
    """
    if name not in _REGISTRY:
        raise ValueError(
            f"Unknown model {name!r}; valid names: {', '.join(names())}")
    builder, fixed = _REGISTRY[name]
    clashes = {key: kwargs[key] for key in fixed
               if key in kwargs and kwargs[key] != fixed[key]}
    if clashes:
        raise ValueError(
            f"Model {name!r} fixes {fixed}, got {clashes}; use the family "
            f"name ({builder.__name__!r}) to choose them")
    return builder(num_classes=num_classes, **{**kwargs, **fixed})
