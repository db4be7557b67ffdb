"""RunConfig: the one typed description of a run, and its flags."""

import dataclasses
import json

import pytest
from absl import flags
from absl.testing import flagsaver

from mwnet_tf.runner import experiment_flags
from mwnet_tf.runner import main as main_lib  # noqa: F401
from mwnet_tf.runner.run_config import (DEFAULTS, RUN_CONTROL, RunConfig,
                                        setting)

FLAGS = flags.FLAGS


def test_every_experiment_flag_is_a_setting_and_back():
    defined = {flag.name for flag in
               FLAGS.flags_by_module_dict()[experiment_flags.__name__]}
    assert defined == set(RunConfig.names())
    assert set(RUN_CONTROL) <= defined


def test_run_control_is_what_the_settings_declare():
    declared = {field.name for field in dataclasses.fields(RunConfig)
                if field.metadata["run_control"]}
    assert set(RUN_CONTROL) == declared == {
        "workdir", "overwrite", "verbose", "download", "cache_dir", "audit",
        "relabel_confidence", "test_every"}


def test_flag_defaults_are_the_config_defaults():
    with flagsaver.flagsaver():
        FLAGS.unparse_flags()
        FLAGS(["mwnet_tf.main", "--workdir=w"])
        assert RunConfig.from_flags(FLAGS) == DEFAULTS.replace(workdir="w")


def test_values_are_typed_and_survive_json():
    with flagsaver.flagsaver():
        FLAGS.unparse_flags()
        FLAGS(["mwnet_tf.main", "--workdir=w", "--vnet_hidden=50,20",
               "--lr_decay_epochs=", "--noise_rate=0.6", "--seed=3"])
        config = RunConfig.from_flags(FLAGS)
    assert config.vnet_hidden == (50, 20) and config.lr_decay_epochs == ()
    assert config.noise_rate == 0.6 and config.seed == 3
    saved = json.loads(json.dumps(config.to_dict()))
    assert RunConfig.from_dict(saved) == config
    # Saved by older versions: list flags as strings, settings missing.
    older = dict(saved, vnet_hidden=["50", "20"])
    del older["vnet"]
    assert RunConfig.from_dict(older) == config.replace(vnet=DEFAULTS.vnet)


def test_computed_ignores_run_control_only():
    config = DEFAULTS.replace(workdir="a", verbose="2", audit=False)
    assert config.computed() == DEFAULTS.computed()
    assert DEFAULTS.replace(seed=2).computed() != DEFAULTS.computed()
    with pytest.raises(Exception):
        config.seed = 4  # Frozen: a run's settings do not change under it.


def test_settings_it_does_not_know_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown settings meta_dropout"):
        RunConfig.from_dict(dict(DEFAULTS.to_dict(), meta_dropout=0.1))
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "config.json").write_text(json.dumps(dict(
        DEFAULTS.to_dict(), meta_dropout=0.1)))
    with pytest.raises(main_lib.ExperimentError, match="cannot read"):
        main_lib.check_workdir(str(workdir), DEFAULTS, False)


def test_a_setting_names_one_of_the_groups():
    with pytest.raises(ValueError, match="group must be one of"):
        setting(1, "Help.", "Miscellaneous")
