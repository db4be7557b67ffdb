"""Which classifier layers the lookahead moves (`meta_scope`).

The exact meta-gradient looks ahead through every variable of the
classifier. A partial scope (FaMUS, Xu et al. 2021; FSR, Zhang & Pfister
2021) moves only the variables of the top layers, so the meta-gradient's
backward passes stop at the lowest of them. This module turns a scope as a
user writes it ("all", "head", an integer k, layer names, or the flag's
text) into those layers.
"""

import numbers

from mwnet_tf import keras_compat

META_SCOPES = ("all", "head")


def parse_meta_scope(text):
    """`--meta_scope`'s text as `lookahead_layers` takes it ("5" -> 5,
    "a,b" -> ["a", "b"], "all" and "head" as they are).

    Raises:
        ValueError: `text` is none of these forms (the flag's rule).
    """
    stripped = (text or "").strip()
    if stripped.isdigit():
        if int(stripped) > 0:
            return int(stripped)
    else:
        names = [name.strip() for name in stripped.split(",")]
        if all(names):
            return stripped if stripped in META_SCOPES else names
    raise ValueError(
        "meta_scope must be all, head, a positive integer or comma-separated "
        "layer names, e.g. 5 or stage3_block5_conv2,logits; got "
        f"{text!r}.")


def _layers_in_order(layer):
    """Every sublayer, depth-first, each nested model's own layers in its
    order (Keras's recursive flattening reverses them inside nested models,
    which would put a nested backbone's stem at the top)."""
    seen = set()

    def walk(parent):
        for child in keras_compat.flatten_layers(parent, include_self=False,
                                                 recursive=False):
            if id(child) not in seen:  # A shared layer counts once.
                seen.add(id(child))
                yield child
                yield from walk(child)

    return walk(layer)


def weight_layers(model):
    """The layers of `model` that own trainable weights, input to output.

    Nested models and layers are flattened; for functional and Sequential
    models the order is the graph's topological order, for subclassed models
    the order in which `__init__` assigned the layers.
    """
    owners = []
    for layer in _layers_in_order(model):
        children = keras_compat.flatten_layers(layer, include_self=False,
                                               recursive=True)
        inherited = {id(v) for child in children
                     for v in child.trainable_weights}
        if any(id(v) not in inherited for v in layer.trainable_weights):
            owners.append(layer)
    return owners


def lookahead_layers(classifier, meta_scope):
    """The layers whose variables the lookahead moves; None means all.

    Args:
        classifier: A built Keras model.
        meta_scope: "all"; "head" (the last layer that owns weights); an
            integer k (the last k such layers); or a list of layer names
            (any layer, nested models included: all its weights).

    Raises:
        ValueError: `meta_scope` is of none of these forms, asks for more
            layers than own weights, or names a layer the classifier lacks.
    """
    if isinstance(meta_scope, str) and meta_scope in META_SCOPES:
        if meta_scope == "all":
            return None
        meta_scope = 1
    owners = weight_layers(classifier)
    if (isinstance(meta_scope, numbers.Integral)
            and not isinstance(meta_scope, bool)):
        if not 1 <= meta_scope <= len(owners):
            raise ValueError(
                f"meta_scope={meta_scope} must be between 1 and "
                f"{len(owners)}, the number of layers of "
                f"{classifier.name!r} that own trainable weights.")
        return owners[-int(meta_scope):]
    if (isinstance(meta_scope, (list, tuple)) and meta_scope
            and all(isinstance(name, str) for name in meta_scope)):
        by_name = {layer.name: layer for layer in keras_compat.flatten_layers(
            classifier, include_self=False, recursive=True)}
        missing = [name for name in meta_scope if name not in by_name]
        if missing:
            raise ValueError(
                f"meta_scope names {', '.join(map(repr, missing))}, not "
                f"layers of {classifier.name!r}; its top layers with weights "
                f"are {', '.join(repr(l.name) for l in owners[-5:])}.")
        return [by_name[name] for name in meta_scope]
    raise ValueError(
        'meta_scope must be "all", "head", a positive integer (the last k '
        f"layers with weights) or a list of layer names; got {meta_scope!r}.")


def lookahead_variable_ids(classifier, meta_scope):
    """Ids of the variables the lookahead moves; None means all of them."""
    layers = lookahead_layers(classifier, meta_scope)
    return None if layers is None else frozenset(
        id(v) for layer in layers for v in layer.weights)
