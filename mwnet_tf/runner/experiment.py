"""A run as its configuration describes it: its data, model and optimisers.

`config` is a `RunConfig` (run_config.py): `mwnet_tf.main` builds it from
the flags and writes it to a work directory's `config.json`. The runner
builds a run from it, and the label audit (`mwnet_tf.audit`) rebuilds a
finished run's training split from the saved file: same seed, so the same
meta split and noisy labels.
"""

import json
import os

import keras

import zoo
from mwnet_tf import data as data_lib
from mwnet_tf.layer_scope import parse_meta_scope
from mwnet_tf.trainer import MetaWeightNet
from mwnet_tf.weighting_net import (WeightingNet, load_weighting_net,
                                    task_families)


def prepare_data(config, epoch=None, **overrides):
    """`mwnet_tf.data.prepare` with a run's data flags.

    Args:
        config: The run's `RunConfig`.
        epoch: Optional epoch variable for the pipelines (see `prepare`).
        **overrides: `prepare` arguments that replace the config's, e.g.
            `path=` when the data has moved since the run.
    """
    arguments = dict(
        data_dir=config.data_dir, path=config.data_path,
        noise=config.noise, noise_rate=config.noise_rate,
        imbalance_factor=config.imbalance_factor,
        meta_per_class=config.meta_per_class, seed=config.seed,
        batch_size=config.batch_size,
        meta_batch_size=config.meta_batch_size,
        cache_dir=config.cache_dir, train_subset=config.train_subset,
        download=config.download, epoch=epoch,
        meta_source=config.meta_source,
        pseudo_clean_per_class=config.pseudo_clean_per_class,
        pseudo_clean_pool=config.pseudo_clean_pool,
        labels_file=config.labels_file, labels_key=config.labels_key,
        clean_labels_key=config.clean_labels_key,
        label_classes=config.label_classes or None)
    arguments.update(overrides)
    return data_lib.prepare(config.dataset, **arguments)


def learning_rate_schedule(config, steps_per_epoch):
    """The classifier's step-decay schedule (a float when it never decays)."""
    decay_epochs = [int(e) for e in config.lr_decay_epochs
                    if int(e) < config.epochs]
    if not decay_epochs:
        return config.lr
    return keras.optimizers.schedules.PiecewiseConstantDecay(
        boundaries=[e * steps_per_epoch for e in decay_epochs],
        values=[config.lr * config.lr_decay ** i
                for i in range(len(decay_epochs) + 1)])


def compile_model(model, config, steps_per_epoch):
    """Compiles the run's model with its optimisers (the paper's: SGD with
    momentum and step decay for the classifier, Adam for V)."""
    model.compile(
        optimizer=keras.optimizers.SGD(
            learning_rate_schedule(config, steps_per_epoch),
            momentum=config.momentum, nesterov=config.nesterov),
        meta_optimizer=keras.optimizers.Adam(config.meta_lr),
        weight_decay=config.weight_decay,
        meta_weight_decay=config.meta_weight_decay,
        steps_per_execution=config.steps_per_execution)


def corrected_epoch_weights(history, meta_warmup_steps, steps_per_epoch):
    """V's mean training weight in each epoch of `history` (read_history's
    rows) with a step after the warm-up: the epochs whose label correction
    mixed in the model's predictions."""
    return [row["mean_weight"] for epoch, row in enumerate(history)
            if (epoch + 1) * steps_per_epoch > meta_warmup_steps
            and "mean_weight" in row]


def load_run_weighting_net(path):
    """`load_weighting_net(path)` for the `weighting_net.keras` of a run.

    A file saved before V counted its meta steps does not say whether it
    took any: the config.json of the work directory that holds it says
    which method trained it (a ce or l2rw run's V is refused).

    Raises:
        ValueError: As `load_weighting_net`.
    """
    return load_weighting_net(
        path, saved_by_method=_method_of_run_holding(path))


def _method_of_run_holding(path):
    """The `method` in the config.json beside `path`, if there is one."""
    config_path = os.path.join(os.path.dirname(os.path.abspath(path)),
                               "config.json")
    try:
        with open(config_path) as file:
            return json.load(file).get("method")
    except (OSError, ValueError, AttributeError):
        return None


def check_loaded_weighting_net(config, weighting_net):
    """A loaded V keeps its kind and families (`vnet` and `vnet_families`
    are for a new V), but cannot satisfy vnet=class_aware if it is plain.

    Returns:
        `weighting_net`.
    """
    if (config.vnet == "class_aware"
            and not getattr(weighting_net, "class_aware", False)):
        raise ValueError(
            f"vnet=class_aware, but weighting_net={config.weighting_net} is a "
            "plain (MW-Net) V; a loaded V keeps its kind: drop "
            "vnet=class_aware or give a class-aware run's V.")
    return weighting_net


def build_model(config, num_classes, image_shape, label_counts=None,
                keep_average=False):
    """The run's `MetaWeightNet`: a zoo classifier and V (new or loaded).

    `label_counts` (the training labels per class, as given) decide the
    task families of a class-aware V (`--vnet=class_aware`); a loaded V
    keeps the families it was trained with. `keep_average`: keep the EMA
    classifier even without label correction (a pseudo-clean meta set is
    chosen with it).
    """
    model_kwargs = {"input_shape": tuple(image_shape), "seed": config.seed}
    if config.synchronized_batch_norm:
        model_kwargs["synchronized_batch_norm"] = True
    if config.dropout_rate is not None:
        model_kwargs["dropout_rate"] = config.dropout_rate
    if config.pretrained_weights:
        model_kwargs["weights"] = config.pretrained_weights
    classifier = zoo.build(config.model, num_classes, **model_kwargs)
    if config.weighting_net:
        # Checked with check_loaded_weighting_net before the data was read
        # (main.check_paths); loaded again here, in the strategy's scope.
        weighting_net = load_run_weighting_net(config.weighting_net)
    else:
        families = {}
        if config.vnet == "class_aware":
            if label_counts is None:
                raise ValueError("vnet=class_aware needs the training label "
                                 "counts per class (label_counts).")
            families = dict(
                class_families=task_families(label_counts,
                                             config.vnet_families),
                num_families=config.vnet_families)
        weighting_net = WeightingNet(
            hidden_sizes=[int(size) for size in config.vnet_hidden],
            seed=config.seed, **families)
    return MetaWeightNet(
        classifier, weighting_net, method=config.method,
        lookahead=config.lookahead,
        weight_normalization=config.weight_normalization,
        meta_interval=config.meta_interval,
        meta_warmup_steps=config.meta_warmup_steps,
        meta_scope=parse_meta_scope(config.meta_scope),
        real_step_weights=config.real_step_weights,
        label_correction=config.label_correction,
        ema_decay=(config.ema_decay
                   if config.label_correction or keep_average else None),
        ema_debias=config.ema_debias)
