"""The command-line flags of `python -m mwnet_tf.main`, generated from
`RunConfig`'s declarations.

`define_flags()` is called by `main.py` only; library modules never read
flags. Each setting's flag (type, default, help, bounds, choices, group) comes
from its field in `run_config.py`; what is here are the rules between
settings, each calling the library's own check. Validators check values and
combinations, never the filesystem (paths are checked by `main.py` before
any expensive work).
"""

import dataclasses
import importlib
import typing

from absl import flags

from mwnet_tf import arguments
from mwnet_tf import data as data_lib
from mwnet_tf.data import preparation
from mwnet_tf.layer_scope import parse_meta_scope
from mwnet_tf.runner import run_config
from mwnet_tf.runner.run_config import RunConfig


def flag_groups(config_class=RunConfig):
    """`(title, names)` per `run_config.GROUPS` title that has settings, in
    `--help`'s order; the names in their fields' order."""
    fields = dataclasses.fields(config_class)
    return tuple(
        (title, tuple(f.name for f in fields if f.metadata["group"] == title))
        for title in run_config.GROUPS
        if any(f.metadata["group"] == title for f in fields))


# How `python -m mwnet_tf.main --help` lists the flags, group by group.
FLAG_GROUPS = flag_groups()


def define_flags():
    """Defines the experiment flags on absl's global FLAGS (idempotent)."""
    if "method" in flags.FLAGS:
        return
    define_setting_flags(RunConfig)
    # Rules between settings, checked by the library's own functions (their
    # messages name the library's arguments: the flags' names, but for
    # prepare's path=, which is --data_path).
    _library_rule(["dataset", "data_path"], lambda f: data_lib.check_path_given(
        f["dataset"], f["data_path"]), renamed={"path=": "--data_path"})
    _library_rule(["dataset", "noise"], lambda f: data_lib.check_noise_of_dataset(
        f["dataset"], f["noise"]))
    _library_rule(["meta_scope", "real_step_weights", "method"],
                  _check_meta_scope)
    _library_rule(["label_correction", "ema_decay", "method"],
                  lambda f: arguments.check_label_correction(
                      f["label_correction"], f["ema_decay"], f["method"]))
    _library_rule(["dataset", "noise", "labels_file", "labels_key",
                   "clean_labels_key", "label_classes"],
                  lambda f: data_lib.check_label_file_arguments(
                      f["dataset"], f["noise"], f["labels_file"],
                      f["labels_key"], f["clean_labels_key"],
                      f["label_classes"]),
                  renamed={"labels_file=": "--labels_file"})
    _library_rule(["meta_source", "dataset", "noise", "labels_file", "method",
                   "meta_warmup_steps"], _check_meta_source)
    _library_rule(["method", "weighting_net"],
                  lambda f: arguments.check_weighting_net_given(
                      f["method"], f["weighting_net"]))
    flags.register_multi_flags_validator(
        ["method", "weighting_net"],
        lambda f: not f["weighting_net"] or f["method"] in ("mwnet", "fixed"),
        message="--weighting_net is for --method=fixed or --method=mwnet.")
    # With --distribute, assume several replicas (their number is known only
    # once the strategy exists).
    _library_rule(
        ["method", "meta_interval", "meta_warmup_steps", "label_correction",
         "steps_per_execution", "distribute"],
        lambda f: arguments.check_steps_per_execution(
            f["method"], f["meta_interval"], f["meta_warmup_steps"],
            f["steps_per_execution"], 1 if f["distribute"] == "none" else 2,
            f["label_correction"]))
    flags.register_multi_flags_validator(
        ["model", "pretrained_weights"],
        lambda f: f["pretrained_weights"] is None or f["model"] == "resnet50",
        message="--pretrained_weights is for --model=resnet50 only.")
    flags.register_multi_flags_validator(
        ["model", "dropout_rate"],
        lambda f: f["dropout_rate"] is None or f["model"].startswith(("wrn",
                                                                     "wide")),
        message="--dropout_rate is for Wide ResNets (--model=wrn28_10, ...).")


def define_setting_flags(config_class, flag_values=flags.FLAGS):
    """Defines one flag per field of the dataclass `config_class`, as its
    `run_config.setting(...)` declares it.

    The flag's kind follows the field's type: bool, int, float, str (an
    enum with `choices`), a list for Tuple[X, ...]; Optional[X] as X.
    """
    hints = typing.get_type_hints(config_class)
    for field in dataclasses.fields(config_class):
        _define_flag(field, hints[field.name], flag_values)


def _define_flag(field, hint, flag_values):
    name, default, meta = field.name, field.default, field.metadata
    kind, item_type = run_config.value_type(hint)
    choices = _choices(meta["choices"])
    help_text = meta["help"].replace("{choices}", ", ".join(choices or ()))
    bounds = {key: meta[key] for key in ("lower_bound", "upper_bound")
              if meta[key] is not None}
    if kind is bool:
        flags.DEFINE_bool(name, default, help_text, flag_values=flag_values)
    elif kind in (int, float):
        define = flags.DEFINE_integer if kind is int else flags.DEFINE_float
        define(name, default, help_text, flag_values=flag_values, **bounds)
    elif kind is tuple:
        flags.DEFINE_list(name, [str(item) for item in default], help_text,
                          flag_values=flag_values)
        if item_type is not str:
            _register_items_rule(name, item_type, bounds, meta["min_items"],
                                 default, flag_values)
    elif kind is str and choices is not None and meta["enum"]:
        flags.DEFINE_enum(name, default, choices, help_text,
                          flag_values=flag_values)
    elif kind is str:
        flags.DEFINE_string(name, default, help_text, flag_values=flag_values)
        if choices is not None:
            flags.register_validator(
                name, lambda value, choices=choices: value in choices,
                message=f"--{name} must be one of {', '.join(choices)}.",
                flag_values=flag_values)
    else:
        raise TypeError(f"setting {name}: no flag for type {hint}.")
    if meta["rule"] is not None:
        _register_value_rule(name, _resolved(meta["rule"]), flag_values)
    if meta["required"]:
        flags.mark_flag_as_required(name, flag_values=flag_values)


def _resolved(reference):
    """What a "module:NAME" reference names; anything else as it is."""
    if not isinstance(reference, str):
        return reference
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _choices(reference):
    """A setting's choices as strings (a function of them is called), or
    None."""
    choices = _resolved(reference)
    if choices is None:
        return None
    return [str(choice) for choice in (choices() if callable(choices)
                                       else choices)]


def _register_value_rule(name, check, flag_values):
    """The flag's value (unless None) must pass the library's `check`."""
    def validator(value):
        if value is not None:
            try:
                check(value)
            except ValueError as error:
                raise flags.ValidationError(str(error)) from error
        return True
    flags.register_validator(name, validator, flag_values=flag_values)


def _register_items_rule(name, item_type, bounds, min_items, default,
                         flag_values):
    """A list flag's items must be `item_type` values within `bounds`, at
    least `min_items` of them."""
    lower, upper = bounds.get("lower_bound"), bounds.get("upper_bound")

    def valid(values):
        try:
            items = [item_type(value) for value in values]
        except (TypeError, ValueError):
            return False
        return len(items) >= min_items and all(
            (lower is None or item >= lower)
            and (upper is None or item <= upper) for item in items)

    items = "integers" if item_type is int else "numbers"
    if item_type is int and lower == 1 and upper is None:
        items = "positive integers"
    elif bounds:
        items += f" in [{lower}, {upper}]"
    if not min_items:
        items += " (or none)"
    example = ",".join(str(item) for item in default)
    if example:
        items += f", e.g. {example}"
    flags.register_validator(name, valid, message=f"--{name} must be {items}.",
                             flag_values=flag_values)


def _check_meta_scope(f):
    """`--meta_scope`'s form, and `--real_step_weights`'s rule on it as the
    model gets it (one parse)."""
    arguments.check_real_step_weights(f["real_step_weights"], f["method"],
                                      parse_meta_scope(f["meta_scope"]))


def _check_meta_source(f):
    """The meta set's source, as `prepare` resolves it (refused where the
    data cannot give it); a pseudo-clean meta set is chosen by a model
    trained for a while, so MW-Net's meta steps must wait for it."""
    source = data_lib.resolve_meta_source(
        f["meta_source"], f["dataset"], f["noise"],
        preparation.trusted_split_before_loading(f["dataset"]),
        labels_from_file=f["labels_file"] is not None)
    if (source == "pseudo_clean" and f["method"] == "mwnet"
            and f["meta_warmup_steps"] == 0):
        raise ValueError(
            "a pseudo-clean meta set is chosen by the model after its "
            "warm-up, so --meta_warmup_steps must be at least one epoch "
            "of steps (flags/own_data.cfg sets it); or give a trusted "
            "meta set.")


def _library_rule(names, check, renamed=None):
    """Validates flags `names` with a library check that raises ValueError;
    its message becomes the flag error (with the library's argument names
    in `renamed` replaced by their flags')."""
    def validator(values):
        try:
            check(values)
        except ValueError as error:
            message = str(error)
            for argument, flag in (renamed or {}).items():
                message = message.replace(argument, flag)
            raise flags.ValidationError(message) from error
        return True
    flags.register_multi_flags_validator(names, validator)
