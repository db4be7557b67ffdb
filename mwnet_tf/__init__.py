"""Meta-Weight-Net (Shu et al., NeurIPS 2019) for Keras 3 / TensorFlow.

    model = mwnet_tf.MetaWeightNet(classifier)
    model.compile()                       # the paper's optimisers and L2
    model.fit(mwnet_tf.with_meta(train_ds, meta_ds, meta_batch_size=100))

`import mwnet_tf` does not import TensorFlow by itself: the names below are
imported on first use (PEP 562). The command-line programs
(`python -m mwnet_tf.main`, `python -m mwnet_tf.audit`) run from inside this
package and set TensorFlow's environment (its C++ log level) before
TensorFlow is first imported. Where TensorFlow or Keras is imported already,
as in most code that uses this package, the names are imported at once
instead, as they always were; this also registers MetaWeightNet and
WeightingNet for `keras.saving.load_model`. Otherwise Keras's first import
does (`_RegisterOnceKerasLoads`), or the first use of any of them.
"""

import importlib as _importlib
import importlib.util as _importlib_util
import sys as _sys
import typing as _typing

__version__ = "0.1.0"

# Public name -> the module that defines it.
_LAZY = {
    "MetaWeightNet": "mwnet_tf.trainer",
    "lookahead_layers": "mwnet_tf.layer_scope",
    "weight_layers": "mwnet_tf.layer_scope",
    "WeightingNet": "mwnet_tf.weighting_net",
    "load_weighting_net": "mwnet_tf.weighting_net",
    "task_families": "mwnet_tf.weighting_net",
    "with_meta": "mwnet_tf.inputs",
}
__all__ = ["MetaWeightNet", "WeightingNet", "load_weighting_net",
           "lookahead_layers", "task_families", "weight_layers", "with_meta"]

if _typing.TYPE_CHECKING:  # For type checkers and IDEs; never at run time.
    from mwnet_tf.inputs import with_meta
    from mwnet_tf.layer_scope import lookahead_layers, weight_layers
    from mwnet_tf.trainer import MetaWeightNet
    from mwnet_tf.weighting_net import (WeightingNet, load_weighting_net,
                                        task_families)


_importing = []  # Non-empty while _import_public_names runs.


def _import_public_names():
    """Imports every public name at once, as `import mwnet_tf` once did."""
    if _importing:  # Keras's first import, from inside this function.
        return
    _importing.append(True)
    try:
        for public, module in _LAZY.items():
            globals()[public] = getattr(_importlib.import_module(module),
                                        public)
    finally:
        _importing.clear()


def __getattr__(name):
    if name in _LAZY:
        _import_public_names()
        return globals()[name]
    if not name.startswith("_") and _importlib_util.find_spec(
            f"{__name__}.{name}") is not None:
        # A submodule, e.g. `mwnet_tf.data` after a bare `import mwnet_tf`
        # (the eager imports of earlier versions made some attributes).
        value = _importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


class _RegisterOnceKerasLoads:
    """Imports the public names (so registers the Keras classes) right after
    Keras itself is first imported, when that happens after `import
    mwnet_tf`: `keras.saving.load_model` of a saved MetaWeightNet then
    works in any import order, and TensorFlow is still never imported by
    `import mwnet_tf` alone. A one-shot finder on `sys.meta_path`."""

    def find_spec(self, name, path=None, target=None):
        if name != "keras":
            return None
        _sys.meta_path.remove(self)  # One shot; the real finders find it.
        spec = _importlib_util.find_spec("keras")
        if spec is None or spec.loader is None:
            return spec
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            _import_public_names()

        spec.loader.exec_module = exec_module
        return spec


if "keras" in _sys.modules or "tensorflow" in _sys.modules:
    # TensorFlow is loaded and configured already: nothing is gained by
    # waiting, and the Keras classes get registered as before.
    _import_public_names()
else:
    _sys.meta_path.insert(0, _RegisterOnceKerasLoads())
