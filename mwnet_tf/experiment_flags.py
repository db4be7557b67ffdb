"""The command-line flags of `python -m mwnet_tf.main`, defined in one place.

`define_flags()` is called by `main.py` only; library modules never read
flags. Validators check values and combinations, never the filesystem (paths
are checked by `main.py` before any expensive work).
"""

from absl import flags

import zoo
from mwnet_tf.data import DATASETS, NOISE_TYPES
from mwnet_tf.distribute import STRATEGIES
from mwnet_tf.layer_scope import parse_meta_scope
from mwnet_tf.trainer import LOOKAHEADS, METHODS, WEIGHT_NORMALIZATIONS
from mwnet_tf.trainer import step_kinds_differ

# How `python -m mwnet_tf.main --help` lists the flags below, in this order.
# Every flag is in exactly one group (tests/test_cli.py): add a new flag here.
FLAG_GROUPS = (
    ("Experiment and data", (
        "dataset", "data_path", "data_dir", "cache_dir", "download",
        "train_subset", "meta_per_class", "batch_size", "meta_batch_size",
        "seed")),
    ("Noise and imbalance", ("noise", "noise_rate", "imbalance_factor")),
    ("Model", ("model", "dropout_rate", "pretrained_weights")),
    ("Method and meta-learning", (
        "method", "lookahead", "weight_normalization", "meta_interval",
        "meta_warmup_steps", "meta_scope", "vnet", "vnet_families",
        "vnet_hidden", "weighting_net")),
    ("Optimisation", (
        "epochs", "lr", "lr_decay_epochs", "lr_decay", "momentum", "nesterov",
        "weight_decay", "meta_lr", "meta_weight_decay")),
    ("Run control and output", ("workdir", "overwrite", "verbose", "audit")),
    ("Distribution and precision", (
        "distribute", "synchronized_batch_norm", "mixed_bfloat16",
        "deterministic", "steps_per_execution")),
)


def define_flags():
    """Defines the experiment flags on absl's global FLAGS (idempotent)."""
    if "method" in flags.FLAGS:
        return
    # ## Run
    flags.DEFINE_string("workdir", None, "Work directory: TensorBoard logs, "
                        "checkpoints, results.json, saved models.")
    flags.DEFINE_bool("overwrite", False, "Start afresh in a work directory that "
                      "holds a run made with other flags (its files are "
                      "replaced).")
    flags.DEFINE_integer("seed", 1, "Seed of the meta set, noise, shuffling, "
                         "augmentation and initialisation.", lower_bound=0)
    flags.DEFINE_enum("distribute", "none", list(STRATEGIES),
                      "`mirrored`: tf.distribute.MirroredStrategy over all "
                      "local GPUs (or CPUs); `multi_worker`: "
                      "MultiWorkerMirroredStrategy over the cluster in "
                      "TF_CONFIG (run the same command on every worker).")
    flags.DEFINE_bool("mixed_bfloat16", False, "Compute in bfloat16 "
                      "(keras mixed_bfloat16 policy); losses and weights stay "
                      "float32. Faster only where the hardware computes "
                      "bfloat16 (GPUs, TPUs, CPUs with AVX512-BF16 or AMX); "
                      "refused on CPUs without it, where it is many times "
                      "slower than float32.")
    flags.DEFINE_bool("deterministic", False, "Bit-reproducible runs and "
                      "resumes: TF's deterministic ops and one inter-op "
                      "thread (slower).")
    flags.DEFINE_integer("steps_per_execution", 1, "Training steps per "
                         "tf.function call.", lower_bound=1)
    flags.DEFINE_enum("verbose", "auto", ["auto", "0", "1", "2"],
                      "Keras progress: 1 = progress bar, 2 = one line per "
                      "epoch (log files), 0 = silent; auto = 1 on a terminal.")
    # ## Data
    flags.DEFINE_enum("dataset", "cifar10", list(DATASETS), "Data source.")
    flags.DEFINE_string("data_dir", None, "tensorflow-datasets data_dir "
                        "(cifar10/cifar100).")
    flags.DEFINE_string("data_path", None, "Image-folder root or .tar.gz "
                        "(dataset=folder), or Clothing1M root.")
    flags.DEFINE_string("cache_dir", None, "Cache for unpacked archives and "
                        "decoded images (default ~/.cache/mwnet_tf).")
    flags.DEFINE_bool("download", True, "Let tensorflow-datasets download.")
    flags.DEFINE_enum("noise", "uniform", list(NOISE_TYPES),
                      "Label noise of the training split.")
    flags.DEFINE_float("noise_rate", 0.4, "Corruption probability p.",
                       lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_float("imbalance_factor", 1.0, "Long-tail imbalance factor "
                       "(n_max / n_min); 1 = balanced.", lower_bound=1.0)
    flags.DEFINE_integer("meta_per_class", None, "Clean meta examples per "
                         "class (default: 1000 in all, or the trusted split).",
                         lower_bound=1)
    flags.DEFINE_integer("train_subset", None, "Use only this many training "
                         "examples (reduced protocols, smoke tests).",
                         lower_bound=1)
    flags.DEFINE_integer("batch_size", 100, "Training batch size.",
                         lower_bound=1)
    flags.DEFINE_integer("meta_batch_size", 100, "Meta batch size.",
                         lower_bound=1)
    # ## Model
    flags.DEFINE_string("model", "resnet32", "Classifier: one of "
                        f"{', '.join(zoo.names())}.")
    flags.DEFINE_bool("synchronized_batch_norm", False, "BatchNorm "
                      "statistics over the global batch of all replicas "
                      "(with --distribute): N replicas then compute what one "
                      "device would, at the cost of all-reduces per layer.")
    flags.DEFINE_float("dropout_rate", None, "Dropout of Wide ResNets.",
                       lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_string("pretrained_weights", None, "resnet50 only: a local "
                        "weights file, or `imagenet` to download.")
    # ## Method
    flags.DEFINE_enum("method", "mwnet", list(METHODS), "Reweighting method.")
    flags.DEFINE_enum("lookahead", "sgd", list(LOOKAHEADS), "Lookahead step.")
    flags.DEFINE_enum("weight_normalization", "mean",
                      list(WEIGHT_NORMALIZATIONS), "Reduction of the weighted "
                      "loss.")
    flags.DEFINE_integer("meta_interval", 1, "Meta update every k steps "
                         "(the other steps reuse the current V; README: "
                         "the measured frontier).", lower_bound=1)
    flags.DEFINE_integer("meta_warmup_steps", 0, "No meta step in the "
                         "first N steps: mwnet trains with V as it starts "
                         "(or as --weighting_net gives it), l2rw with "
                         "weights 1; the meta interval counts from step N. "
                         "Measured: BENCHMARKS.md, Quickstart.",
                         lower_bound=0)
    flags.DEFINE_string("meta_scope", "all", "Classifier layers the "
                        "lookahead moves: all (exact MW-Net), head (the "
                        "logits layer), an integer k (the last k layers "
                        "with weights) or comma-separated layer names. "
                        "Partial scopes cost 1.2-1.5x a CE step, the exact "
                        "one 3-3.8x (BENCHMARKS.md; ResNet-32, this "
                        "project's 2-core CPU).")
    flags.DEFINE_enum("vnet", "mlp", ["mlp", "class_aware"], "V: mlp "
                      "(MW-Net: one weighting function), class_aware "
                      "(CMW-Net: one head per task family of classes, "
                      "families from k-means on the classes' training label "
                      "counts; README: when to use it).")
    flags.DEFINE_integer("vnet_families", 3, "Task families (heads) of "
                         "--vnet=class_aware.", lower_bound=1)
    flags.DEFINE_list("vnet_hidden", ["100"], "Hidden sizes of V.")
    flags.DEFINE_string("weighting_net", None, "A learned V to start from "
                        "(a run's weighting_net.keras): --method=fixed trains "
                        "with its weights, frozen, at the cost of CE; "
                        "--method=mwnet meta-learns on from it.")
    flags.DEFINE_bool("audit", True, "After training with V (mwnet, fixed), "
                      "audit the training labels: audit.csv (lowest weight "
                      "first), suspect_labels.png, and how well the weights "
                      "find corrupted labels in results.json.")
    # ## Optimisation
    flags.DEFINE_integer("epochs", 120, "Training epochs.", lower_bound=1)
    flags.DEFINE_float("lr", 0.1, "Classifier learning rate.", lower_bound=0.0)
    flags.DEFINE_list("lr_decay_epochs", ["80", "100"], "Epochs at which the "
                      "learning rate is multiplied by lr_decay.")
    flags.DEFINE_float("lr_decay", 0.1, "Step-decay factor.", lower_bound=0.0)
    flags.DEFINE_float("momentum", 0.9, "SGD momentum.", lower_bound=0.0,
                       upper_bound=1.0)
    flags.DEFINE_bool("nesterov", True, "Nesterov momentum.")
    flags.DEFINE_float("weight_decay", 5e-4, "L2 of the classifier.",
                       lower_bound=0.0)
    flags.DEFINE_float("meta_lr", 1e-3, "Adam learning rate of V.",
                       lower_bound=0.0)
    flags.DEFINE_float("meta_weight_decay", 1e-4, "L2 of V.", lower_bound=0.0)

    flags.mark_flag_as_required("workdir")
    flags.register_validator(
        "model", lambda name: name in zoo.names(),
        message=f"--model must be one of {', '.join(zoo.names())}.")
    flags.register_validator(
        "meta_scope", lambda value: parse_meta_scope(value) is not None,
        message="--meta_scope must be all, head, a positive integer or "
        "comma-separated layer names, e.g. 5 or stage3_block5_conv2,logits.")
    flags.register_validator(
        "vnet_hidden", _positive_ints,
        message="--vnet_hidden must be positive integers, e.g. 100 or 100,100.")
    flags.register_validator(
        "lr_decay_epochs", lambda values: _positive_ints(values, allow_empty=True),
        message="--lr_decay_epochs must be positive integers, e.g. 80,100.")
    flags.register_multi_flags_validator(
        ["dataset", "data_path"],
        lambda f: f["dataset"] not in ("folder", "clothing1m") or f["data_path"],
        message="--dataset=folder and --dataset=clothing1m need --data_path.")
    flags.register_multi_flags_validator(
        ["dataset", "noise"],
        lambda f: f["dataset"] != "clothing1m" or f["noise"] == "none",
        message="Clothing1M labels are noisy already: use --noise=none.")
    flags.register_multi_flags_validator(
        ["method", "weighting_net"],
        lambda f: f["method"] != "fixed" or f["weighting_net"],
        message="--method=fixed trains with a learned V: give its file with "
        "--weighting_net=<run>/weighting_net.keras.")
    flags.register_multi_flags_validator(
        ["method", "weighting_net"],
        lambda f: not f["weighting_net"] or f["method"] in ("mwnet", "fixed"),
        message="--weighting_net is for --method=fixed or --method=mwnet.")
    flags.register_multi_flags_validator(
        ["method", "meta_interval", "meta_warmup_steps",
         "steps_per_execution", "distribute"],
        lambda f: (not step_kinds_differ(f["method"], f["meta_interval"],
                                         f["meta_warmup_steps"])
                   or f["steps_per_execution"] == 1
                   or f["distribute"] == "none"),
        message="--meta_interval > 1 or --meta_warmup_steps with --distribute "
        "needs --steps_per_execution=1 (the kind of step is chosen between "
        "calls).")
    flags.register_multi_flags_validator(
        ["model", "pretrained_weights"],
        lambda f: f["pretrained_weights"] is None or f["model"] == "resnet50",
        message="--pretrained_weights is for --model=resnet50 only.")
    flags.register_multi_flags_validator(
        ["model", "dropout_rate"],
        lambda f: f["dropout_rate"] is None or f["model"].startswith(("wrn",
                                                                     "wide")),
        message="--dropout_rate is for Wide ResNets (--model=wrn28_10, ...).")


def _positive_ints(values, allow_empty=False):
    try:
        numbers = [int(v) for v in values]
    except (TypeError, ValueError):
        return False
    return (allow_empty or bool(numbers)) and all(n > 0 for n in numbers)
