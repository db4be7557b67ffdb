"""What a new user meets first: --help, and a start without TensorFlow noise."""

import os
import re
import subprocess
import sys

import pytest
from absl import flags

from mwnet_tf.runner import command_line
from mwnet_tf.runner import experiment_flags
from mwnet_tf.runner import main as main_lib

FLAGS = flags.FLAGS
REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
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
