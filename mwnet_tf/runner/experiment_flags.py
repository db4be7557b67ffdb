"""The command-line flags of `python -m mwnet_tf.main`, defined in one place.

`define_flags()` is called by `main.py` only; library modules never read
flags. Validators check values and combinations, never the filesystem (paths
are checked by `main.py` before any expensive work).
"""

from absl import flags

import zoo
from mwnet_tf.data import DATASETS, META_SOURCES, NOISE_TYPES
from mwnet_tf.distribute import STRATEGIES
from mwnet_tf.layer_scope import parse_meta_scope
from mwnet_tf.runner.run_config import DEFAULTS
from mwnet_tf import data as data_lib
from mwnet_tf.data import preparation
from mwnet_tf import arguments
from mwnet_tf.arguments import METHODS, REAL_STEP_WEIGHTS
from mwnet_tf.meta_gradient import LOOKAHEADS, WEIGHT_NORMALIZATIONS

# How `python -m mwnet_tf.main --help` lists the flags below, in this order.
# Every flag is in exactly one group (tests/test_cli.py): add a new flag here.
FLAG_GROUPS = (
    ("Experiment and data", (
        "dataset", "data_path", "data_dir", "cache_dir", "download",
        "train_subset", "meta_source", "meta_per_class",
        "pseudo_clean_per_class", "batch_size", "meta_batch_size", "seed")),
    ("Noise and imbalance", ("noise", "noise_rate", "imbalance_factor")),
    ("Model", ("model", "dropout_rate", "pretrained_weights")),
    ("Method and meta-learning", (
        "method", "lookahead", "weight_normalization", "meta_interval",
        "meta_warmup_steps", "meta_scope", "real_step_weights", "vnet",
        "vnet_families",
        "vnet_hidden", "weighting_net", "label_correction", "ema_decay")),
    ("Optimisation", (
        "epochs", "lr", "lr_decay_epochs", "lr_decay", "momentum", "nesterov",
        "weight_decay", "meta_lr", "meta_weight_decay")),
    ("Run control and output", ("workdir", "overwrite", "verbose", "audit",
                                "test_every")),
    ("Distribution and precision", (
        "distribute", "synchronized_batch_norm", "mixed_bfloat16",
        "deterministic", "steps_per_execution")),
)


def _check_real_step_weights(f):
    """As the model checks it, on --meta_scope as the model gets it (a
    malformed scope is --meta_scope's own rule's error)."""
    meta_scope = parse_meta_scope(f["meta_scope"])
    if meta_scope is not None:
        arguments.check_real_step_weights(f["real_step_weights"], f["method"],
                                          meta_scope)


def define_flags():
    """Defines the experiment flags on absl's global FLAGS (idempotent)."""
    if "method" in flags.FLAGS:
        return
    # ## Run
    flags.DEFINE_string("workdir", DEFAULTS.workdir,
                        "Work directory: TensorBoard logs, "
                        "checkpoints, results.json, saved models.")
    flags.DEFINE_bool("overwrite", DEFAULTS.overwrite,
                      "Start afresh in a work directory that "
                      "holds a run made with other flags (its files are "
                      "replaced).")
    flags.DEFINE_integer("seed", DEFAULTS.seed,
                         "Seed of the meta set, noise, shuffling, "
                         "augmentation and initialisation.", lower_bound=0)
    flags.DEFINE_enum("distribute", DEFAULTS.distribute, list(STRATEGIES),
                      "`mirrored`: tf.distribute.MirroredStrategy over all "
                      "local GPUs (or CPUs); `multi_worker`: "
                      "MultiWorkerMirroredStrategy over the cluster in "
                      "TF_CONFIG (run the same command on every worker).")
    flags.DEFINE_bool("mixed_bfloat16", DEFAULTS.mixed_bfloat16,
                      "Compute in bfloat16 "
                      "(keras mixed_bfloat16 policy); losses and weights stay "
                      "float32. Faster only where the hardware computes "
                      "bfloat16 (GPUs, TPUs, CPUs with AVX512-BF16 or AMX); "
                      "refused on CPUs without it, where it is many times "
                      "slower than float32.")
    flags.DEFINE_bool("deterministic", DEFAULTS.deterministic,
                      "Bit-reproducible runs and "
                      "resumes: TF's deterministic ops and one inter-op "
                      "thread (slower).")
    flags.DEFINE_integer("steps_per_execution", DEFAULTS.steps_per_execution,
                         "Training steps per "
                         "tf.function call.", lower_bound=1)
    flags.DEFINE_enum("verbose", DEFAULTS.verbose, ["auto", "0", "1", "2"],
                      "Keras progress: 1 = progress bar, 2 = one line per "
                      "epoch (log files), 0 = silent; auto = 1 on a terminal.")
    # ## Data
    flags.DEFINE_enum("dataset", DEFAULTS.dataset,
                      list(DATASETS), "Data source.")
    flags.DEFINE_string("data_dir", DEFAULTS.data_dir,
                        "tensorflow-datasets data_dir "
                        "(cifar10/cifar100).")
    flags.DEFINE_string("data_path", DEFAULTS.data_path,
                        "Image-folder root or .tar.gz "
                        "(dataset=folder), or Clothing1M root.")
    flags.DEFINE_string("cache_dir", DEFAULTS.cache_dir,
                        "Cache for unpacked archives and "
                        "decoded images (default ~/.cache/mwnet_tf).")
    flags.DEFINE_bool("download", DEFAULTS.download,
                      "Let tensorflow-datasets download.")
    flags.DEFINE_enum("noise", DEFAULTS.noise, list(NOISE_TYPES),
                      "Label noise of the training split.")
    flags.DEFINE_float("noise_rate", DEFAULTS.noise_rate,
                       "Corruption probability p.",
                       lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_float("imbalance_factor", DEFAULTS.imbalance_factor,
                       "Long-tail imbalance factor "
                       "(n_max / n_min); 1 = balanced.", lower_bound=1.0)
    flags.DEFINE_integer("meta_per_class", DEFAULTS.meta_per_class,
                         "Clean meta examples per "
                         "class (default: 1000 in all, or the trusted split).",
                         lower_bound=1)
    flags.DEFINE_enum("meta_source", DEFAULTS.meta_source, list(META_SOURCES),
                      "Where the meta set comes from: trusted (an image "
                      "folder's meta/, Clothing1M's clean set), clean_draw "
                      "(drawn from the training split before synthetic "
                      "noise is added), pseudo_clean (no trusted label: the "
                      "k lowest-loss examples per class under the averaged "
                      "model, chosen each epoch after --meta_warmup_steps), "
                      "given_draw (drawn with the labels as given, which "
                      "may be wrong). auto: trusted if there is such a "
                      "split, else clean_draw where the labels are known to "
                      "be clean (synthetic noise, CIFAR), else "
                      "pseudo_clean.")
    flags.DEFINE_integer("pseudo_clean_per_class",
                         DEFAULTS.pseudo_clean_per_class,
                         "k: examples per given class of the pseudo-clean "
                         "meta set (CMW-Net-SL: 10).", lower_bound=1)
    flags.DEFINE_integer("train_subset", DEFAULTS.train_subset,
                         "Use only this many training "
                         "examples (reduced protocols, smoke tests).",
                         lower_bound=1)
    flags.DEFINE_integer("batch_size", DEFAULTS.batch_size,
                         "Training batch size.",
                         lower_bound=1)
    flags.DEFINE_integer("meta_batch_size", DEFAULTS.meta_batch_size,
                         "Meta batch size.",
                         lower_bound=1)
    # ## Model
    flags.DEFINE_string("model", DEFAULTS.model, "Classifier: one of "
                        f"{', '.join(zoo.names())}.")
    flags.DEFINE_bool("synchronized_batch_norm", DEFAULTS.synchronized_batch_norm,
                      "BatchNorm "
                      "statistics over the global batch of all replicas "
                      "(with --distribute): N replicas then compute what one "
                      "device would, at the cost of all-reduces per layer.")
    flags.DEFINE_float("dropout_rate", DEFAULTS.dropout_rate,
                       "Dropout of Wide ResNets.",
                       lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_string("pretrained_weights", DEFAULTS.pretrained_weights,
                        "resnet50 only: a local "
                        "weights file, or `imagenet` to download.")
    # ## Method
    flags.DEFINE_enum("method", DEFAULTS.method,
                      list(METHODS), "Reweighting method.")
    flags.DEFINE_enum("lookahead", DEFAULTS.lookahead,
                      list(LOOKAHEADS), "Lookahead step.")
    flags.DEFINE_enum("weight_normalization", DEFAULTS.weight_normalization,
                      list(WEIGHT_NORMALIZATIONS), "Reduction of the weighted "
                      "loss.")
    flags.DEFINE_integer("meta_interval", DEFAULTS.meta_interval,
                         "Meta update every k steps "
                         "(the other steps reuse the current V; README: "
                         "the measured frontier).", lower_bound=1)
    flags.DEFINE_integer("meta_warmup_steps", DEFAULTS.meta_warmup_steps,
                         "No meta step in the "
                         "first N steps: mwnet trains with V as it starts "
                         "(or as --weighting_net gives it), l2rw with "
                         "weights 1; the meta interval counts from step N. "
                         "Measured: BENCHMARKS.md, Quickstart.",
                         lower_bound=0)
    flags.DEFINE_string("meta_scope", DEFAULTS.meta_scope,
                        "Classifier layers the "
                        "lookahead moves: all (exact MW-Net), head (the "
                        "logits layer), an integer k (the last k layers "
                        "with weights) or comma-separated layer names. "
                        "Partial scopes cost 1.2-1.5x a CE step, the exact "
                        "one 3-3.8x (BENCHMARKS.md; ResNet-32, this "
                        "project's 2-core CPU).")
    flags.DEFINE_enum("real_step_weights", DEFAULTS.real_step_weights,
                      list(REAL_STEP_WEIGHTS), "On a meta step, the V that "
                      "weighs the classifier's step: updated (the paper's: "
                      "after this step's meta update) or lookahead (before "
                      "it: the lookahead's gradient is reused, one backward "
                      "pass fewer per meta step; needs --meta_scope=all).")
    flags.DEFINE_enum("vnet", DEFAULTS.vnet, ["mlp", "class_aware"], "V: mlp "
                      "(MW-Net: one weighting function), class_aware "
                      "(CMW-Net: one head per task family of classes, "
                      "families from k-means on the classes' training label "
                      "counts; README: when to use it). A V loaded with "
                      "--weighting_net keeps its own kind and families.")
    flags.DEFINE_integer("vnet_families", DEFAULTS.vnet_families,
                         "Task families (heads) of "
                         "--vnet=class_aware.", lower_bound=1)
    flags.DEFINE_list("vnet_hidden", [str(v) for v in DEFAULTS.vnet_hidden],
                      "Hidden sizes of V.")
    flags.DEFINE_string("weighting_net", DEFAULTS.weighting_net,
                        "A learned V to start from "
                        "(a run's weighting_net.keras): --method=fixed trains "
                        "with its weights, frozen, at the cost of CE; "
                        "--method=mwnet meta-learns on from it.")
    flags.DEFINE_bool("label_correction", DEFAULTS.label_correction,
                      "Soft label correction (CMW-Net-SL): each example's "
                      "loss is v CE(f(x), y) + (1 - v) CE(f(x), p), v V's "
                      "weight and p the averaged model's prediction, so a "
                      "label V distrusts is replaced by the model's belief "
                      "instead of only down-weighted; plain CE during "
                      "--meta_warmup_steps. mwnet or fixed.")
    flags.DEFINE_float("ema_decay", DEFAULTS.ema_decay,
                       "Decay per step of the averaged (EMA) classifier "
                       "that --label_correction trusts and --meta_source="
                       "pseudo_clean chooses with.", lower_bound=0.0,
                       upper_bound=1.0)
    flags.DEFINE_bool("audit", DEFAULTS.audit,
                      "After training with V (mwnet, fixed), "
                      "audit the training labels: audit.csv (lowest weight "
                      "first), suspect_labels.png, and how well the weights "
                      "find corrupted labels in results.json.")
    flags.DEFINE_integer("test_every", DEFAULTS.test_every,
                         "Evaluate the test set after every N-th epoch and "
                         "after the last (1: every epoch; the meta set is "
                         "evaluated every epoch). Larger N saves time on "
                         "short runs and slow CPUs.", lower_bound=1)
    # ## Optimisation
    flags.DEFINE_integer("epochs", DEFAULTS.epochs,
                         "Training epochs.", lower_bound=1)
    flags.DEFINE_float("lr", DEFAULTS.lr,
                       "Classifier learning rate.", lower_bound=0.0)
    flags.DEFINE_list("lr_decay_epochs", [str(v) for v in DEFAULTS.lr_decay_epochs],
                      "Epochs at which the "
                      "learning rate is multiplied by lr_decay.")
    flags.DEFINE_float("lr_decay", DEFAULTS.lr_decay,
                       "Step-decay factor.", lower_bound=0.0)
    flags.DEFINE_float("momentum", DEFAULTS.momentum,
                       "SGD momentum.", lower_bound=0.0,
                       upper_bound=1.0)
    flags.DEFINE_bool("nesterov", DEFAULTS.nesterov, "Nesterov momentum.")
    flags.DEFINE_float("weight_decay", DEFAULTS.weight_decay,
                       "L2 of the classifier.",
                       lower_bound=0.0)
    flags.DEFINE_float("meta_lr", DEFAULTS.meta_lr, "Adam learning rate of V.",
                       lower_bound=0.0)
    flags.DEFINE_float("meta_weight_decay", DEFAULTS.meta_weight_decay,
                       "L2 of V.", lower_bound=0.0)

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
    # Rules of the library, checked by the library's own functions (their
    # messages name the library's arguments: the flags' names, but for
    # prepare's path=, which is --data_path).
    _library_rule(["dataset", "data_path"], lambda f: data_lib.check_path_given(
        f["dataset"], f["data_path"]), renamed={"path=": "--data_path"})
    _library_rule(["dataset", "noise"], lambda f: data_lib.check_noise_of_dataset(
        f["dataset"], f["noise"]))
    _library_rule(["real_step_weights", "method", "meta_scope"],
                  _check_real_step_weights)
    _library_rule(["label_correction", "ema_decay", "method"],
                  lambda f: arguments.check_label_correction(
                      f["label_correction"], f["ema_decay"], f["method"]))
    _library_rule(["meta_source", "dataset", "noise"],
                  lambda f: data_lib.resolve_meta_source(
                      f["meta_source"], f["dataset"], f["noise"],
                      preparation.trusted_split_before_loading(
                          f["dataset"])))
    _library_rule(["meta_source", "method", "meta_warmup_steps", "dataset",
                   "noise"], _check_pseudo_clean_warmup)
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
        ["method", "meta_interval", "meta_warmup_steps",
         "steps_per_execution", "distribute"],
        lambda f: arguments.check_steps_per_execution(
            f["method"], f["meta_interval"], f["meta_warmup_steps"],
            f["steps_per_execution"], 1 if f["distribute"] == "none" else 2))
    _library_rule(
        ["label_correction", "meta_warmup_steps", "steps_per_execution",
         "distribute", "method"],
        lambda f: arguments.check_steps_per_execution(
            f["method"], 1, f["meta_warmup_steps"],
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


def _check_pseudo_clean_warmup(f):
    """A pseudo-clean meta set is chosen by a model trained for a while:
    MW-Net's meta steps must wait for it (--meta_warmup_steps)."""
    source = f["meta_source"]
    if source == "auto":
        source = data_lib.resolve_meta_source(
            "auto", f["dataset"], f["noise"],
            preparation.trusted_split_before_loading(f["dataset"]))
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


def _positive_ints(values, allow_empty=False):
    try:
        numbers = [int(v) for v in values]
    except (TypeError, ValueError):
        return False
    return (allow_empty or bool(numbers)) and all(n > 0 for n in numbers)
