"""Tiny runs of the training command, for the tests of the commands
(tests/runner/) and of multi-worker training: a 4-class image folder, the
flags of a two-epoch ResNet-8 run on it, parsing them and running."""

import os

import numpy as np
from absl import flags
from absl.testing import flagsaver
from PIL import Image

from mwnet_tf.runner import main as main_lib

FLAGS = flags.FLAGS
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ("ant", "bee", "cat", "dog")


def image_tree(root, train_per_class, spread, seed):
    """A 4-class 8x8 image folder; each class a colour with noise `spread`."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", train_per_class), ("test", 4)):
        for label, name in enumerate(CLASSES):
            os.makedirs(root / split / name)
            for i in range(count):
                pixels = rng.normal(60 * label + 40, spread, (8, 8, 3))
                Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
                    root / split / name / f"{i}.png")
    return str(root)


def parse(args):
    """The training command's flags, parsed from `args` (run from REPO:
    flagfiles name flags/base.cfg relative to it)."""
    FLAGS.unparse_flags()
    FLAGS(["mwnet_tf.main"] + list(args))


def tiny_args(workdir, tree, cache, *extra):
    """A two-epoch ResNet-8 run on the image folder `tree`."""
    return ["--flagfile=flags/base.cfg", f"--workdir={workdir}",
            "--dataset=folder", f"--data_path={tree}", f"--cache_dir={cache}",
            "--model=resnet8", "--batch_size=8", "--meta_batch_size=4",
            "--meta_per_class=2", "--vnet_hidden=8", "--epochs=2",
            "--lr_decay_epochs=1", "--verbose=0", *extra]


def run(args):
    """The training command on `args`, in this process; its results."""
    with flagsaver.flagsaver():
        parse(args)
        return main_lib.run()


def run_lock_held(workdir):
    """Whether a run holds `workdir`'s lock."""
    from mwnet_tf.runner import run_lock
    try:
        with run_lock.exclusive_workdir(str(workdir)):
            return False
    except run_lock.WorkdirInUse:
        return True
