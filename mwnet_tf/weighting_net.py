"""The weighting function V(loss; theta) of Meta-Weight-Net, and CMW-Net's
class-aware one."""

import keras
import numpy as np
from keras import ops

from mwnet_tf.initializers import torch_linear_default


def _torch_linear_initializers(fan_in, seed):
    """The (kernel, bias) initialisers of a PyTorch `nn.Linear`.

    The official code builds V from `nn.Linear` layers, whose weights and biases
    are both U(-1/sqrt(fan_in), 1/sqrt(fan_in)). The starting point matters
    here: with one input, the hidden biases span [-1, 1] and decide where the
    ReLU kinks of the initial weighting curve lie. The bias gets `seed + 1`:
    Keras initialisers that share a seed draw the same numbers.
    """
    bias_seed = None if seed is None else seed + 1
    return (torch_linear_default(fan_in, seed),
            torch_linear_default(fan_in, bias_seed))


@keras.saving.register_keras_serializable(package="mwnet_tf")
class WeightingNet(keras.Model):
    """Maps per-example losses to per-example weights in (0, 1).

    An MLP, 1 -> hidden_sizes -> 1, ReLU hidden units and a sigmoid output, as in
    Shu et al. (2019). It runs in float32 (or the dtype given) whatever the global
    mixed-precision policy: its input, a loss value, can exceed the range where
    bfloat16 keeps the precision the curve needs.

    Usable on its own, e.g. to reweight losses of another training loop:

        weights = weighting_net(ops.stop_gradient(per_example_losses))

    A V remembers how many meta steps trained it (`meta_steps`, saved with
    it), so that a V that was never trained (a baseline run's random
    initialisation) is not reused as if it had learned something.

    Class-aware V (CMW-Net, Shu et al. 2023): with `class_families`, the
    hidden layers are a trunk shared by every class and the output layer has
    one sigmoid unit ("head") per task family of classes; an example's
    weight is its (given) label's family's head, so classes that noise
    treats differently can get different weighting functions. Then V takes
    the labels too, `weighting_net(losses, labels)`; a plain V ignores them.
    `task_families` groups classes as CMW-Net does.

    Args:
        hidden_sizes: Sizes of the hidden layers. The paper uses `(100,)`.
        seed: Optional integer seed of the initialisers.
        dtype: Dtype (policy) of the net. Defaults to "float32".
        meta_steps: Meta steps that trained these weights before: 0 for a
            new V; None when unknown (files saved before it was recorded).
        class_families: None for MW-Net's V (one output); for CMW-Net's,
            the task family of each class 0 .. K-1 (integers in
            [0, num_families)), e.g. `task_families(label_counts)`.
        num_families: Heads of a class-aware V; defaults to the largest
            family + 1.
        **kwargs: Passed to `keras.Model` (e.g. `name`).
    """

    def __init__(self, hidden_sizes=(100,), seed=None, dtype="float32",
                 meta_steps=0, class_families=None, num_families=None,
                 **kwargs):
        super().__init__(dtype=dtype, **kwargs)
        self._earlier_meta_steps = (None if meta_steps is None
                                    else int(meta_steps))
        # The optimiser that trains V now (`count_meta_steps_of`), held by a
        # plain object: Keras saves the state of every optimiser, layer or
        # container among a layer's attributes, and this one is not V's.
        self._meta_step_source = _StepsOf(None)
        hidden_sizes = tuple(int(size) for size in hidden_sizes)
        if not hidden_sizes or min(hidden_sizes) < 1:
            raise ValueError(
                "hidden_sizes must be a non-empty sequence of positive "
                f"integers, e.g. (100,); got {hidden_sizes}.")
        self.hidden_sizes = hidden_sizes
        self.seed = seed
        self.class_families, self.num_families = _check_families(
            class_families, num_families)
        self.hidden_layers = []
        fan_in = 1
        for index, size in enumerate(hidden_sizes):
            layer_seed = None if seed is None else seed + 2 * index
            kernel_init, bias_init = _torch_linear_initializers(fan_in, layer_seed)
            self.hidden_layers.append(keras.layers.Dense(
                size, activation="relu", kernel_initializer=kernel_init,
                bias_initializer=bias_init, dtype=dtype,
                name=f"hidden_{index}"))
            fan_in = size
        out_seed = None if seed is None else seed + 2 * len(hidden_sizes)
        kernel_init, bias_init = _torch_linear_initializers(fan_in, out_seed)
        # A class-aware V's heads are the units of one layer: each is a
        # 100 -> 1 sigmoid initialised as its own nn.Linear would be.
        self.output_layer = keras.layers.Dense(
            self.num_families, activation="sigmoid",
            kernel_initializer=kernel_init,
            bias_initializer=bias_init, dtype=dtype, name="weight")
        self.build((None,))

    def build(self, input_shape):
        shape = (None, 1)
        for layer in self.hidden_layers:
            layer.build(shape)
            shape = (None, layer.units)
        self.output_layer.build(shape)
        self.built = True

    @property
    def class_aware(self):
        return self.class_families is not None

    def call(self, losses, labels=None):
        """Returns the weight of each loss.

        Args:
            losses: Tensor of shape `(batch,)` or `(batch, 1)`.
            labels: The examples' (given, possibly noisy) integer labels,
                shape `(batch,)`; a class-aware V needs them, a plain V
                ignores them.

        Returns:
            Weights of shape `(batch,)`, in the net's compute dtype.
        """
        hidden = ops.reshape(ops.cast(losses, self.compute_dtype), (-1, 1))
        for layer in self.hidden_layers:
            hidden = layer(hidden)
        heads = self.output_layer(hidden)
        if not self.class_aware:
            return ops.reshape(heads, (-1,))
        if labels is None:
            raise ValueError(
                "This weighting net is class-aware (CMW-Net): call it with "
                "the examples' labels too, weighting_net(losses, labels).")
        family = ops.take(
            ops.convert_to_tensor(self.class_families, "int32"),
            ops.cast(ops.reshape(labels, (-1,)), "int32"))
        return ops.take_along_axis(heads, family[:, None], axis=1)[:, 0]

    def family_curves(self, losses):
        """V on given losses for each family: array `(num_families, len)`
        (one row for a plain V)."""
        losses = ops.convert_to_tensor(losses, self.compute_dtype)
        if not self.class_aware:
            return ops.convert_to_numpy(self(losses))[None]
        rows = []
        for family in range(self.num_families):
            label = self.class_families.index(family) if (
                family in self.class_families) else None
            if label is None:
                rows.append(np.full(losses.shape, np.nan))
                continue
            labels = ops.full(ops.shape(losses), label, "int32")
            rows.append(ops.convert_to_numpy(self(losses, labels)))
        return np.stack(rows)

    def count_meta_steps_of(self, optimizer):
        """Counts `optimizer`'s steps (its `iterations`) in `meta_steps`.

        `MetaWeightNet.compile` calls this with V's meta optimiser, whose
        iterations are exactly the meta steps taken (and are restored with
        it on resume). The steps of an optimiser it replaces (a second
        `compile`) stay counted.
        """
        if optimizer is self._meta_step_source.optimizer:
            return
        self._earlier_meta_steps = self.meta_steps
        self._meta_step_source = _StepsOf(optimizer)

    @property
    def earlier_meta_steps(self):
        """`meta_steps` without the current optimiser's (None if unknown)."""
        return self._earlier_meta_steps

    @property
    def meta_steps(self):
        """Meta steps that trained V so far; None if unknown (an old file)."""
        now = self._meta_step_source.steps()
        if self._earlier_meta_steps is None:
            return None if now == 0 else now
        return self._earlier_meta_steps + now

    def get_config(self):
        config = super().get_config()
        config.update({"hidden_sizes": list(self.hidden_sizes),
                       "seed": self.seed, "meta_steps": self.meta_steps})
        if self.class_aware:
            config.update({"class_families": list(self.class_families),
                           "num_families": self.num_families})
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.pop("trainable", None)
        # Files saved before V counted its meta steps: unknown, not 0.
        config.setdefault("meta_steps", None)
        return cls(**config)


def _check_families(class_families, num_families):
    """(class_families as a tuple or None, number of output heads)."""
    if class_families is None:
        if num_families not in (None, 1):
            raise ValueError(
                f"num_families={num_families} needs class_families (the "
                "family of each class); a plain V has one output.")
        return None, 1
    families = tuple(int(f) for f in class_families)
    if not families or min(families) < 0:
        raise ValueError(
            "class_families must give each class a family index >= 0; got "
            f"{list(class_families)[:10]}.")
    heads = max(families) + 1 if num_families is None else int(num_families)
    if max(families) >= heads:
        raise ValueError(
            f"class_families uses family {max(families)}, but num_families="
            f"{heads}; families must lie in [0, num_families).")
    return families, heads


def task_families(label_counts, num_families=3):
    """CMW-Net's task families: classes grouped by their number of labels.

    CMW-Net clusters the per-class counts of the (noisy) training labels
    with k-means (K = 3), because what noise or imbalance does to a class
    shows in how many labels it ends up with: classes that asymmetric noise
    fills, empties or leaves alone, or head, medium and tail classes. This
    is k-means on those counts solved exactly (one dimension: the best
    partition is contiguous in sorted order, found by dynamic programming),
    so it does not depend on a random start; families are numbered by
    their mean count (family 0 holds the classes with the fewest labels),
    and classes with equal counts share a family. With fewer distinct
    counts than families, each count is its own family and the last heads
    serve no class.

    Args:
        label_counts: Number of training labels of each class 0 .. K-1.
        num_families: Number of families (heads).

    Returns:
        A tuple with each class's family.
    """
    counts = np.asarray(label_counts, dtype=np.float64).ravel()
    if counts.size == 0 or (counts < 0).any():
        raise ValueError(
            f"label_counts must be non-negative counts, one per class; got "
            f"{counts.tolist()[:10]}.")
    if int(num_families) < 1:
        raise ValueError(f"num_families must be >= 1; got {num_families}.")
    values, weights = np.unique(counts, return_counts=True)
    groups = min(int(num_families), values.size)

    def cost(start, stop):
        """Sum of squared deviations of the counts with values[start:stop]."""
        w, v = weights[start:stop], values[start:stop]
        mean = np.sum(w * v) / np.sum(w)
        return float(np.sum(w * (v - mean) ** 2))

    n = values.size
    best = np.full((groups + 1, n + 1), np.inf)
    split = np.zeros((groups + 1, n + 1), dtype=int)
    best[0, 0] = 0.0
    for k in range(1, groups + 1):
        for stop in range(k, n + 1):
            for start in range(k - 1, stop):
                total = best[k - 1, start] + cost(start, stop)
                if total < best[k, stop]:
                    best[k, stop], split[k, stop] = total, start
    family_of_value = np.zeros(n, dtype=int)
    stop = n
    for k in range(groups, 0, -1):
        start = split[k, stop]
        family_of_value[start:stop] = k - 1
        stop = start
    return tuple(int(family_of_value[np.searchsorted(values, c)])
                 for c in counts)


class _StepsOf:
    """The steps an optimiser has taken; 0 for no optimiser."""

    def __init__(self, optimizer):
        self.optimizer = optimizer

    def steps(self):
        if self.optimizer is None:
            return 0
        return int(ops.convert_to_numpy(self.optimizer.iterations))


def check_trained(weighting_net, where="this weighting net"):
    """Raises ValueError if V is known never to have taken a meta step."""
    if getattr(weighting_net, "meta_steps", None) == 0:
        raise ValueError(
            f"{where} was never trained (0 meta steps): its weights are a "
            "random initialisation, e.g. the V of a ce or l2rw run; give "
            "the weighting_net.keras of an mwnet run.")


# Methods whose V never takes a meta step: what they save is untrained.
_UNTRAINED_BY = ("ce", "l2rw")


def load_weighting_net(path, allow_untrained=False, saved_by_method=None):
    """Loads a saved weighting net (a run's `weighting_net.keras`).

    With `MetaWeightNet(classifier, load_weighting_net(path), method="fixed")`
    a new classifier trains with the learned weights and no meta step; with
    `method="mwnet"` meta-learning continues from them.

    Args:
        path: The saved file.
        allow_untrained: Load a V that never took a meta step too (its file
            says 0 meta steps, or, for files saved before V counted them,
            `saved_by_method` is ce or l2rw).
        saved_by_method: The `method` of the training that saved the file
            (e.g. a run's `--method`), where the caller knows it, else None.
            Files saved before V counted its meta steps do not say whether
            it took any: one saved by a ce or l2rw run is refused as
            untrained.

    Raises:
        ValueError: The file does not hold a model that maps a batch of
            losses to one weight in [0, 1] each, or holds an untrained V.
    """
    try:
        net = keras.saving.load_model(path, compile=False)
        losses = ops.convert_to_tensor([0.0, 1.0, 10.0], "float32")
        probe = ops.convert_to_numpy(
            net(losses, ops.zeros((3,), "int32"))
            if getattr(net, "class_aware", False) else net(losses))
    except Exception as error:  # Keras raises many kinds for a bad file.
        raise ValueError(
            f"{path} is not a saved weighting net ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}); give the "
            "weighting_net.keras of an mwnet_tf run.") from error
    if probe.shape != (3,) or not ((probe >= 0) & (probe <= 1)).all():
        raise ValueError(
            f"{path} maps losses to outputs of shape {probe.shape} with "
            f"values {probe.ravel()[:3]}, not to one weight in [0, 1] per "
            "loss; give the weighting_net.keras of an mwnet_tf run.")
    if not allow_untrained:
        check_trained(net, where=path)
        if (getattr(net, "meta_steps", 0) is None
                and saved_by_method in _UNTRAINED_BY):
            raise ValueError(
                f"{path} was saved by a --method={saved_by_method} run, "
                "which does not train V: its weights are a random "
                "initialisation; give the weighting_net.keras of an mwnet "
                "run.")
    return net
