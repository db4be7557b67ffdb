"""The training command's flags (mwnet_tf.runner.experiment_flags),
generated from RunConfig's declarations: one per setting, of its type,
default, group, bounds, choices and rules."""

import collections
import dataclasses
import typing
from typing import Optional, Tuple

import pytest
from absl import flags
from absl.testing import flagsaver

import zoo
from mwnet_tf import layer_scope
from mwnet_tf.meta_gradient import LOOKAHEADS
from mwnet_tf.runner import experiment_flags
from mwnet_tf.runner import run_config
from mwnet_tf.runner.run_config import RunConfig, setting
from zoo import wide_resnet

FLAGS = flags.FLAGS


def _flag_type(field, hint):
    """The absl flag type a setting's declaration asks for."""
    kind, _ = run_config.value_type(hint)
    if kind is str:
        enum = field.metadata["choices"] and field.metadata["enum"]
        return "string enum" if enum else "string"
    return {bool: "bool", int: "int", float: "float",
            tuple: "comma separated list of strings"}[kind]


def test_every_setting_is_one_flag_of_its_name_type_and_default_in_one_group():
    defined = collections.Counter(
        flag.name for flag in
        FLAGS.flags_by_module_dict()[experiment_flags.__name__])
    grouped = collections.Counter(
        name for _, names in experiment_flags.FLAG_GROUPS for name in names)
    hints = typing.get_type_hints(RunConfig)
    for field in dataclasses.fields(RunConfig):
        assert defined.pop(field.name) == 1, field.name
        assert grouped.pop(field.name) == 1, field.name
        flag = FLAGS[field.name]
        assert flag.flag_type() == _flag_type(field, hints[field.name]), \
            field.name
        # The flag's default, as the run reads it, is the field's.
        assert getattr(RunConfig.from_dict({field.name: flag.default}),
                       field.name) == field.default, field.name
        assert field.metadata["help"].split("{")[0] in flag.help, field.name
    assert not defined, "flags that are not settings"
    assert not grouped, "grouped but not settings"
    assert [title for title, _ in experiment_flags.FLAG_GROUPS] == list(
        run_config.GROUPS)


def _parse(args, flag_values=FLAGS):
    flag_values.unparse_flags()
    flag_values(["mwnet_tf.main", *args])


@pytest.mark.parametrize("rate, refused", [
    ("1", True), ("-0.1", True), ("0.999", False), ("0", False)])
def test_dropout_rate_is_the_zoos_rule_checked_at_parse_time(rate, refused):
    args = ["--workdir=w", "--model=wrn28_2", f"--dropout_rate={rate}"]
    with flagsaver.flagsaver():
        if not refused:
            _parse(args)
            wide_resnet.check_dropout_rate(FLAGS.dropout_rate)
            return
        with pytest.raises(flags.IllegalFlagValueError) as error:
            _parse(args)
    with pytest.raises(ValueError) as zoos:
        wide_resnet.check_dropout_rate(float(rate))
    # One line, the zoo's own message, before anything is loaded.
    assert str(error.value) == f"flag --dropout_rate={float(rate)}: " \
        f"{zoos.value}"
    assert "\n" not in str(error.value)


def test_choices_are_the_librarys_own():
    assert FLAGS["lookahead"].parser.enum_values == list(LOOKAHEADS)
    assert ", ".join(zoo.names()) in FLAGS["model"].help


def test_meta_scope_is_parsed_once_when_the_flags_are_parsed(monkeypatch):
    calls = []

    def counted(text):
        calls.append(text)
        return layer_scope.parse_meta_scope(text)

    monkeypatch.setattr(experiment_flags, "parse_meta_scope", counted)
    with flagsaver.flagsaver():
        _parse(["--workdir=w", "--meta_scope=head"])
    assert calls == ["head"]


@dataclasses.dataclass(frozen=True)
class _WithANewSetting(RunConfig):
    """RunConfig and one setting more, declared as a new one would be."""

    label_smoothing: float = setting(
        0.0, "Label smoothing of the classifier's loss.",
        run_config.OPTIMISATION, lower_bound=0.0, upper_bound=0.5)


def test_a_new_setting_needs_only_its_declaration():
    flag_values = flags.FlagValues()
    experiment_flags.define_setting_flags(_WithANewSetting, flag_values)
    groups = dict(experiment_flags.flag_groups(_WithANewSetting))
    assert groups[run_config.OPTIMISATION][-1] == "label_smoothing"
    assert sum(names.count("label_smoothing") for names in groups.values()) \
        == 1
    flag = flag_values["label_smoothing"]
    assert (flag.flag_type(), flag.default, flag.help) == (
        "float", 0.0, "Label smoothing of the classifier's loss.")
    _parse(["--workdir=w", "--label_smoothing=0.5"], flag_values)
    assert _WithANewSetting.from_flags(flag_values) == _WithANewSetting(
        workdir="w", label_smoothing=0.5)
    with pytest.raises(flags.IllegalFlagValueError, match="label_smoothing"):
        _parse(["--workdir=w", "--label_smoothing=0.6"], flag_values)


@dataclasses.dataclass(frozen=True)
class _EveryKind:
    """One setting of each kind the flags are generated for."""

    sizes: Tuple[int, ...] = setting((8, 4), "Sizes.", run_config.MODEL,
                                     lower_bound=1, min_items=1)
    epochs: Tuple[int, ...] = setting((), "Epochs.", run_config.OPTIMISATION,
                                      lower_bound=1)
    rate: Optional[float] = setting(
        None, "A rate.", run_config.MODEL,
        rule="zoo.wide_resnet:check_dropout_rate")
    model: str = setting("resnet8", "One of {choices}.", run_config.MODEL,
                         choices="zoo:names", enum=False)
    lookahead: str = setting("sgd", "Lookahead.", run_config.METHOD,
                             choices="mwnet_tf.meta_gradient:LOOKAHEADS")
    verbose: str = setting("auto", "Progress.", run_config.RUN,
                           choices=("auto", "0"))
    tag: Optional[str] = setting(None, "Tag.", run_config.RUN, required=True)
    count: int = setting(2, "Count.", run_config.DATA, lower_bound=1,
                         upper_bound=3)
    fast: bool = setting(False, "Fast.", run_config.DISTRIBUTION)


@pytest.mark.parametrize("args, refused", [
    ([], "--tag must have a value"),
    (["--sizes="], "--sizes must be positive integers, e.g. 8,4"),
    (["--sizes=8,0"], "--sizes must be positive integers"),
    (["--epochs=x"], "--epochs must be positive integers \\(or none\\)"),
    (["--rate=1"], "dropout_rate should be in \\[0, 1\\)"),
    (["--model=resnet9"], "--model must be one of resnet110, resnet14"),
    (["--lookahead=adam"], "value should be one of <sgd|optimizer>"),
    (["--verbose=3"], "value should be one of <auto|0>"),
    (["--count=4"], "not an integer in the range \\[1, 3\\]"),
    (["--epochs=", "--rate=0.5", "--model=wrn28_2", "--lookahead=optimizer",
      "--verbose=0", "--count=3", "--fast"], None),
])
def test_flags_of_every_kind_come_from_the_declarations(args, refused):
    flag_values = flags.FlagValues()
    experiment_flags.define_setting_flags(_EveryKind, flag_values)
    assert experiment_flags.flag_groups(_EveryKind) == (
        (run_config.DATA, ("count",)),
        (run_config.MODEL, ("sizes", "rate", "model")),
        (run_config.METHOD, ("lookahead",)),
        (run_config.OPTIMISATION, ("epochs",)),
        (run_config.RUN, ("verbose", "tag")),
        (run_config.DISTRIBUTION, ("fast",)))
    assert flag_values["model"].help == f"One of {', '.join(zoo.names())}."
    args = (["--tag=t"] if refused != "--tag must have a value" else []) + args
    if refused is not None:
        with pytest.raises(flags.Error, match=refused):
            _parse(args, flag_values)
        return
    _parse(args, flag_values)
    values = {name: flag_values[name].value for name in
              ("sizes", "epochs", "rate", "model", "lookahead", "count",
               "fast")}
    assert values == {"sizes": ["8", "4"], "epochs": [], "rate": 0.5,
                      "model": "wrn28_2", "lookahead": "optimizer",
                      "count": 3, "fast": True}
