"""A run's settings, typed, each declared once.

`RunConfig` is what `python -m mwnet_tf.main` runs: built once from the flags
(`RunConfig.from_flags`) or from a work directory's saved `config.json`
(`RunConfig.from_dict`), and from then on the only source of settings; data,
model, optimisers, callbacks and the audit are built from it
(`mwnet_tf.runner.experiment`).

Each field is declared with `setting(...)`: its type, default, help, `--help`
group, bounds or choices. `experiment_flags` generates the flags, their
groups and `--help` from these declarations; nothing else lists settings.

To add a setting: a field here, its use (`experiment`, `main`), its test.
Work directories written before it existed resume with its default.
"""

import dataclasses
import typing
from typing import Optional, Tuple

# The groups of `--help`, in its order.
GROUPS = (
    DATA, NOISE, MODEL, METHOD, OPTIMISATION, RUN, DISTRIBUTION) = (
    "Experiment and data", "Noise and imbalance", "Model",
    "Method and meta-learning", "Optimisation", "Run control and output",
    "Distribution and precision")


def setting(default, help, group, *, lower_bound=None, upper_bound=None,
            choices=None, enum=True, rule=None, min_items=0, required=False,
            run_control=False):
    """A `RunConfig` field with what its flag needs (its metadata).

    Args:
        default: The default, also the flag's.
        help: The flag's help; `{choices}` in it is replaced by the choices.
        group: One of `GROUPS`: where `--help` lists the flag.
        lower_bound, upper_bound: Inclusive bounds of a number, or of each
            item of a list of numbers.
        choices: The allowed values: a tuple, or "module:NAME" naming the
            library's constant (or function returning them), e.g.
            "mwnet_tf.arguments:METHODS", imported when the flags are
            defined (this module imports no TensorFlow).
        enum: With `choices`: an enum flag; False: a string flag whose
            validator says "--name must be one of ..." (long lists).
        rule: "module:function", the library's check of one value (raises
            ValueError; not called for None): the rule bounds cannot say,
            e.g. a half-open range.
        min_items: A list setting's least number of items.
        required: The command line must give it.
        run_control: It changes how a run is watched or stored, not what it
            computes: a work directory may be resumed with another value.
    """
    if group not in GROUPS:
        raise ValueError(f"group must be one of {GROUPS}; got {group!r}.")
    return dataclasses.field(default=default, metadata=dict(
        help=help, group=group, lower_bound=lower_bound,
        upper_bound=upper_bound, choices=choices, enum=enum, rule=rule,
        min_items=min_items, required=required, run_control=run_control))


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Every setting of an experiment run (flag help: `--help`)."""

    dataset: str = setting(
        "cifar10", "Data source.", DATA, choices="mwnet_tf.data:DATASETS")
    data_path: Optional[str] = setting(
        None, "Image-folder root or .tar.gz (dataset=folder), or Clothing1M "
        "root.", DATA)
    data_dir: Optional[str] = setting(
        None, "tensorflow-datasets data_dir (cifar10/cifar100).", DATA)
    cache_dir: Optional[str] = setting(
        None, "Cache for unpacked archives and decoded images (default "
        "~/.cache/mwnet_tf).", DATA, run_control=True)
    download: bool = setting(
        True, "Let tensorflow-datasets download.", DATA, run_control=True)
    labels_file: Optional[str] = setting(
        None, "Training labels from a file: a CSV "
        "(path,label[,split][,clean_label]; paths under --data_path, "
        "--dataset=folder) or a .npy/.npz of one label per training example "
        "in the data set's canonical order (CIFAR-N). The run writes them "
        "back as labels.csv / labels.npz with the audit's verdicts.", DATA)
    labels_key: Optional[str] = setting(
        None, "The labels' CSV column or .npz array (CSV default: label).",
        DATA)
    clean_labels_key: Optional[str] = setting(
        None, "The true labels' CSV column or .npz array, if known (CSV "
        "default: clean_label when present): noise statistics and the "
        "audit's detection use them; a label array on an image folder needs "
        "them.", DATA)
    label_classes: Tuple[str, ...] = setting(
        (), "Class names in label order, for a CSV's integer labels.", DATA)
    train_subset: Optional[int] = setting(
        None, "Use only this many training examples (reduced protocols, "
        "smoke tests).", DATA, lower_bound=1)
    meta_source: str = setting(
        "auto", "Where the meta set comes from: trusted (an image folder's "
        "meta/, Clothing1M's clean set), clean_draw (drawn from the training "
        "split before synthetic noise is added), pseudo_clean (no trusted "
        "label: the k lowest-loss examples per class under the averaged "
        "model, chosen each epoch after --meta_warmup_steps), given_draw "
        "(drawn with the labels as given, which may be wrong). auto: trusted "
        "if there is such a split, else clean_draw where the labels are "
        "known to be clean (synthetic noise, CIFAR), else pseudo_clean.",
        DATA, choices="mwnet_tf.data:META_SOURCES")
    meta_per_class: Optional[int] = setting(
        None, "Clean meta examples per class (default: 1000 in all, or the "
        "trusted split).", DATA, lower_bound=1)
    pseudo_clean_per_class: int = setting(
        10, "k: examples per given class of the pseudo-clean meta set "
        "(CMW-Net-SL: 10).", DATA, lower_bound=1)
    pseudo_clean_pool: float = setting(
        1.0, "The fraction of each given class the pseudo-clean choice "
        "scores each epoch, drawn afresh (at least k): 1 scores every "
        "training example (CMW-Net-SL); less costs less.", DATA,
        rule="mwnet_tf.data.meta_split:check_pool_fraction")
    batch_size: int = setting(100, "Training batch size.", DATA,
                              lower_bound=1)
    meta_batch_size: int = setting(100, "Meta batch size.", DATA,
                                   lower_bound=1)
    seed: int = setting(
        1, "Seed of the meta set, noise, shuffling, augmentation and "
        "initialisation.", DATA, lower_bound=0)

    noise: str = setting("uniform", "Label noise of the training split.",
                         NOISE, choices="mwnet_tf.data:NOISE_TYPES")
    noise_rate: float = setting(0.4, "Corruption probability p.", NOISE,
                                lower_bound=0.0, upper_bound=1.0)
    imbalance_factor: float = setting(
        1.0, "Long-tail imbalance factor (n_max / n_min); 1 = balanced.",
        NOISE, lower_bound=1.0)

    model: str = setting("resnet32", "Classifier: one of {choices}.", MODEL,
                         choices="zoo:names", enum=False)
    dropout_rate: Optional[float] = setting(
        None, "Dropout of Wide ResNets.", MODEL,
        rule="zoo.wide_resnet:check_dropout_rate")
    pretrained_weights: Optional[str] = setting(
        None, "resnet50 only: a local weights file, or `imagenet` to "
        "download.", MODEL)

    method: str = setting("mwnet", "Reweighting method.", METHOD,
                          choices="mwnet_tf.arguments:METHODS")
    lookahead: str = setting("sgd", "Lookahead step.", METHOD,
                             choices="mwnet_tf.meta_gradient:LOOKAHEADS")
    weight_normalization: str = setting(
        "mean", "Reduction of the weighted loss.", METHOD,
        choices="mwnet_tf.meta_gradient:WEIGHT_NORMALIZATIONS")
    meta_interval: int = setting(
        1, "Meta update every k steps (the other steps reuse the current V; "
        "README: which setting to choose).", METHOD, lower_bound=1)
    meta_warmup_steps: int = setting(
        0, "No meta step in the first N steps: mwnet trains with V as it "
        "starts (or as --weighting_net gives it), l2rw with weights 1; the "
        "meta interval counts from step N.", METHOD, lower_bound=0)
    meta_scope: str = setting(
        "all", "Classifier layers the lookahead moves: all (exact MW-Net), "
        "head (the logits layer), an integer k (the last k layers with "
        "weights) or comma-separated layer names. A partial scope "
        "differentiates through fewer layers, so its meta step is cheaper "
        "than the exact one (costs: BENCHMARKS.md).", METHOD)
    real_step_weights: str = setting(
        "updated", "On a meta step, the V that weighs the classifier's step: "
        "updated (the paper's: after this step's meta update) or lookahead "
        "(before it: the lookahead's gradient is reused, one backward pass "
        "fewer per meta step; needs --meta_scope=all).", METHOD,
        choices="mwnet_tf.arguments:REAL_STEP_WEIGHTS")
    vnet: str = setting(
        "mlp", "V: mlp (MW-Net: one weighting function), class_aware "
        "(CMW-Net: one head per task family of classes, families from "
        "k-means on the classes' training label counts; README: when to use "
        "it). A V loaded with --weighting_net keeps its own kind and "
        "families.", METHOD, choices=("mlp", "class_aware"))
    vnet_families: int = setting(
        3, "Task families (heads) of --vnet=class_aware.", METHOD,
        lower_bound=1)
    vnet_hidden: Tuple[int, ...] = setting(
        (100,), "Hidden sizes of V.", METHOD, lower_bound=1, min_items=1)
    weighting_net: Optional[str] = setting(
        None, "A learned V to start from (a run's weighting_net.keras): "
        "--method=fixed trains with its weights, frozen, at the cost of CE; "
        "--method=mwnet meta-learns on from it.", METHOD)
    label_correction: bool = setting(
        False, "Soft label correction (CMW-Net-SL): each example's loss is "
        "v CE(f(x), y) + (1 - v) CE(f(x), p), v V's weight and p the "
        "averaged model's prediction, so a label V distrusts is replaced by "
        "the model's belief instead of only down-weighted; plain CE during "
        "--meta_warmup_steps. mwnet or fixed.", METHOD)
    # In (0, 1): the library's rule (arguments.check_label_correction).
    ema_decay: float = setting(
        0.997, "Decay per step of the averaged (EMA) classifier that "
        "--label_correction trusts and --meta_source=pseudo_clean chooses "
        "with.", METHOD)
    ema_debias: bool = setting(
        False, "Average only the weights the steps reached (the t-th EMA "
        "update's rate divided by 1 - decay^t): without it, after 500 steps "
        "at 0.997 the average still holds 22% of the random initial "
        "weights.", METHOD)

    epochs: int = setting(120, "Training epochs.", OPTIMISATION,
                          lower_bound=1)
    lr: float = setting(0.1, "Classifier learning rate.", OPTIMISATION,
                        lower_bound=0.0)
    lr_decay_epochs: Tuple[int, ...] = setting(
        (80, 100), "Epochs at which the learning rate is multiplied by "
        "lr_decay.", OPTIMISATION, lower_bound=1)
    lr_decay: float = setting(0.1, "Step-decay factor.", OPTIMISATION,
                              lower_bound=0.0)
    momentum: float = setting(0.9, "SGD momentum.", OPTIMISATION,
                              lower_bound=0.0, upper_bound=1.0)
    nesterov: bool = setting(True, "Nesterov momentum.", OPTIMISATION)
    weight_decay: float = setting(5e-4, "L2 of the classifier.",
                                  OPTIMISATION, lower_bound=0.0)
    meta_lr: float = setting(1e-3, "Adam learning rate of V.", OPTIMISATION,
                             lower_bound=0.0)
    meta_weight_decay: float = setting(1e-4, "L2 of V.", OPTIMISATION,
                                       lower_bound=0.0)

    workdir: Optional[str] = setting(
        None, "Work directory: TensorBoard logs, checkpoints, results.json, "
        "saved models.", RUN, required=True, run_control=True)
    overwrite: bool = setting(
        False, "Start afresh in a work directory that holds a run made with "
        "other flags (its files are replaced).", RUN, run_control=True)
    verbose: str = setting(
        "auto", "Keras progress: 1 = progress bar, 2 = one line per epoch "
        "(log files), 0 = silent; auto = 1 on a terminal.", RUN,
        choices=("auto", "0", "1", "2"), run_control=True)
    audit: bool = setting(
        True, "After training with V (mwnet, fixed), audit the training "
        "labels: audit.csv (lowest weight first), suspect_labels.png, and "
        "how well the weights find corrupted labels in results.json.", RUN,
        run_control=True)
    relabel_confidence: float = setting(
        0.9, "The audit's verdict is relabel (a row of relabel.csv) where "
        "its suggested label differs from the given one with at least this "
        "probability; suspect where it differs with less.", RUN,
        rule="mwnet_tf.label_audit:check_relabel_confidence",
        run_control=True)
    test_every: int = setting(
        1, "Evaluate the test set after every N-th epoch and after the last "
        "(1: every epoch; the meta set is evaluated every epoch). Larger N "
        "saves time on short runs and slow CPUs.", RUN, lower_bound=1,
        run_control=True)

    distribute: str = setting(
        "none", "`mirrored`: tf.distribute.MirroredStrategy over all local "
        "GPUs (or CPUs); `multi_worker`: MultiWorkerMirroredStrategy over "
        "the cluster in TF_CONFIG (run the same command on every worker).",
        DISTRIBUTION, choices="mwnet_tf.distribute:STRATEGIES")
    synchronized_batch_norm: bool = setting(
        False, "BatchNorm statistics over the global batch of all replicas "
        "(with --distribute): N replicas then compute what one device would, "
        "at the cost of all-reduces per layer.", DISTRIBUTION)
    mixed_bfloat16: bool = setting(
        False, "Compute in bfloat16 (keras mixed_bfloat16 policy); losses "
        "and weights stay float32. Faster only where the hardware computes "
        "bfloat16 (GPUs, TPUs, CPUs with AVX512-BF16 or AMX); refused on "
        "CPUs without it, where bfloat16 is emulated and slower than "
        "float32.", DISTRIBUTION)
    deterministic: bool = setting(
        False, "Bit-reproducible runs and resumes: TF's deterministic ops "
        "and one inter-op thread (slower).", DISTRIBUTION)
    steps_per_execution: int = setting(
        1, "Training steps per tf.function call.", DISTRIBUTION,
        lower_bound=1)

    @classmethod
    def names(cls):
        return tuple(field.name for field in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, values):
        """From a dict of setting values, e.g. a saved `config.json`.

        Values are converted to the fields' types (a list flag's strings to
        integers); settings the dict lacks (it predates them) take their
        defaults.

        Raises:
            ValueError: For keys that are not settings (a config.json written
                by a newer version, or not by mwnet_tf).
        """
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            raise ValueError(
                f"unknown settings {', '.join(unknown)}: written by a newer "
                "mwnet_tf, or not by mwnet_tf.")
        hints = typing.get_type_hints(cls)
        return cls(**{name: _converted(hints[name], values[name])
                      for name in cls.names() if name in values})

    @classmethod
    def from_flags(cls, flag_values):
        """From parsed absl flags (every setting has a flag of its name)."""
        return cls.from_dict({name: flag_values[name].value
                              for name in cls.names()})

    def to_dict(self):
        """JSON-serialisable: what a work directory's config.json holds."""
        return {name: list(value) if isinstance(value, tuple) else value
                for name, value in dataclasses.asdict(self).items()}

    def computed(self):
        """This config without its run-control settings: two runs with equal
        `computed()` compute the same thing (one can resume the other)."""
        return dataclasses.replace(self, **{
            name: getattr(DEFAULTS, name) for name in RUN_CONTROL})

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


DEFAULTS = RunConfig()
# Settings that change how a run is watched or stored, not what it computes:
# a work directory may be resumed with other values of these.
RUN_CONTROL = tuple(field.name for field in dataclasses.fields(RunConfig)
                    if field.metadata["run_control"])


def value_type(hint):
    """A field's type as `(type, item_type)`: Optional[X] is X; a
    Tuple[X, ...] is (tuple, X); other types have item_type None."""
    args = typing.get_args(hint)
    if type(None) in args:  # Optional[X]
        hint = next(arg for arg in args if arg is not type(None))
        args = typing.get_args(hint)
    if typing.get_origin(hint) is tuple:
        return tuple, args[0]
    return hint, None


def _converted(hint, value):
    if value is None:
        return None
    kind, item_type = value_type(hint)
    if kind is tuple:
        return tuple(item_type(item) for item in value)
    if kind is bool:
        return bool(value)
    return kind(value)
