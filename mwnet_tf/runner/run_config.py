"""A run's settings, typed, in one object.

`RunConfig` is what `python -m mwnet_tf.main` runs: built once from the flags
(`RunConfig.from_flags`) or from a work directory's saved `config.json`
(`RunConfig.from_dict`), and from then on the only source of settings; data,
model, optimisers, callbacks and the audit are built from it
(`mwnet_tf.runner.experiment`). Its defaults are the flags' defaults
(`experiment_flags` defines each flag with the default declared here).

To add a setting: a field here (with its type and default), its flag in
`experiment_flags` (with `DEFAULTS.<name>`), and its use in `experiment` or
`main`. Work directories written before it existed resume with its default.
"""

import dataclasses
import typing
from typing import Optional, Tuple

# Settings that change how a run is watched or stored, not what it computes:
# a work directory may be resumed with other values of these.
RUN_CONTROL = ("workdir", "overwrite", "verbose", "download", "cache_dir",
               "audit", "test_every")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Every setting of an experiment run (flag help: `--help`)."""

    # Run control and output.
    workdir: Optional[str] = None
    overwrite: bool = False
    verbose: str = "auto"
    audit: bool = True
    test_every: int = 1
    # Experiment and data.
    dataset: str = "cifar10"
    data_path: Optional[str] = None
    data_dir: Optional[str] = None
    cache_dir: Optional[str] = None
    download: bool = True
    train_subset: Optional[int] = None
    meta_per_class: Optional[int] = None
    meta_source: str = "auto"
    pseudo_clean_per_class: int = 10
    batch_size: int = 100
    meta_batch_size: int = 100
    seed: int = 1
    # Noise and imbalance.
    noise: str = "uniform"
    noise_rate: float = 0.4
    imbalance_factor: float = 1.0
    # Model.
    model: str = "resnet32"
    dropout_rate: Optional[float] = None
    pretrained_weights: Optional[str] = None
    # Method and meta-learning.
    method: str = "mwnet"
    lookahead: str = "sgd"
    weight_normalization: str = "mean"
    meta_interval: int = 1
    meta_warmup_steps: int = 0
    meta_scope: str = "all"
    real_step_weights: str = "updated"
    vnet: str = "mlp"
    vnet_families: int = 3
    vnet_hidden: Tuple[int, ...] = (100,)
    weighting_net: Optional[str] = None
    label_correction: bool = False
    ema_decay: float = 0.997
    # Optimisation.
    epochs: int = 120
    lr: float = 0.1
    lr_decay_epochs: Tuple[int, ...] = (80, 100)
    lr_decay: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    meta_lr: float = 1e-3
    meta_weight_decay: float = 1e-4
    # Distribution and precision.
    distribute: str = "none"
    synchronized_batch_norm: bool = False
    mixed_bfloat16: bool = False
    deterministic: bool = False
    steps_per_execution: int = 1

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
            name: getattr(RunConfig, name) for name in RUN_CONTROL})

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


DEFAULTS = RunConfig()


def _converted(hint, value):
    if value is None:
        return None
    args = typing.get_args(hint)
    if type(None) in args:  # Optional[X]
        hint = next(arg for arg in args if arg is not type(None))
        args = typing.get_args(hint)
    if typing.get_origin(hint) is tuple:
        return tuple(args[0](item) for item in value)
    if hint is bool:
        return bool(value)
    return hint(value)
