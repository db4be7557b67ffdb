"""Meta-Weight-Net (Shu et al., NeurIPS 2019) as a Keras 3 model.

One training step, for a (possibly noisy) batch (x, y) and a clean meta batch
(x_m, y_m):

1. l_i = CE(f(x_i; w), y_i) and v_i = V(stop_grad(l_i); theta).
2. Lookahead: w_hat(theta) = w - lr * grad_w reduce(v_i * l_i), differentiable
   in theta.
3. theta <- meta optimiser step on grad_theta CE(f(x_m; w_hat), y_m).
4. w <- optimiser step on reduce(V(l_i; theta_new) * l_i), V taken as constant.

Step 4 reuses the forward pass of step 1: the loss values are the same (w has
not moved), so only the backward pass is repeated with the new weights as
output gradients. This and the BatchNorm state both come from one
`stateless_call`, whose updated moving statistics are written back once, by
the real step, so the lookahead never changes the classifier.

`meta_scope` restricts the lookahead to the top of the classifier (FaMUS, Xu
et al. 2021; FSR, Zhang & Pfister 2021): only the variables of the chosen
layers move to w_hat, the others stay at w. Steps 2-3 are then recorded on
tapes that watch only those variables (and theta), so both the lookahead
gradient and the second-order meta backward stop at the lowest looked-ahead
layer instead of running through the whole network.
"""

import collections
import contextlib
import numbers

import keras
import tensorflow as tf
from keras import ops

from mwnet_tf import distribute as distribute_lib
from mwnet_tf import keras_compat
from mwnet_tf.weighting_net import WeightingNet

METHODS = ("mwnet", "l2rw", "ce", "fixed")
META_SCOPES = ("all", "head")
LOOKAHEADS = ("sgd", "optimizer")
WEIGHT_NORMALIZATIONS = ("mean", "sum")


# The training-mode forward pass of step 1, kept for the steps that follow.
_Forward = collections.namedtuple(
    "_Forward", ["tape", "lookahead_tape", "outputs", "losses", "state"])


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(
            f"{name} must be one of {', '.join(map(repr, choices))}; "
            f"got {value!r}.")


def _num_replicas():
    context = tf.distribute.get_replica_context()
    return 1 if context is None else context.num_replicas_in_sync


def _sum_over_replicas(values):
    """All-reduces (differentiably) across replicas; identity on one replica."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return values
    return context.all_reduce(tf.distribute.ReduceOp.SUM, values)


def _layers_in_order(layer):
    """Every sublayer, depth-first, each nested model's own layers in its
    order (Keras's recursive flattening reverses them inside nested models,
    which would put a nested backbone's stem at the top)."""
    seen = set()

    def walk(parent):
        for child in keras_compat.flatten_layers(parent, include_self=False,
                                                 recursive=False):
            if id(child) not in seen:  # A shared layer counts once.
                seen.add(id(child))
                yield child
                yield from walk(child)

    return walk(layer)


def weight_layers(model):
    """The layers of `model` that own trainable weights, input to output.

    Nested models and layers are flattened; for functional and Sequential
    models the order is the graph's topological order, for subclassed models
    the order in which `__init__` assigned the layers.
    """
    owners = []
    for layer in _layers_in_order(model):
        children = keras_compat.flatten_layers(layer, include_self=False,
                                               recursive=True)
        inherited = {id(v) for child in children
                     for v in child.trainable_weights}
        if any(id(v) not in inherited for v in layer.trainable_weights):
            owners.append(layer)
    return owners


def lookahead_layers(classifier, meta_scope):
    """The layers whose variables the lookahead moves; None means all.

    Args:
        classifier: A built Keras model.
        meta_scope: "all"; "head" (the last layer that owns weights); an
            integer k (the last k such layers); or a list of layer names
            (any layer, nested models included: all its weights).

    Raises:
        ValueError: `meta_scope` is of none of these forms, asks for more
            layers than own weights, or names a layer the classifier lacks.
    """
    if isinstance(meta_scope, str) and meta_scope in META_SCOPES:
        if meta_scope == "all":
            return None
        meta_scope = 1
    owners = weight_layers(classifier)
    if (isinstance(meta_scope, numbers.Integral)
            and not isinstance(meta_scope, bool)):
        if not 1 <= meta_scope <= len(owners):
            raise ValueError(
                f"meta_scope={meta_scope} must be between 1 and "
                f"{len(owners)}, the number of layers of "
                f"{classifier.name!r} that own trainable weights.")
        return owners[-int(meta_scope):]
    if (isinstance(meta_scope, (list, tuple)) and meta_scope
            and all(isinstance(name, str) for name in meta_scope)):
        by_name = {layer.name: layer for layer in keras_compat.flatten_layers(
            classifier, include_self=False, recursive=True)}
        missing = [name for name in meta_scope if name not in by_name]
        if missing:
            raise ValueError(
                f"meta_scope names {', '.join(map(repr, missing))}, not "
                f"layers of {classifier.name!r}; its top layers with weights "
                f"are {', '.join(repr(l.name) for l in owners[-5:])}.")
        return [by_name[name] for name in meta_scope]
    raise ValueError(
        'meta_scope must be "all", "head", a positive integer (the last k '
        f"layers with weights) or a list of layer names; got {meta_scope!r}.")


def _unwrapped(optimizer):
    """The optimiser inside a LossScaleOptimizer (mixed_float16), or itself."""
    return getattr(optimizer, "inner_optimizer", optimizer)


def _add_l2(grads, variables, weight_decay, scale):
    """PyTorch-style L2: weight_decay * w added to the gradient of every weight.

    `scale` multiplies the term: 1 / num_replicas, as the optimiser sums
    gradients over replicas and each replica contributes its share, times
    the loss scale when the gradients it joins are scaled.
    """
    if not weight_decay:
        return list(grads)
    return [g + ops.cast(weight_decay * scale, v.dtype) * v
            for g, v in zip(grads, variables)]


@keras.saving.register_keras_serializable(package="mwnet_tf")
class MetaWeightNet(keras.Model):
    """Wraps a classifier and trains it with Meta-Weight-Net reweighting.

    `fit` takes a dataset of `((x, y), (x_meta, y_meta))` or
    `((x, y, corrupted), (x_meta, y_meta))` elements, where `corrupted` is an
    optional per-example flag (1 for a corrupted label) used only for metrics;
    `mwnet_tf.with_meta` builds such a dataset. `evaluate` and `predict` take
    ordinary `(x, y)` and `x`, and run the classifier alone.

    Under `tf.distribute.MirroredStrategy` or `MultiWorkerMirroredStrategy`
    each replica runs the step on its slice of both batches. The lookahead
    gradient (and, with `weight_normalization="sum"`, the weight sum) is
    all-reduced so that every replica looks ahead to the same w_hat as one
    device would; losses are scaled by 1 / num_replicas. What stays per
    replica is what Keras keeps per replica: BatchNorm batch statistics are
    computed over each replica's slice of the training batch and of the meta
    batch, unless the layers are `BatchNormalization(synchronized=True)`;
    then, as without BatchNorm, N replicas match one device.

    Args:
        classifier: A built Keras model mapping inputs to logits (or to
            probabilities with `from_logits=False`). Functional, Sequential and
            subclassed models all work; the lookahead runs it through
            `stateless_call`, so its layers need no rewriting.
        weighting_net: The weighting function V. Defaults to
            `WeightingNet(hidden_sizes=(100,))`.
        method: "mwnet" (Meta-Weight-Net), "l2rw" (Learning to Reweight, Ren
            et al. 2018: per-example weights from the meta-gradient, clipped at
            zero and normalised to sum 1; `weighting_net` is unused) or "ce"
            (all weights 1 and no meta step: the baseline, through the same
            code) or "fixed" (the weights of a given, already learned
            `weighting_net`, kept frozen: no meta step, so a step costs a CE
            step; the meta batches are not used. CMW-Net, Shu et al. 2023,
            reuses a learned V this way).
        lookahead: "sgd" looks ahead with a plain SGD step at the optimiser's
            current learning rate (the official MW-Net.py); "optimizer" takes
            the step the classifier's `keras.optimizers.SGD` would take,
            momentum, Nesterov and L2 included (as later implementations do).
        weight_normalization: "mean" uses mean_i(v_i * l_i) (MW-Net.py);
            "sum" uses sum_i(v_i * l_i) / sum_i(v_i) (the paper's appendix).
        meta_interval: Update theta every this many steps (1 = every step);
            the other steps reuse the current V. With several replicas the
            two kinds of step are two traced functions, chosen on the host
            before each call, so `steps_per_execution` must be 1.
        meta_scope: Which classifier variables the lookahead moves. "all"
            (default) is the exact algorithm. "head" (the last layer that
            owns weights), an integer k (the last k such layers, see
            `weight_layers`) or a list of layer names look ahead through the
            top of the network only: the other variables stay at w, the meta
            loss is still the whole network's clean loss at the looked-ahead
            weights, and the meta-gradient's backward passes stop at the
            lowest looked-ahead layer, so a step costs about one CE step plus
            a forward pass of the meta batch.
        from_logits: Whether the classifier outputs logits.
        **kwargs: Passed to `keras.Model`.
    """

    def __init__(self, classifier, weighting_net=None, method="mwnet",
                 lookahead="sgd", weight_normalization="mean",
                 meta_interval=1, meta_scope="all", from_logits=True,
                 **kwargs):
        super().__init__(**kwargs)
        _check_choice("method", method, METHODS)
        _check_choice("lookahead", lookahead, LOOKAHEADS)
        _check_choice("weight_normalization", weight_normalization,
                      WEIGHT_NORMALIZATIONS)
        if int(meta_interval) != meta_interval or meta_interval < 1:
            raise ValueError(
                f"meta_interval must be a positive integer; got {meta_interval!r}.")
        if not classifier.built:
            raise ValueError(
                "The classifier must be built before it is wrapped: give it an "
                "keras.Input or call it once on a batch.")
        if method == "fixed" and weighting_net is None:
            raise ValueError(
                'method="fixed" trains with the weights of a learned V: pass '
                "it as weighting_net, e.g. keras.models.load_model("
                '"weighting_net.keras").')
        scoped_layers = lookahead_layers(classifier, meta_scope)
        # Ids, not the layers: a list of layers assigned here would be
        # tracked as sublayers of this model.
        self._lookahead_ids = None if scoped_layers is None else frozenset(
            id(v) for layer in scoped_layers for v in layer.weights)
        self.meta_scope = (list(meta_scope)
                           if isinstance(meta_scope, tuple) else meta_scope)
        self.classifier = classifier
        self.weighting_net = weighting_net or WeightingNet()
        self.method = method
        self.lookahead = lookahead
        self.weight_normalization = weight_normalization
        self.meta_interval = int(meta_interval)
        # Set per call when the host chooses the kind of step (see
        # `_meta_step_chosen_on_host`).
        self._with_meta_step = True
        self.from_logits = from_logits
        # Losses and weights live in the weighting net's dtype (float32 unless
        # asked otherwise), never in a bfloat16 compute dtype.
        self._loss_dtype = self.weighting_net.compute_dtype

        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(
            name="accuracy")
        self.meta_loss_tracker = keras.metrics.Mean(name="meta_loss")
        self.meta_accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(
            name="meta_accuracy")
        self.mean_weight_tracker = keras.metrics.Mean(name="mean_weight")
        self.clean_weight_tracker = keras.metrics.Mean(name="clean_weight")
        self.corrupted_weight_tracker = keras.metrics.Mean(
            name="corrupted_weight")
        self.built = True

    # ------------------------------------------------------------------ setup

    def compile(self, optimizer=None, meta_optimizer=None, weight_decay=5e-4,
                meta_weight_decay=1e-4, **kwargs):
        """Configures both optimisers.

        Weight decay is L2 added to the gradient (PyTorch's `weight_decay`, as
        in the paper), not Keras's decoupled decay.

        Args:
            optimizer: Classifier optimiser. Defaults to the paper's SGD, lr
                0.1, momentum 0.9, Nesterov.
            meta_optimizer: Weighting-net optimiser. Defaults to the paper's
                Adam, lr 1e-3.
            weight_decay: L2 coefficient of the classifier (paper: 5e-4).
            meta_weight_decay: L2 coefficient of the weighting net (paper: 1e-4).
            **kwargs: Passed to `keras.Model.compile` (e.g. `steps_per_execution`,
                `jit_compile`). `loss` and `metrics` are fixed by the method.
        """
        for reserved in ("loss", "metrics", "loss_weights"):
            if kwargs.get(reserved) is not None:
                raise ValueError(
                    f"MetaWeightNet.compile does not take `{reserved}`: the "
                    "loss is the per-example cross-entropy and the metrics are "
                    "built in.")
        if optimizer is None:
            optimizer = keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True)
        if meta_optimizer is None:
            meta_optimizer = keras.optimizers.Adam(1e-3)
        optimizer = keras.optimizers.get(optimizer)
        if self.lookahead == "optimizer" and not isinstance(
                _unwrapped(optimizer), keras.optimizers.SGD):
            raise ValueError(
                'lookahead="optimizer" needs a keras.optimizers.SGD classifier '
                f"optimizer; got {type(_unwrapped(optimizer)).__name__}. Use "
                'lookahead="sgd" with other optimisers.')
        # Under mixed_float16 Keras wraps the classifier's optimiser in a
        # LossScaleOptimizer (auto_scale_loss); the meta-gradient runs through
        # the same float16 network, so V's optimiser gets its own loss scale.
        super().compile(optimizer=optimizer, **kwargs)
        meta_optimizer = keras.optimizers.get(meta_optimizer)
        if (isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer)
                and not isinstance(meta_optimizer,
                                   keras.optimizers.LossScaleOptimizer)):
            meta_optimizer = keras.optimizers.LossScaleOptimizer(
                meta_optimizer, name="meta_loss_scale_optimizer")
        self.meta_optimizer = meta_optimizer
        if self.method == "mwnet" and hasattr(self.weighting_net,
                                              "count_meta_steps_of"):
            # Saved with V: how many meta steps trained it.
            self.weighting_net.count_meta_steps_of(meta_optimizer)
        if (self.method == "mwnet" and self.meta_interval > 1
                and self.distribute_strategy.num_replicas_in_sync > 1
                and self.steps_per_execution != 1):
            raise ValueError(
                "meta_interval > 1 under a multi-replica strategy chooses the "
                "meta step between calls of the train function, so it needs "
                f"steps_per_execution=1; got {self.steps_per_execution}.")
        self.weight_decay = float(weight_decay)
        self.meta_weight_decay = float(meta_weight_decay)
        # Build now, outside any tf.function, so that the slots exist for the
        # classifier's (resp. V's) variables only.
        with self.distribute_strategy.scope():
            self.optimizer.build(self.classifier.trainable_variables)
            self.meta_optimizer.build(self.weighting_net.trainable_variables)

    def get_compile_config(self):
        config = super().get_compile_config() or {}
        config.update({
            "meta_optimizer": keras.saving.serialize_keras_object(
                self.meta_optimizer),
            "weight_decay": self.weight_decay,
            "meta_weight_decay": self.meta_weight_decay,
        })
        return config

    def compile_from_config(self, config):
        config = dict(config)
        for key in ("optimizer", "meta_optimizer"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        for unused in ("loss", "metrics", "loss_weights", "weighted_metrics"):
            config.pop(unused, None)
        self.compile(**config)

    # ------------------------------------------- Keras under tf.distribute

    def _meta_step_chosen_on_host(self):
        """Whether the steps with and without a meta step are two functions.

        A conditional meta step in the graph would put the optimiser's
        cross-replica merge inside `tf.cond`, which tf.distribute does not
        support; with several replicas, `make_train_function` traces both
        kinds of step and picks one per call instead. On one device it does
        so too whenever each call runs one step: a step without the meta
        step is then a plain fixed-V step, where inside `tf.cond` it cost
        about a third more (BENCHMARKS.md, "Fast MW-Net"). Several steps
        per call keep `tf.cond`.
        """
        if not (self.method == "mwnet" and self.meta_interval > 1):
            return False
        return (self.distribute_strategy.num_replicas_in_sync > 1
                or self.steps_per_execution == 1)

    def make_train_function(self, force=False):
        if not self._meta_step_chosen_on_host():
            return super().make_train_function(force)
        if self.train_function is not None and not force:
            return self.train_function
        functions = {}
        for with_meta_step in (True, False):
            super().make_train_function(force=True)
            functions[with_meta_step] = self.train_function

        def train_function(iterator):
            # Read on the host, before the step: the step about to run is
            # iteration `iterations`, as in the single-replica tf.cond.
            step = int(self.optimizer.iterations.numpy())
            self._with_meta_step = step % self.meta_interval == 0
            # Each function traces (once) with the flag it is called with.
            return functions[self._with_meta_step](iterator)

        self.train_function = train_function
        return self.train_function

    # A private Keras method: keras_compat.MODEL_MAYBE_SYMBOLIC_BUILD.
    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # keras-team/keras#20585: under MultiWorkerMirroredStrategy Keras's
        # method reduces the first distributed batch with
        # strategy.reduce(..., axis=None), which cannot convert its PerReplica
        # values, before building the model symbolically. There is nothing to
        # build: the classifier is built before it is wrapped, V on creation,
        # both optimisers in `compile`, and there are no compiled metrics.
        if distribute_lib.is_multi_worker(self.distribute_strategy):
            return
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def _logs_for_keras(self, logs):
        """The step's logs, shaped for Keras's reduction over replicas.

        keras-team/keras#20585: under MultiWorkerMirroredStrategy Keras
        reduces step outputs with strategy.reduce("MEAN", value, axis=0),
        which fails on scalars. As vectors of one element they reduce to the
        scalar mean over replicas, which is what Keras reports under
        MirroredStrategy.
        """
        if not distribute_lib.is_multi_worker(self.distribute_strategy):
            return logs
        return {name: ops.reshape(value, (1,)) for name, value in logs.items()}

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy_tracker,
                self.meta_loss_tracker, self.meta_accuracy_tracker,
                self.mean_weight_tracker, self.clean_weight_tracker,
                self.corrupted_weight_tracker]

    def call(self, inputs, training=None):
        return self.classifier(inputs, training=training)

    def fit(self, x=None, *args, **kwargs):
        """`keras.Model.fit`; `shuffle` defaults to False for tf.data input.

        Keras ignores `shuffle` for a `tf.data.Dataset` (such as what
        `with_meta` builds; the dataset shuffles itself) but warns about
        its default, True. Other input keeps Keras's default.
        """
        # Passed positionally, `shuffle` is args[7] (y, batch_size, epochs,
        # verbose, callbacks, validation_split, validation_data come first).
        if (len(args) < 8 and "shuffle" not in kwargs and isinstance(
                x, (tf.data.Dataset, tf.distribute.DistributedDataset))):
            kwargs["shuffle"] = False
        return super().fit(x, *args, **kwargs)

    @property
    def lookahead_variables(self):
        """The classifier variables the lookahead moves (`meta_scope`)."""
        variables = self.classifier.trainable_variables
        if self._lookahead_ids is None:
            return variables
        return [v for v in variables if id(v) in self._lookahead_ids]

    # ------------------------------------------------------ the training step

    def train_step(self, data):
        (x, y, corrupted), (x_meta, y_meta) = self._unpack(data)
        # 1. Forward pass of the training batch: per-example losses l_i.
        forward = self._forward(x, y)
        # 2-3. Lookahead and meta step, giving the real step's weights.
        weights = self._example_weights(forward, x_meta, y_meta)
        # 4. The classifier step on the weighted loss.
        coefficients = self._loss_coefficients(weights)
        self._classifier_update(forward, coefficients)
        return self._update_metrics(forward, y, coefficients, weights,
                                    corrupted)

    @staticmethod
    def _unpack(data):
        if isinstance(data, tuple) and len(data) == 3 and data[1] is None \
                and data[2] is None:
            data = data[0]  # train_on_batch(x) packs (x, None, None).
        try:
            train, meta = data
            x, y = train[0], train[1]
            corrupted = train[2] if len(train) > 2 else None
            x_meta, y_meta = meta
        except (TypeError, ValueError) as error:
            raise ValueError(
                "MetaWeightNet.fit expects elements ((x, y), (x_meta, y_meta)) "
                "or ((x, y, corrupted), (x_meta, y_meta)); build them with "
                "mwnet_tf.with_meta(train_ds, meta_ds).") from error
        return (x, y, corrupted), (x_meta, y_meta)

    def _forward(self, x, y):
        """Training-mode forward pass, recorded for the steps that follow.

        Returns:
            A `_Forward`: `tape` (persistent) differentiates `losses` w.r.t.
            every trainable variable, for the real step; `lookahead_tape`
            w.r.t. `lookahead_variables`, for the lookahead (the same tape
            when they are all); `state` holds the non-trainable values
            (BatchNorm moving statistics, RNG state) after this pass, not yet
            assigned.
        """
        trainable = self.classifier.trainable_variables
        state = [v.value for v in self.classifier.non_trainable_variables]
        tape = tf.GradientTape(persistent=True)
        lookahead_tape = tape
        with contextlib.ExitStack() as recording:
            recording.enter_context(tape)
            if self._lookahead_ids is not None:
                # Records only what depends on the looked-ahead variables, so
                # that differentiating it never runs below the lowest of them.
                lookahead_tape = recording.enter_context(
                    tf.GradientTape(watch_accessed_variables=False))
                lookahead_tape.watch([v.value for v in
                                      self.lookahead_variables])
            outputs, updated_state = self.classifier.stateless_call(
                trainable, state, x, training=True)
            losses = self._per_example_loss(y, outputs)
        return _Forward(tape, lookahead_tape, outputs, losses, updated_state)

    def _per_example_loss(self, y, outputs):
        outputs = ops.cast(outputs, self._loss_dtype)
        return keras.losses.sparse_categorical_crossentropy(
            y, outputs, from_logits=self.from_logits)

    def _example_weights(self, forward, x_meta, y_meta):
        """Steps 2-3: the per-example weights of the real step (no gradient)."""
        if self.method == "ce":
            return ops.ones_like(forward.losses)
        if self.method == "fixed":
            return ops.stop_gradient(
                self.weighting_net(ops.stop_gradient(forward.losses)))
        if self.method == "l2rw":
            return self._l2rw_weights(forward, x_meta, y_meta)
        if self.meta_interval == 1:
            self._meta_update(forward, x_meta, y_meta)
        elif self._meta_step_chosen_on_host():
            if self._with_meta_step:
                self._meta_update(forward, x_meta, y_meta)
        else:
            self._maybe_meta_update(forward, x_meta, y_meta)
        return ops.stop_gradient(
            self.weighting_net(ops.stop_gradient(forward.losses)))

    def _l2rw_weights(self, forward, x_meta, y_meta):
        """Learning-to-Reweight weights: -d meta_loss / d eps at eps = 0."""
        epsilon = ops.zeros_like(forward.losses)
        with tf.GradientTape(watch_accessed_variables=False) as meta_tape:
            meta_tape.watch(epsilon)
            meta_loss, meta_outputs = self._meta_objective(
                forward, epsilon, x_meta, y_meta)
            # The weights are normalised to sum 1, so the loss scale (which
            # keeps float16 gradients from underflowing) cancels.
            scaled_meta_loss = self.optimizer.scale_loss(meta_loss)
        self._record_meta_metrics(meta_loss, y_meta, meta_outputs)
        raw = ops.maximum(-meta_tape.gradient(scaled_meta_loss, epsilon), 0.0)
        return ops.stop_gradient(raw)

    def _meta_update(self, forward, x_meta, y_meta):
        """Step 3: one meta-optimiser step on theta."""
        theta = self.weighting_net.trainable_variables
        grads, meta_loss, meta_outputs = self._mwnet_meta_gradients(
            forward, x_meta, y_meta, scale_loss=True)
        # L2 in the units of the scaled gradients: the optimiser unscales both.
        grads = _add_l2(grads, theta, self.meta_weight_decay,
                        self.meta_optimizer.scale_loss(1.0) / _num_replicas())
        self.meta_optimizer.apply(grads, theta)
        self._record_meta_metrics(meta_loss, y_meta, meta_outputs)

    def _maybe_meta_update(self, forward, x_meta, y_meta):
        """Step 3 on every `meta_interval`-th step only."""
        def update():
            self._meta_update(forward, x_meta, y_meta)
            return ops.ones((), "bool")

        is_meta_step = ops.equal(
            self.optimizer.iterations % self.meta_interval, 0)
        tf.cond(is_meta_step, update, lambda: ops.zeros((), "bool"))

    def _mwnet_meta_gradients(self, forward, x_meta, y_meta, scale_loss):
        """d meta_loss / d theta, scaled by the meta optimiser's loss scale
        when `scale_loss` (its `apply` unscales them)."""
        theta = self.weighting_net.trainable_variables
        with tf.GradientTape(watch_accessed_variables=False) as meta_tape:
            meta_tape.watch([v.value for v in theta])
            weights = self.weighting_net(ops.stop_gradient(forward.losses))
            meta_loss, meta_outputs = self._meta_objective(
                forward, self._loss_coefficients(weights), x_meta, y_meta)
            target = (self.meta_optimizer.scale_loss(meta_loss) if scale_loss
                      else meta_loss)
        return meta_tape.gradient(target, theta), meta_loss, meta_outputs

    def _meta_objective(self, forward, coefficients, x_meta, y_meta):
        """Clean loss at the lookahead weights, as a function of `coefficients`.

        Variables outside `meta_scope` enter as they are, so a tape watching
        only theta (or epsilon) records nothing below the looked-ahead layers.

        Returns:
            (meta_loss, meta_outputs): `meta_loss` is this replica's share
            (mean over its meta slice / num_replicas).
        """
        moved = self.lookahead_variables
        # The lookahead gradient is taken at the classifier's loss scale, as
        # the real step's is, then unscaled: w_hat needs the true gradient.
        loss_scale = self.optimizer.scale_loss(1.0)
        grads = forward.lookahead_tape.gradient(
            forward.losses, moved, output_gradients=coefficients * loss_scale)
        grads = [g / ops.cast(loss_scale, g.dtype)
                 for g in _sum_over_replicas(grads)]
        looked_ahead = dict(zip(map(id, moved),
                                self._lookahead_weights(moved, grads)))
        weights = [looked_ahead.get(id(v), v)
                   for v in self.classifier.trainable_variables]
        meta_outputs, _ = self.classifier.stateless_call(
            weights, forward.state, x_meta, training=True)
        meta_losses = self._per_example_loss(y_meta, meta_outputs)
        meta_loss = ops.mean(meta_losses) / _num_replicas()
        return meta_loss, meta_outputs

    def _lookahead_weights(self, variables, grads):
        """w_hat = one optimiser-like step from w; differentiable in `grads`."""
        optimizer = _unwrapped(self.optimizer)
        lr = optimizer.learning_rate
        if self.lookahead == "sgd":
            return [v - ops.cast(lr, v.dtype) * g for v, g in zip(variables, grads)]
        # The Keras SGD update (velocity = mu * velocity - lr * g), with the L2
        # term the real step adds.
        grads = _add_l2(grads, variables, self.weight_decay, 1.0)
        momentum = optimizer.momentum
        looked_ahead = []
        for v, g in zip(variables, grads):
            lr_v = ops.cast(lr, v.dtype)
            if momentum == 0:
                looked_ahead.append(v - lr_v * g)
                continue
            velocity = optimizer.momentums[
                keras_compat.optimizer_variable_index(optimizer, v)]
            new_velocity = momentum * velocity - lr_v * g
            if optimizer.nesterov:
                looked_ahead.append(v + momentum * new_velocity - lr_v * g)
            else:
                looked_ahead.append(v + new_velocity)
        return looked_ahead

    def _loss_coefficients(self, weights):
        """d(reduced weighted loss) / d l_i for per-replica weights v_i.

        The weighted loss is linear in the losses, so its gradient w.r.t. w is
        the backward pass of the per-example losses with these coefficients as
        output gradients. Scaled so that summing over replicas gives the
        single-device quantity.
        """
        if self.weight_normalization == "sum" or self.method == "l2rw":
            total = _sum_over_replicas(ops.sum(weights))
            return weights / ops.maximum(total, 1e-12)
        global_batch = ops.cast(ops.shape(weights)[0] * _num_replicas(),
                                weights.dtype)
        return weights / global_batch

    def _classifier_update(self, forward, coefficients):
        """Step 4: the backward pass of step 1 with the final weights."""
        variables = self.classifier.trainable_variables
        # As Keras's own step: gradients of the scaled loss, which the
        # optimiser unscales (a LossScaleOptimizer under mixed_float16 also
        # skips non-finite steps); L2 joins them in the same units.
        loss_scale = self.optimizer.scale_loss(1.0)
        grads = forward.tape.gradient(
            forward.losses, variables,
            output_gradients=coefficients * loss_scale)
        grads = _add_l2(grads, variables, self.weight_decay,
                        loss_scale / _num_replicas())
        self.optimizer.apply(grads, variables)
        for variable, value in zip(self.classifier.non_trainable_variables,
                                   forward.state):
            variable.assign(value)

    def _update_metrics(self, forward, y, coefficients, weights, corrupted):
        """Updates the trackers; returns the logs of this method's metrics.

        The loss is the objective the classifier step descended, without L2,
        in single-device units.
        """
        self.loss_tracker.update_state(
            ops.sum(coefficients * forward.losses) * _num_replicas())
        self.accuracy_tracker.update_state(y, forward.outputs)
        if self.method == "l2rw":
            # Normalised weights sum to 1; scale so that 1 means "average".
            weights = coefficients * ops.cast(
                ops.shape(forward.losses)[0] * _num_replicas(), weights.dtype)
        self.mean_weight_tracker.update_state(weights)
        logs = ["loss", "accuracy", "mean_weight"]
        if corrupted is not None:
            corrupted = ops.cast(ops.reshape(corrupted, (-1,)), weights.dtype)
            self.clean_weight_tracker.update_state(
                weights, sample_weight=1.0 - corrupted)
            self.corrupted_weight_tracker.update_state(
                weights, sample_weight=corrupted)
            logs += ["clean_weight", "corrupted_weight"]
        if self.method in ("mwnet", "l2rw"):
            logs += ["meta_loss", "meta_accuracy"]
        return self._logs_for_keras(
            {m.name: m.result() for m in self.metrics if m.name in logs})

    def _record_meta_metrics(self, meta_loss, y_meta, meta_outputs):
        self.meta_loss_tracker.update_state(meta_loss * _num_replicas())
        self.meta_accuracy_tracker.update_state(y_meta, meta_outputs)

    # ---------------------------------------------------------- public API

    def test_step(self, data):
        x, y = data[0], data[1]
        outputs = self.classifier(x, training=False)
        self.loss_tracker.update_state(ops.mean(self._per_example_loss(y, outputs)))
        self.accuracy_tracker.update_state(y, outputs)
        return self._logs_for_keras({"loss": self.loss_tracker.result(),
                                     "accuracy": self.accuracy_tracker.result()})

    def sample_weights(self, x, y, training=False):
        """The weights V(l_i; theta) the current nets give a batch.

        Args:
            x, y: A batch of inputs and integer labels.
            training: Whether to compute the losses in training mode (batch
                statistics, dropout) as the training step does. Nothing is
                updated either way.

        Returns:
            Tensor `(batch,)` of weights in (0, 1).
        """
        state = [v.value for v in self.classifier.non_trainable_variables]
        outputs, _ = self.classifier.stateless_call(
            self.classifier.trainable_variables, state, x, training=training)
        return self.weighting_net(self._per_example_loss(y, outputs))

    def compute_meta_gradients(self, x, y, x_meta, y_meta):
        """Gradients of the meta loss w.r.t. `weighting_net.trainable_variables`.

        The meta loss is the mean clean loss on (x_meta, y_meta) at the
        lookahead weights w_hat(theta); nothing is applied and no variable
        (BatchNorm statistics included) changes. L2 is not included.

        Returns:
            A list of tensors aligned with `weighting_net.trainable_variables`.
        """
        grads, _, _ = self._mwnet_meta_gradients(
            self._forward(x, y), x_meta, y_meta, scale_loss=False)
        return grads

    def weighting_function(self, losses):
        """V evaluated on given loss values, e.g. `np.linspace(0, 10, 200)`."""
        return self.weighting_net(ops.convert_to_tensor(losses,
                                                        self._loss_dtype))

    # -------------------------------------------------------- serialisation

    def get_config(self):
        weighting_net = keras.saving.serialize_keras_object(self.weighting_net)
        if getattr(self.weighting_net, "earlier_meta_steps", None) is not None:
            # The meta optimiser's iterations are saved with the compiled
            # model and counted again once it is restored.
            weighting_net["config"]["meta_steps"] = (
                self.weighting_net.earlier_meta_steps)
        return {
            "name": self.name,
            "classifier": keras.saving.serialize_keras_object(self.classifier),
            "weighting_net": weighting_net,
            "method": self.method,
            "lookahead": self.lookahead,
            "weight_normalization": self.weight_normalization,
            "meta_interval": self.meta_interval,
            "meta_scope": self.meta_scope,
            "from_logits": self.from_logits,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("classifier", "weighting_net"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
