"""The experiment runner: flagfiles, end-to-end runs, resume, bad input."""

import csv
import glob
import json
import os
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from absl import flags
from absl.testing import flagsaver
from tiny_runs import REPO, run_lock_held
from tiny_runs import image_tree as _image_tree
from tiny_runs import parse as _parse
from tiny_runs import run as _run
from tiny_runs import tiny_args as _tiny_args

import mwnet_tf
from mwnet_tf.runner import callbacks as callbacks_lib
from mwnet_tf.runner import experiment
from mwnet_tf.runner import main as main_lib
from mwnet_tf.runner.run_config import RunConfig
from mwnet_tf.weighting_net import task_families

FLAGS = flags.FLAGS
FLAGFILES = sorted(glob.glob(os.path.join(REPO, "flags", "*.cfg")))


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    # Flagfiles include flags/base.cfg relative to the repository root.
    monkeypatch.chdir(REPO)


@pytest.fixture(scope="module")
def image_tree(tmp_path_factory):
    return _image_tree(tmp_path_factory.mktemp("tree"), 12, 20, seed=0)


def test_the_fast_option_composes_with_every_experiment():
    experiments = [p for p in FLAGFILES if os.path.basename(p)[:-4]
                   not in OPTION_FLAGFILES]
    with open(os.path.join(REPO, "flags", "fast.cfg")) as file:
        command = file.read().splitlines()[1]
    assert command.startswith("## python -m mwnet_tf.main --flagfile=flags/")
    for path in experiments:
        name = os.path.basename(path)[:-4]
        given = USER_DATA_FLAGFILES.get(name, [])
        with flagsaver.flagsaver():
            _parse([f"--flagfile={path}", "--flagfile=flags/fast.cfg",
                    *given])
            assert (FLAGS.meta_interval, FLAGS.meta_lr,
                    FLAGS.real_step_weights) == (8, 0.003, "lookahead")
            # Everything else is the experiment's.
            assert FLAGS.workdir == f"runs/{os.path.basename(path)[:-4]}"
            assert FLAGS.method == "mwnet" and FLAGS.meta_scope == "all"


# Flagfiles that are not experiments: the shared base, and options added
# after an experiment's flagfile.
OPTION_FLAGFILES = ("base", "fast")
# Flagfiles of a user's own data: what the command adds (their first line).
USER_DATA_FLAGFILES = {
    "own_data": ["--data_path=my_images"],
    "cifar10n_aggre": ["--labels_file=cifar10n.npz"],
    "cifar10n_random1": ["--labels_file=cifar10n.npz"],
    "cifar10n_worse": ["--labels_file=cifar10n.npz"],
    "cifar100n_noisy": ["--labels_file=cifar100n.npz"],
}


@pytest.mark.parametrize("path", FLAGFILES, ids=os.path.basename)
def test_every_flagfile_parses_and_validates(path):
    name = os.path.basename(path)[:-len(".cfg")]
    with open(path) as file:
        lines = file.read().splitlines()
    if name in OPTION_FLAGFILES:
        return
    assert lines[0] == f"## python -m mwnet_tf.main --flagfile=flags/{name}.cfg" \
        or lines[0].startswith(f"## python -m mwnet_tf.main "
                               f"--flagfile=flags/{name}.cfg ")
    # Flagfiles for the user's own data take its path from the command,
    # which their first line shows.
    given = USER_DATA_FLAGFILES.get(name, [])
    assert all(arg.split("=")[0] + "=" in lines[0] for arg in given)
    with flagsaver.flagsaver():
        _parse([f"--flagfile={path}", *given])
        assert FLAGS.workdir == f"runs/{name}"
        assert FLAGS.method == "mwnet"


def test_own_data_flagfile_is_pseudo_clean_and_fast():
    with flagsaver.flagsaver():
        _parse(["--flagfile=flags/own_data.cfg", "--data_path=my_images"])
        assert (FLAGS.dataset, FLAGS.noise, FLAGS.meta_source) == (
            "folder", "none", "pseudo_clean")
        # Correction is an option there: measured, it drove V to 1
        # (BENCHMARKS.md, "Your own noisy data").
        assert not FLAGS.label_correction and FLAGS.meta_warmup_steps > 0
        assert (FLAGS.meta_interval, FLAGS.meta_lr,
                FLAGS.real_step_weights) == (8, 0.003, "lookahead")
        # A quarter of each class scored per epoch (BENCHMARKS.md: as clean
        # a choice, a quarter of the cost).
        assert FLAGS.pseudo_clean_pool == 0.25


@pytest.mark.slow
def test_pseudo_clean_corrected_run_chooses_corrects_and_suggests(
        image_tree, tmp_path):
    workdir = tmp_path / "run"
    results = _run(_tiny_args(
        workdir, image_tree, tmp_path / "cache", "--noise=uniform",
        "--noise_rate=0.4", "--meta_source=pseudo_clean",
        "--pseudo_clean_per_class=2", "--label_correction",
        "--meta_warmup_steps=5", "--meta_interval=2",
        "--real_step_weights=lookahead", "--epochs=3",
        "--pseudo_clean_pool=0.5", "--relabel_confidence=0.5"))
    data = results["data"]
    assert data["meta_source"] == "pseudo_clean"
    assert ("lowest loss under the averaged model, chosen from a fresh 50% "
            "of the training split") in data["meta_origin"]
    assert "does not select a model" in results["best_meta_note"]
    assert np.isfinite(results["final_test_loss"])
    history = callbacks_lib.read_history(workdir / "history.csv")
    # Chosen from epoch 1 on (5 steps of warm-up, 5 steps an epoch): the
    # share of the chosen labels that are right is logged from then on,
    # as are the meta metrics (the first meta step is step 5); epoch 0
    # measured neither, and its cells are empty, not NaN.
    for name in ("meta_label_precision", "meta_loss", "meta_accuracy",
                 "averaged_model_accuracy"):
        assert name not in history[0]
    assert 0.0 <= history[1]["meta_label_precision"] <= 1.0
    assert 0.0 <= history[1]["averaged_model_accuracy"] <= 1.0
    assert np.isfinite(history[1]["meta_loss"])
    with open(workdir / "history.csv") as file:
        rows = list(csv.reader(file))
    assert {"meta_label_precision", "meta_loss"} <= set(rows[0])
    assert len({len(row) for row in rows}) == 1
    assert "nan" not in {cell.lower() for row in rows for cell in row}
    assert (workdir / "averaged_classifier.keras").exists()
    audit = results["label_audit"]
    assert audit["suggested_by"] == "averaged classifier"
    suggestions = audit["detection"]["suggestions"]
    assert suggestions["flagged"] == audit["detection"]["flagged"]
    with open(workdir / "relabel.csv") as file:
        rows = list(csv.DictReader(file))
    # The changes suggested at least 0.5 probable; the unsure rest of the
    # suspects only in audit.csv.
    assert len(rows) == audit["relabel"] <= audit["suspects"]
    assert audit["relabel_confidence"] == 0.5
    assert all(row["given_label"] != row["suggested_label"]
               and float(row["confidence"]) >= 0.5 for row in rows)
    with open(workdir / "audit.csv") as file:
        verdicts = [row["verdict"] for row in csv.DictReader(file)]
    assert verdicts.count("relabel") == audit["relabel"]
    assert verdicts.count("suspect") == audit["suspects"] - audit["relabel"]
    # What the correction did: the weight on the averaged model is 1 - V's
    # weight, at the end over the audited examples, and over training in
    # the epochs after the 5-step warm-up (epochs 1 and 2).
    correction = audit["label_correction"]
    with open(workdir / "audit.csv") as file:
        weights = [float(row["weight"]) for row in csv.DictReader(file)]
    assert correction["model_weight_final"] == pytest.approx(
        1 - np.mean(weights), abs=1e-3)
    assert correction["model_weight_by_epoch"] == pytest.approx(
        [1 - history[1]["mean_weight"], 1 - history[2]["mean_weight"]])
    assert correction["suggested_by"] == "averaged classifier"
    assert 0 <= correction["model_accuracy"] <= 1
    assert correction["given_label_accuracy"] == pytest.approx(
        1 - audit["detection"]["realised_noise_rate"])
    with flagsaver.flagsaver():
        _parse(["--workdir=unused"])
        config = main_lib.RunConfig.from_dict(json.load(
            open(workdir / "config.json")))
    assert config.label_correction and config.meta_source == "pseudo_clean"


def test_pseudo_clean_warmup_shorter_than_an_epoch_is_refused(image_tree,
                                                              tmp_path):
    with pytest.raises(main_lib.ExperimentError,
                       match="less than one epoch"):
        _run(_tiny_args(tmp_path / "run", image_tree, tmp_path / "cache",
                        "--noise=none", "--meta_warmup_steps=2"))
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["mwnet", "ce", "l2rw"])
def test_end_to_end_run_writes_results(method, image_tree, tmp_path):
    workdir = tmp_path / "run"
    # CE evaluates the test set after the last epoch only.
    test_every = 5 if method == "ce" else 1
    results = _run(_tiny_args(workdir, image_tree, tmp_path / "cache",
                              f"--method={method}",
                              f"--test_every={test_every}"))
    with open(workdir / "results.json") as file:
        saved = json.load(file)
    assert saved == json.loads(json.dumps(results))
    # The final evaluation sees the weights the last epoch's validation saw.
    history = callbacks_lib.read_history(workdir / "history.csv")
    assert saved["final_test_accuracy"] == pytest.approx(
        history[-1]["val_accuracy"])
    # An untested epoch has no test metrics (an empty cell), not NaN.
    assert ("val_accuracy" in history[0]) == (test_every == 1)
    assert saved["best_test_accuracy"] == pytest.approx(max(
        row["val_accuracy"] for row in history if "val_accuracy" in row))
    # Every row has the same columns, the test metrics' from the first row
    # on, and the meta set is evaluated in both.
    with open(workdir / "history.csv") as file:
        rows = list(csv.reader(file))
    assert {"val_accuracy", "val_loss"} <= set(rows[0])
    assert len({len(row) for row in rows}) == 1
    assert history[0].keys() | {"val_accuracy", "val_loss"} == (
        history[1].keys())
    assert all(np.isfinite(row["meta_eval_accuracy"]) for row in history)
    assert saved["epochs_completed"] == 2
    assert saved["data"]["num_classes"] == 4
    assert saved["data"]["meta_counts"] == [2, 2, 2, 2]
    assert glob.glob(str(workdir / "tensorboard" / "train" / "events.*"))
    assert glob.glob(str(workdir / "tensorboard" / "validation" / "events.*"))
    classifier = keras.saving.load_model(workdir / "classifier.keras")
    assert classifier.output_shape == (None, 4)
    has_plot = (workdir / "weighting_function.png").exists()
    assert has_plot == (method == "mwnet")
    # V is kept only where it was learned: a ce or l2rw run's is random.
    saved_v = workdir / "weighting_net.keras"
    assert saved_v.exists() == (method == "mwnet")
    if method == "mwnet":  # A meta step per step; full batches of 8 only.
        assert mwnet_tf.load_weighting_net(saved_v).meta_steps == (
            2 * (saved["data"]["num_train"] // 8))
    # The label audit runs by default when there is a V to audit with.
    audited = (workdir / "audit.csv").exists()
    assert audited == ("label_audit" in saved) == (method == "mwnet")
    if method == "mwnet":
        assert glob.glob(str(workdir / "tensorboard" / "weighting" / "events.*"))


@pytest.mark.slow
def test_class_aware_run_learns_saves_audits_and_transfers(image_tree,
                                                           tmp_path):
    workdir = tmp_path / "cmwnet"
    results = _run(_tiny_args(workdir, image_tree, tmp_path / "cache",
                              "--vnet=class_aware", "--vnet_families=2",
                              "--epochs=1"))
    counts = results["data"]["train_counts_noisy"]
    net = mwnet_tf.load_weighting_net(workdir / "weighting_net.keras")
    assert net.class_families == task_families(counts, 2)
    assert net.num_families == 2
    shape = results["label_audit"]["weighting_function"]
    assert sorted(f["family"] for f in shape["families"]) == sorted(
        set(net.class_families))
    assert sum(f["examples"] for f in shape["families"]) == results[
        "label_audit"]["examples"]
    # Transferred with its families to a new classifier, frozen.
    fixed = _run(_tiny_args(
        tmp_path / "fixed", image_tree, tmp_path / "cache", "--method=fixed",
        f"--weighting_net={workdir / 'weighting_net.keras'}", "--epochs=1"))
    assert fixed["epochs_completed"] == 1
    # A plain V cannot be made class-aware by a flag.
    plain = _run(_tiny_args(tmp_path / "plain", image_tree,
                            tmp_path / "cache", "--epochs=1", "--audit=false"))
    assert plain["epochs_completed"] == 1
    with pytest.raises(main_lib.ExperimentError, match="is a plain"):
        _run(_tiny_args(tmp_path / "bad", image_tree, tmp_path / "cache",
                        "--vnet=class_aware", "--weighting_net="
                        f"{tmp_path / 'plain' / 'weighting_net.keras'}"))


@pytest.fixture(scope="module")
def long_epoch_tree(tmp_path_factory):
    """Enough images that an epoch lasts seconds, to be killed in."""
    return _image_tree(tmp_path_factory.mktemp("long_epoch_tree"), 50, 40,
                       seed=1)


def _final_weights(workdir):
    # ce runs save no V (it is never trained).
    return [w for name in ("classifier.keras", "weighting_net.keras")
            if (workdir / name).exists()
            for w in keras.saving.load_model(workdir / name).get_weights()]


def _started_until(command, env, line_start):
    """A running `command` whose output has reached a line starting so."""
    process = subprocess.Popen(command, cwd=REPO, env=env, text=True,
                               stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    for line in process.stdout:
        if line.startswith(line_start):
            break
    return process


# mwnet_sl: a pseudo-clean meta set chosen at epoch 1's start (24 steps an
# epoch) from half of each class, and label correction: the averaged
# classifier, the scored half and the choice come back from the backup too;
# the average debiased by the step count, which the backup holds.
PSEUDO_CLEAN_SL = ("--meta_source=pseudo_clean", "--label_correction",
                   "--meta_warmup_steps=24", "--pseudo_clean_per_class=2",
                   "--pseudo_clean_pool=0.5", "--ema_debias")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["mwnet", "ce", "mwnet_sl"])
def test_killed_process_resumes_to_the_uninterrupted_weights(
        method, long_epoch_tree, tmp_path):
    """SIGKILL a real run mid-epoch, rerun the command in a new process.

    With --deterministic two uninterrupted runs in two processes end
    bit-identical (without it, MW-Net's graph is not reproducible run to
    run; see main.run), so the resumed run must end bit-identical to an
    uninterrupted one: weights, optimiser slots, V, the learning-rate
    schedule and the epoch's batches all come back. The work directory's
    lock died with the killed process, or the rerun would refuse.
    """
    # CE tests only after its last epoch: the killed run's history has an
    # untested epoch, the resumed run's a tested one.
    test_every = 2 if method == "ce" else 1

    # ResNet-20, not the tiny runs' ResNet-8: an epoch must last long enough
    # on a fast CPU to be killed in.
    options = (["--method=mwnet", *PSEUDO_CLEAN_SL] if method == "mwnet_sl"
               else [f"--method={method}"])

    def command(workdir):
        return [sys.executable, "-m", "mwnet_tf.main", *_tiny_args(
            workdir, long_epoch_tree, tmp_path / "cache", *options,
            "--deterministic", "--verbose=2", f"--test_every={test_every}",
            "--model=resnet20")]

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    subprocess.run(command(tmp_path / "straight"), cwd=REPO, env=env,
                   check=True, capture_output=True, timeout=600)

    killed = tmp_path / "killed"
    process = _started_until(command(killed), env, "Epoch 2/2")
    try:
        time.sleep(0.5)  # Some steps into the epoch.
    finally:
        process.kill()
        process.wait()
    assert len(callbacks_lib.read_history(killed / "history.csv")) == 1, (
        "the kill came after the second epoch had finished")
    assert not (killed / "results.json").exists()
    resumed = subprocess.run(command(killed), cwd=REPO, env=env, text=True,
                             capture_output=True, timeout=600, check=True)
    assert "Resuming" in resumed.stdout + resumed.stderr

    for a, b in zip(_final_weights(tmp_path / "straight"),
                    _final_weights(killed)):
        np.testing.assert_array_equal(a, b)
    if method == "mwnet_sl":
        straight = keras.saving.load_model(
            tmp_path / "straight" / "averaged_classifier.keras")
        for a, b in zip(straight.get_weights(), keras.saving.load_model(
                killed / "averaged_classifier.keras").get_weights()):
            np.testing.assert_array_equal(a, b)
        for name in ("meta_label_precision", "averaged_model_accuracy"):
            assert (callbacks_lib.read_history(killed / "history.csv")[1]
                    [name] == callbacks_lib.read_history(
                        tmp_path / "straight" / "history.csv")[1][name])
    history = callbacks_lib.read_history(killed / "history.csv")
    assert len(history) == 2
    # One set of columns before and after the resume.
    with open(killed / "history.csv") as file:
        assert len({len(row) for row in csv.reader(file)}) == 1
    with open(killed / "results.json") as file:
        assert history[-1]["val_accuracy"] == pytest.approx(
            json.load(file)["final_test_accuracy"])


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_last_good_checkpoint(image_tree, tmp_path):
    workdir = tmp_path / "run"
    # Epoch 1 trains normally; the learning rate then explodes.
    with pytest.raises(main_lib.ExperimentError, match="became NaN"):
        _run(_tiny_args(workdir, image_tree, tmp_path / "cache",
                        "--lr_decay=1e30"))
    # The backup resumes at epoch index 1: it holds the first, finite epoch,
    # not the NaN one.
    with open(workdir / "backup" / "training_metadata.json") as file:
        assert json.load(file)["epoch"] == 1
    assert not (workdir / "results.json").exists()


def test_workdir_of_another_run_is_refused_unless_overwrite(tmp_path):
    workdir = str(tmp_path / "run")
    assert main_lib.check_workdir(workdir, RunConfig(lr=0.1), False) is False
    main_lib.claim_workdir(workdir, RunConfig(lr=0.1), resuming=False)
    with open(os.path.join(workdir, "notes.txt"), "w") as file:
        file.write("mine")
    with open(os.path.join(workdir, "results.json"), "w") as file:
        file.write("{}")
    # Watching flags may change on resume; computing flags may not.
    assert main_lib.check_workdir(workdir, RunConfig(lr=0.1, verbose="2"),
                                  False) is True
    with pytest.raises(main_lib.ExperimentError, match="--lr.*--overwrite"):
        main_lib.check_workdir(workdir, RunConfig(lr=0.2), False)
    assert main_lib.check_workdir(workdir, RunConfig(lr=0.2), True) is False
    # Checking wrote nothing; claiming replaces only the runner's outputs.
    assert os.path.exists(os.path.join(workdir, "results.json"))
    main_lib.claim_workdir(workdir, RunConfig(lr=0.2), resuming=False)
    with open(os.path.join(workdir, "config.json")) as file:
        assert json.load(file) == RunConfig(lr=0.2).to_dict()
    assert not os.path.exists(os.path.join(workdir, "results.json"))
    assert os.path.exists(os.path.join(workdir, "notes.txt"))
    other = tmp_path / "other"
    other.mkdir()
    (other / "data.bin").write_text("x")
    with pytest.raises(main_lib.ExperimentError, match="not a run"):
        main_lib.check_workdir(str(other), RunConfig(lr=0.1), False)
    # A file where the directory should be: one clear error, the file kept.
    with pytest.raises(main_lib.ExperimentError, match="is a file"):
        main_lib.check_workdir(str(other / "data.bin"), RunConfig(lr=0.1), False)
    assert (other / "data.bin").read_text() == "x"


def test_a_killed_writes_half_files_are_removed_when_the_run_is_claimed(
        tmp_path):
    # A process killed inside files.replace_atomically leaves its staging
    # file; the next run in that directory (new or resumed) removes it, and
    # only it.
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / ".config.json.partial-0bad").write_text('{"lr": ')
    # A directory holding nothing but that is empty, not someone else's.
    assert main_lib.check_workdir(str(workdir), RunConfig(lr=0.1),
                                  False) is False
    main_lib.claim_workdir(str(workdir), RunConfig(lr=0.1), resuming=False)
    (workdir / ".results.json.partial-1bad").write_text("{")
    (workdir / ".notes.txt.partial-2bad").write_text("mine")
    assert main_lib.check_workdir(str(workdir), RunConfig(lr=0.1),
                                  False) is True
    main_lib.claim_workdir(str(workdir), RunConfig(lr=0.1), resuming=True)
    assert sorted(os.listdir(workdir)) == [".notes.txt.partial-2bad",
                                           "config.json"]


@pytest.mark.parametrize("args, message", [
    (["--noise_rate=1.5"], "noise_rate"),
    (["--model=resnet33"], "--model must be one of"),
    (["--method=mentornet"], "method"),
    (["--noise=gaussian"], "noise"),
    (["--dataset=mnist"], "dataset"),
    (["--dataset=folder"], "dataset='folder' needs --data_path"),
    (["--pretrained_weights=w.h5"], "resnet50 only"),
    (["--vnet_hidden=0"], "vnet_hidden"),
    (["--meta_scope=0"], "meta_scope"),
    (["--test_every=0"], "test_every"),
    (["--meta_scope=logits,,stage3"], "meta_scope"),
    (["--distribute=parameter_server"], "distribute"),
    (["--distribute=multi_worker", "--meta_interval=2",
      "--steps_per_execution=4"], "steps_per_execution=1"),
    (["--real_step_weights=lookahead", "--meta_scope=head"],
     "needs the lookahead to move every variable"),
    (["--real_step_weights=lookahead", "--meta_scope=logits,,stage3"],
     "meta_scope"),
    (["--label_correction", "--method=ce"], "needs method='mwnet'"),
    (["--ema_decay=1.0", "--label_correction"], "ema_decay"),
    (["--meta_source=trusted"], "has no trusted split"),
    (["--meta_source=clean_draw", "--dataset=folder", "--data_path=x",
      "--noise=none"], "may be wrong"),
    (["--meta_source=pseudo_clean", "--meta_warmup_steps=0"],
     "meta_warmup_steps must be at least one epoch"),
    (["--noise=instance", "--noise_rate=0.4"], None),
])
def test_invalid_flags_are_rejected_at_parse_time(args, message):
    with flagsaver.flagsaver():
        if message is None:  # A valid combination, for contrast.
            _parse(["--workdir=unused"] + args)
            return
        with pytest.raises(flags.Error, match=message):
            _parse(["--workdir=unused"] + args)


@pytest.mark.parametrize("args, message", [
    (["--dataset=folder", "--data_path=/no/such/tree"], "does not exist"),
    (["--model=resnet50", "--pretrained_weights=/no/such.weights.h5"],
     "is not a file"),
    (["--dataset=cifar100", "--download=false"], "data_dir"),
    (["--distribute=multi_worker"], "needs the cluster in the TF_CONFIG"),
])
def test_bad_input_fails_before_training(args, message, tmp_path,
                                         monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(main_lib.ExperimentError, match=message):
        _run(["--flagfile=flags/base.cfg", f"--workdir={tmp_path / 'run'}",
              f"--data_dir={tmp_path / 'tfds'}", *args])
    # Nothing was written: fixing the flag and rerunning is not refused.
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("tf_config, message", [
    ("{not json", "not valid JSON"),
    ('{"cluster": {"worker": ["localhost:1"]}}', 'needs a "cluster" and a'),
    ('{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", '
     '"index": 1}}', "is not in its cluster"),
])
def test_bad_tf_config_fails_before_training(tf_config, message, tmp_path,
                                             monkeypatch):
    monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(main_lib.ExperimentError, match=message):
        _run(["--flagfile=flags/base.cfg", f"--workdir={tmp_path / 'run'}",
              "--distribute=multi_worker"])
    assert not (tmp_path / "run").exists()


def test_run_from_before_a_new_flag_resumes(tmp_path):
    """A config.json without a setting added since (the run used its
    default), with list flags saved as strings as older runs saved them."""
    workdir = tmp_path / "run"
    with flagsaver.flagsaver():
        _parse([f"--workdir={workdir}"])
        config = main_lib.resolved_config()
    older = config.to_dict()
    del older["synchronized_batch_norm"]
    older["vnet_hidden"] = [str(v) for v in older["vnet_hidden"]]
    older["lr_decay_epochs"] = [str(v) for v in older["lr_decay_epochs"]]
    os.makedirs(workdir)
    with open(workdir / "config.json", "w") as file:
        json.dump(older, file)
    assert main_lib.check_workdir(str(workdir), config, False) is True
    with pytest.raises(main_lib.ExperimentError,
                       match="--synchronized_batch_norm"):
        main_lib.check_workdir(str(workdir),
                               config.replace(synchronized_batch_norm=True),
                               False)
    # Run-control settings may differ.
    assert main_lib.check_workdir(str(workdir), config.replace(
        verbose="2", audit=False), False) is True


def test_real_step_weights_flag_reaches_the_model():
    with flagsaver.flagsaver():
        _parse(["--workdir=unused", "--model=resnet8",
                "--real_step_weights=lookahead"])
        model = experiment.build_model(main_lib.resolved_config(), 4,
                                       (8, 8, 3))
    assert model.real_step_weights == "lookahead"
    # The scope as the model reads it: spaces around "all" are no scope.
    with flagsaver.flagsaver():
        _parse(["--workdir=unused", "--real_step_weights=lookahead",
                "--meta_scope= all"])


@pytest.mark.parametrize("flag, layers", [
    ("head", ["logits"]), ("2", ["stage3_block3_bn2", "logits"]),
    ("stage3_block3_conv2,logits", ["stage3_block3_conv2", "logits"])])
def test_meta_scope_flag_reaches_the_model(flag, layers):
    with flagsaver.flagsaver():
        _parse(["--workdir=unused", "--model=resnet20",
                f"--meta_scope={flag}"])
        model = experiment.build_model(main_lib.resolved_config(), 4,
                                       (8, 8, 3))
    expected = [v.path for v in model.classifier.trainable_variables
                if v.path.split("/")[0] in layers]
    assert [v.path for v in model.lookahead_variables] == expected


def test_meta_scope_naming_no_layer_fails_before_training(image_tree,
                                                          tmp_path):
    workdir = tmp_path / "run"
    with pytest.raises(main_lib.ExperimentError, match="'conv9', not layers"):
        _run(_tiny_args(workdir, image_tree, tmp_path / "cache",
                        "--meta_scope=logits,conv9"))
    assert not workdir.exists()


@pytest.mark.slow
def test_command_line_errors_are_one_line_without_traceback(tmp_path):
    (tmp_path / "taken").write_text("notes")
    for args in (["--noise_rate=2"],
                 ["--dataset=folder", "--data_path=/no/such/tree"],
                 [f"--workdir={tmp_path / 'taken'}"]):
        process = subprocess.run(
            [sys.executable, "-m", "mwnet_tf.main",
             f"--workdir={tmp_path / 'run'}", *args],
            cwd=REPO, capture_output=True, text=True, timeout=120,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        assert process.returncode != 0
        assert "Traceback" not in process.stderr
        # TensorFlow's own start-up lines (glog format, "I0000 ...") aside.
        errors = [line for line in process.stderr.splitlines()
                  if "rror" in line and not line.startswith("I0000")]
        assert len(errors) == 1, process.stderr


@pytest.mark.slow
def test_a_second_run_on_a_busy_workdir_refuses_and_changes_nothing(
        long_epoch_tree, tmp_path):
    """Two real processes, one work directory: the second stops at once in
    one line; the first finishes with its history and results intact."""
    workdir = tmp_path / "run"
    # ResNet-20, not the tiny runs' ResNet-8: the first run must still be
    # training when the second has started up.
    command = [sys.executable, "-m", "mwnet_tf.main", *_tiny_args(
        workdir, long_epoch_tree, tmp_path / "cache", "--method=ce",
        "--verbose=2", "--model=resnet20")]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    first = _started_until(command, env, "Epoch 1/2")
    try:
        second = subprocess.run(command, cwd=REPO, env=env, text=True,
                                capture_output=True, timeout=120)
        assert first.poll() is None, "the first run ended too early to test"
        rest = first.communicate(timeout=600)[0]
    finally:
        first.kill()
        first.wait()
    assert first.returncode == 0, rest
    assert second.returncode != 0
    message = second.stderr.strip().splitlines()[-1]
    assert message.startswith("mwnet_tf.main: error: --workdir=")
    assert f"is in use by process {first.pid} on" in message
    assert "Traceback" not in second.stderr
    with open(workdir / "history.csv") as file:
        rows = file.read().splitlines()
    assert len(rows) == 3 and rows[0].startswith("epoch")  # Header + 2.
    with open(workdir / "results.json") as file:
        assert json.load(file)["epochs_completed"] == 2
    # The lock went with the first process: the command now resumes.
    assert not run_lock_held(workdir)


def test_a_refused_run_leaves_the_users_directory_as_it_was(tmp_path):
    """Refused after the lock is taken: the lock file goes again."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(main_lib.ExperimentError, match="holds no config.json"):
        _run(["--flagfile=flags/base.cfg", f"--workdir={mine}"])
    assert os.listdir(mine) == ["notes.txt"]


def test_bfloat16_on_a_cpu_without_it_is_refused_before_any_work(
        tmp_path, monkeypatch):
    from mwnet_tf import precision
    avx2_only = tmp_path / "cpuinfo"
    avx2_only.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n"
                         "processor\t: 1\nflags\t\t: fpu sse2 avx avx2 fma\n")
    bf16 = tmp_path / "cpuinfo_bf16"
    bf16.write_text("processor\t: 0\nflags\t\t: avx2 avx512f avx512_bf16\n")
    arm = tmp_path / "cpuinfo_arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd sve bf16\n")
    # As on a machine without GPU or TPU, whatever this one has.
    monkeypatch.setattr(precision.tf.config, "list_physical_devices",
                        lambda kind: [])
    assert precision.bfloat16_is_native(str(avx2_only)) is False
    assert precision.bfloat16_is_native(str(bf16)) is True
    assert precision.bfloat16_is_native(str(arm)) is True
    assert precision.cpu_flags(str(tmp_path / "missing")) is None
    with pytest.raises(ValueError, match="drop --mixed_bfloat16"):
        precision.check_bfloat16(str(avx2_only))
    precision.check_bfloat16(str(bf16))

    monkeypatch.setattr(precision, "bfloat16_is_native", lambda *_: False)
    workdir = tmp_path / "run"
    with pytest.raises(main_lib.ExperimentError,
                       match="no bfloat16 instructions"):
        _run(["--flagfile=flags/base.cfg", f"--workdir={workdir}",
              "--mixed_bfloat16"])
    assert not workdir.exists()


def test_an_untrained_weighting_net_is_refused(tmp_path):
    untrained = tmp_path / "new_v.keras"
    mwnet_tf.WeightingNet(hidden_sizes=(4,)).save(untrained)
    with pytest.raises(main_lib.ExperimentError,
                       match="never trained \\(0 meta steps\\)"):
        _run(["--flagfile=flags/base.cfg", f"--workdir={tmp_path / 'run'}",
              "--method=fixed", f"--weighting_net={untrained}"])
    assert not (tmp_path / "run").exists()
    # Files saved before V counted its meta steps: the method that saved
    # them tells. The runner reads it from the config.json of the run
    # that holds the file; the library is given it and reads no other file.
    for method, refused in (("ce", True), ("l2rw", True), ("mwnet", False)):
        run = tmp_path / method
        run.mkdir()
        (run / "config.json").write_text(json.dumps({"method": method}))
        old = run / "weighting_net.keras"
        mwnet_tf.WeightingNet(hidden_sizes=(4,), meta_steps=None).save(old)
        assert mwnet_tf.load_weighting_net(old).meta_steps is None
        if refused:
            with pytest.raises(ValueError, match=f"--method={method} run"):
                mwnet_tf.load_weighting_net(old, saved_by_method=method)
            with pytest.raises(ValueError, match=f"--method={method} run"):
                experiment.load_run_weighting_net(old)
            with pytest.raises(main_lib.ExperimentError,
                               match=f"--weighting_net: .*--method={method} "
                               "run, which does not train V"):
                _run(["--flagfile=flags/base.cfg",
                      f"--workdir={tmp_path / 'run'}", "--method=fixed",
                      f"--weighting_net={old}"])
            assert not (tmp_path / "run").exists()
            assert mwnet_tf.load_weighting_net(
                old, allow_untrained=True,
                saved_by_method=method).meta_steps is None
        else:
            assert mwnet_tf.load_weighting_net(
                old, saved_by_method=method).meta_steps is None
            assert experiment.load_run_weighting_net(old).meta_steps is None
    assert mwnet_tf.load_weighting_net(
        untrained, allow_untrained=True).meta_steps == 0


@pytest.mark.parametrize("args, message", [
    (["--method=fixed"], "method=\"fixed\" trains with the weights of a "
     "learned V: give it as weighting_net"),
    (["--method=ce", "--weighting_net=w.keras"],
     "--weighting_net is for --method=fixed or --method=mwnet"),
])
def test_weighting_net_flag_combinations_are_checked(args, message):
    with flagsaver.flagsaver():
        with pytest.raises(flags.Error, match=message):
            _parse(["--workdir=unused"] + args)


def test_bad_weighting_net_file_fails_before_training(tmp_path):
    not_a_net = tmp_path / "classifier.keras"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]).save(
        not_a_net)
    for path, message in ((tmp_path / "missing.keras", "is not a file"),
                          (not_a_net, "not one weight in \\[0, 1\\] per loss"
                           "|is not a saved weighting net")):
        with pytest.raises(main_lib.ExperimentError, match=message):
            _run(["--flagfile=flags/base.cfg", f"--workdir={tmp_path / 'run'}",
                  "--method=fixed", f"--weighting_net={path}"])
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_failing_audit_keeps_the_results_and_says_why(
        image_tree, tmp_path, monkeypatch, caplog):
    from mwnet_tf import label_audit

    def broken_audit(*args, **kwargs):
        raise ImportError("No module named 'keras_cv'")

    monkeypatch.setattr(label_audit, "run_audit", broken_audit)
    workdir = tmp_path / "run"
    results = _run(_tiny_args(workdir, image_tree, tmp_path / "cache",
                              "--method=mwnet"))
    with open(workdir / "results.json") as file:
        saved = json.load(file)
    assert saved["label_audit"] == {
        "error": "ImportError: No module named 'keras_cv'"}
    assert saved["final_test_accuracy"] == results["final_test_accuracy"]
    for name in ("classifier.keras", "weighting_net.keras",
                 "weighting_function.png"):
        assert (workdir / name).exists()
    failures = [r.getMessage() for r in caplog.records
                if "label audit failed" in r.getMessage()]
    assert len(failures) == 1 and "\n" not in failures[0]


def test_test_epochs_are_every_nth_and_the_last():
    assert main_lib.test_epochs(3, 1) == [1, 2, 3]
    assert main_lib.test_epochs(5, 2) == [2, 4, 5]
    assert main_lib.test_epochs(6, 3) == [3, 6]
    assert main_lib.test_epochs(2, 5) == [2]


SHARED_ARCHIVE = os.path.join(os.path.dirname(REPO), "shared", "data",
                              "cifar10-jpeg.tar.gz")


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isfile(SHARED_ARCHIVE),
                    reason="needs the shared CIFAR-10 archive at "
                    "../shared/data/cifar10-jpeg.tar.gz beside the checkout")
def test_labels_round_trip_on_the_shared_archive(tmp_path):
    # Folder -> CSV: part of the archive's class folders as a label table.
    import tarfile
    with tarfile.open(SHARED_ARCHIVE) as tar:
        names = [n for n in tar.getnames() if n.endswith(".jpg")]
    rows = []
    for name in sorted(names):
        split, label, file = name.split("/")[-3:]
        if int(file[:-4]) < {"train": 12, "test": 3}[split]:
            rows.append((name, label, split))
    labels = tmp_path / "labels.csv"
    with open(labels, "w", newline="") as file:
        csv.writer(file).writerows([("path", "label", "split"), *rows])
    cache = tmp_path / "cache"
    # -> training (synthetic noise on the file's labels) -> audit -> CSV.
    first = tmp_path / "first"
    _run(_tiny_args(first, SHARED_ARCHIVE, cache, f"--labels_file={labels}",
                    "--noise=uniform", "--noise_rate=0.4", "--epochs=1"))
    with open(first / "labels.csv", newline="") as file:
        out = list(csv.DictReader(file))
    assert [(r["path"], r["split"]) for r in out] == [
        (os.path.normpath(p), s) for p, _, s in rows]
    with open(first / "audit.csv", newline="") as file:
        audited = {r["file"]: r for r in csv.DictReader(file)}
    assert len(audited) == 100  # 120 training rows less 2 meta per class.
    for row in out:
        if row["path"] in audited:  # The labels it trained on, noisy.
            assert row["label"] == audited[row["path"]]["given_class"]
            assert row["suggested_label"] == (
                audited[row["path"]]["suggested_class"])
            assert row["verdict"] == audited[row["path"]]["verdict"]
        else:
            assert row["verdict"] == "not_audited"
    results = json.loads((first / "results.json").read_text())
    assert results["label_audit"]["labels_out"] == "labels.csv"
    assert results["data"]["realised_noise_rate"] > 0.2
    # Its own output is refused as the input of a run in the same folder.
    with pytest.raises(main_lib.ExperimentError, match="is an output of"):
        _run(_tiny_args(first, SHARED_ARCHIVE, cache,
                        f"--labels_file={first / 'labels.csv'}",
                        "--noise=none", "--overwrite"))
    # -> training again on the suggested labels.
    shutil_copy = tmp_path / "reviewed.csv"
    shutil_copy.write_bytes((first / "labels.csv").read_bytes())
    second = tmp_path / "second"
    _run(_tiny_args(second, SHARED_ARCHIVE, cache,
                    f"--labels_file={shutil_copy}",
                    "--labels_key=suggested_label", "--noise=none",
                    "--meta_source=given_draw", "--epochs=1"))
    with open(second / "audit.csv", newline="") as file:
        given = {r["file"]: r["given_class"] for r in csv.DictReader(file)}
    suggested = {r["path"]: r["suggested_label"] for r in out}
    assert given and all(given[f] == suggested[f] for f in given)
