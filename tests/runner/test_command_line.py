"""What a new user meets first: --help, and a start without TensorFlow noise."""

import collections
import dataclasses
import os
import re
import subprocess
import sys
import typing
from typing import Optional, Tuple

import pytest
from absl import flags
from absl.testing import flagsaver

import zoo
from mwnet_tf import layer_scope
from mwnet_tf.meta_gradient import LOOKAHEADS
from mwnet_tf.runner import command_line
from mwnet_tf.runner import experiment_flags
from mwnet_tf.runner import main as main_lib
from mwnet_tf.runner import run_config
from mwnet_tf.runner.run_config import RunConfig, setting
from zoo import wide_resnet

FLAGS = flags.FLAGS
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# TensorFlow's C++ log lines (absl format), e.g.
# "E0000 00:00:1796208758.142002    4689 cuda_platform.cc:52] failed call ...".
TF_LOG_LINE = re.compile(r"^[IWEF]\d{4} [\d:.]+ +\d+ \S+:\d+\] ")


def _environment(**settings):
    """This environment without the TF_CPP_MIN_LOG_LEVEL tests/conftest.py
    sets, plus `settings`: what a user's shell gives the command."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env.update(settings)
    return env


def _command(args, cwd=REPO, **settings):
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True,
                          timeout=120, env=_environment(**settings))


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


def test_help_text_lists_every_flag_once_under_its_group():
    text = main_lib.help_text()
    titles = [title for title, _ in experiment_flags.FLAG_GROUPS]
    positions = [text.index(f"\n{title}:\n") for title in titles]
    assert positions == sorted(positions)
    for index, (title, names) in enumerate(experiment_flags.FLAG_GROUPS):
        end = positions[index + 1] if index + 1 < len(titles) else None
        section = text[positions[index]:end]
        for name in names:
            assert re.search(rf"^  --(\[no\])?{name}: ", section, re.M), name
    for flag in FLAGS.flags_by_module_dict()[experiment_flags.__name__]:
        assert len(re.findall(rf"^  --(\[no\])?{flag.name}: ", text,
                              re.M)) == 1, flag.name
    assert "Other:" not in text


def test_help_without_flagfiles_leaves_them_out(monkeypatch):
    monkeypatch.setattr(command_line, "find_flags_dir", lambda: None)
    text = main_lib.help_text()
    assert "--noise_rate" in text and "Flagfiles" not in text


def test_flagfiles_are_described_by_their_first_comment_line(monkeypatch):
    monkeypatch.chdir(REPO)
    lines = command_line.flagfiles_help().splitlines()
    assert lines[1].split()[0] == "quickstart.cfg"  # First: where to start.
    described = {line.split()[0]: line for line in lines[1:]}
    assert "base.cfg" not in described  # Included by the others.
    assert "CIFAR-10 from the shared image-folder archive" in \
        described["quickstart.cfg"]
    assert "MW-Net 89.27%" in described["cifar10_uniform40.cfg"]
    assert "--data_path=" in described["clothing1m.cfg"]
    names = list(described)
    assert names.index("cifar10_longtail20.cfg") < names.index(
        "cifar10_longtail100.cfg")


@pytest.mark.parametrize("argv, asks", [
    (["-h"], True), (["--help"], True), (["--helpshort"], True),
    (["-helpshort"], True), (["--help=true"], True), (["-?"], True),
    (["--helpfull"], False), (["--nohelp"], False), (["--help=false"], False),
    (["--", "--help"], False), (["--flagfile=flags/quickstart.cfg"], False),
])
def test_what_asks_for_help(argv, asks):
    assert command_line.wants_help(["mwnet-tf"] + argv) == asks


@pytest.mark.parametrize("module, shown", [
    ("mwnet_tf.main", ["--noise_rate", "Noise and imbalance:",
                       "quickstart.cfg", "Paper (Table 1"]),
    ("mwnet_tf.audit", ["--workdir", "--gallery_size", "--data_path"]),
])
def test_help_shows_the_programs_own_flags_and_exits_0(module, shown):
    process = _command([sys.executable, "-m", module, "--help"])
    assert process.returncode == 0, process.stderr
    for text in shown:
        assert text in process.stdout
    for absl_flag in ("--logtostderr", "--verbosity", "--test_tmpdir",
                      "--helpfull:", "--only_check_args"):
        assert absl_flag not in process.stdout
    assert "Traceback" not in process.stderr


@pytest.mark.slow
def test_the_command_starts_without_tensorflows_cuinit_error(tmp_path):
    args = ["--flagfile=flags/quickstart.cfg", f"--workdir={tmp_path / 'run'}",
            f"--data_path={tmp_path / 'no_such.tar.gz'}"]
    # pip's console-script launcher for `mwnet-tf` (mwnet_tf.main:cli).
    script = tmp_path / "mwnet-tf"
    script.write_text("import re\nimport sys\nfrom mwnet_tf.main import cli\n"
                      "if __name__ == '__main__':\n"
                      "    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', "
                      "'', sys.argv[0])\n    sys.exit(cli())\n")
    runs = {
        "module": _command([sys.executable, "-m", "mwnet_tf.main", *args]),
        "script": _command([sys.executable, str(script), *args]),
        # A level the user sets wins: all of TensorFlow's log comes back.
        "level 0": _command([sys.executable, "-m", "mwnet_tf.main", *args],
                            TF_CPP_MIN_LOG_LEVEL="0"),
    }
    for process in runs.values():
        # Fails on the missing archive, after TensorFlow has started.
        assert process.returncode == 1
        assert process.stderr.strip().endswith("or a .tar.gz archive of one.")
    for name in ("module", "script"):
        stderr = runs[name].stderr.splitlines()
        assert not [line for line in stderr if "cuInit" in line], name
        # The lines logged before TensorFlow reads the level remain
        # (tensorflow/tensorflow#100442), all of them INFO.
        assert all(line.startswith("I") for line in stderr
                   if TF_LOG_LINE.match(line)), name
    # TensorFlow did start before the failure: at level 0 it logs more
    # (here: its CPU instructions, INFO, and the cuInit ERROR).
    def logged(process):
        return [line for line in process.stderr.splitlines()
                if TF_LOG_LINE.match(line)]
    assert len(logged(runs["level 0"])) > len(logged(runs["module"]))


def test_importing_the_library_sets_nothing_and_loads_tensorflow_on_use():
    program = """if True:
        import os, sys
        import mwnet_tf
        assert "tensorflow" not in sys.modules
        assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ
        for name in mwnet_tf.__all__:
            assert getattr(mwnet_tf, name).__name__ == name, name
        assert set(mwnet_tf.__all__) <= set(dir(mwnet_tf))
        assert mwnet_tf.__version__
        import keras
        assert keras.saving.get_registered_object("mwnet_tf>WeightingNet")
        from mwnet_tf import data
        from mwnet_tf import label_audit
        from mwnet_tf.runner import audit_command
        # The audit library's former name is the module itself.
        import mwnet_tf.audit.label_audit
        assert mwnet_tf.audit.label_audit is label_audit
        from mwnet_tf.audit.label_audit import audit_labels
        assert audit_labels is label_audit.audit_labels
        assert mwnet_tf.data is data
        assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    """
    process = _command([sys.executable, "-c", program])
    assert process.returncode == 0, process.stderr


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


def test_a_setting_names_one_of_the_groups():
    with pytest.raises(ValueError, match="group must be one of"):
        setting(1, "Help.", "Miscellaneous")
