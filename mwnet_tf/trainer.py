"""Meta-Weight-Net (Shu et al., NeurIPS 2019) as a Keras 3 model.

One training step, for a (possibly noisy) batch (x, y) and a clean meta batch
(x_m, y_m):

1. l_i = CE(f(x_i; w), y_i) and v_i = V(stop_grad(l_i); theta).
2. Lookahead: w_hat(theta) = w - lr * grad_w reduce(v_i * l_i), differentiable
   in theta.
3. theta <- meta optimiser step on grad_theta CE(f(x_m; w_hat), y_m).
4. w <- optimiser step on reduce(V(l_i; theta_new) * l_i), V taken as constant
   (with `real_step_weights="lookahead"`: V(l_i; theta), the gradient step 2
   already took).

With `label_correction` (CMW-Net-SL, Shu et al. 2023) the weighted loss of
steps 2 and 4 is v_i CE(f(x_i), y_i) + (1 - v_i) CE(f(x_i), p_i): the weight
V gives a label is how much the step trusts it, the rest goes to p_i, the
prediction of an exponential moving average (EMA) of the classifier's
weights, so V learns how much to trust a label and how much the model.

`train_step` below is these four steps; their mathematics is in
`mwnet_tf.meta_gradient`, which scope of layers the lookahead moves in
`mwnet_tf.layer_scope`, which kind of step runs when (the meta step every
k-th step, the warm-up) in `mwnet_tf.step_schedule`, what a step logs in
`mwnet_tf.step_metrics`, how the step fits into `keras.Model.fit` under
tf.distribute (keras-team/keras#20585) in `mwnet_tf.fit_workarounds`, and
the rules on the arguments in `mwnet_tf.arguments`.

Step 4 reuses the forward pass of step 1: the loss values are the same (w has
not moved), so only the backward pass is repeated with the new weights as
output gradients (with `real_step_weights="lookahead"`, not even that). This
and the BatchNorm state both come from one `stateless_call`, whose updated
moving statistics are written back once, by the real step, so the lookahead
never changes the classifier.
"""

import functools

import keras
from keras import ops

from mwnet_tf import arguments
from mwnet_tf import inputs
from mwnet_tf import layer_scope
from mwnet_tf import meta_gradient as mg
from mwnet_tf.fit_workarounds import FitWorkarounds
from mwnet_tf.step_metrics import StepMetrics
from mwnet_tf.step_schedule import StepSchedule
from mwnet_tf.weighting_net import WeightingNet
# Re-exported: the names users and earlier releases import from here.
from mwnet_tf.arguments import (  # noqa: F401
    METHODS, check_steps_per_execution, check_weighting_net_given)
from mwnet_tf.layer_scope import lookahead_layers, weight_layers  # noqa: F401
from mwnet_tf.meta_gradient import (  # noqa: F401
    LOOKAHEADS, WEIGHT_NORMALIZATIONS)

META_SCOPES = layer_scope.META_SCOPES
# CMW-Net-SL's EMA decay per step (its code's 0.997).
DEFAULT_EMA_DECAY = 0.997


@keras.saving.register_keras_serializable(package="mwnet_tf")
class MetaWeightNet(FitWorkarounds):
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
        meta_interval: Update theta every this many steps (1 = every step),
            counted from the end of the warm-up; the other steps reuse the
            current V. With several replicas each kind of step is its own
            traced function, chosen on the host before each call, so
            `steps_per_execution` must be 1.
        meta_warmup_steps: Take no meta step in the first this many steps:
            "mwnet" trains the classifier with V as it starts (initialised
            or loaded), "l2rw" with weights of 1. V learns to fall with the
            loss only once the loss tells corrupted labels from hard clean
            ones; meta steps before that teach it to rise, which later meta
            steps must undo. The logs of an epoch with no meta step have no
            meta metrics. Under several replicas as `meta_interval`.
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
        label_correction: Soft label correction (CMW-Net-SL): each example's
            loss is v_i CE(f(x_i), y_i) + (1 - v_i) CE(f(x_i), p_i), with
            v_i V's weight and p_i the EMA classifier's prediction
            (inference mode, no gradient), in the lookahead and the real
            step alike. During `meta_warmup_steps` p_i is the given label,
            i.e. plain CE (as CMW-Net-SL warms up). Needs method "mwnet"
            or "fixed".
        ema_decay: Keep an exponential moving average of the classifier's
            weights (trainable and BatchNorm statistics), updated after
            every step with this decay: the model of `label_correction`
            (which defaults it to 0.997) and of choosing a pseudo-clean
            meta set (`averaged_outputs`, `averaged_classifier`). None:
            no average, unless `label_correction`.
        ema_debias: Average only the weights the steps reached: the t-th
            update moves the average by (1 - decay) / (1 - decay^t) of its
            distance to the weights (the first copies them), which removes
            the share decay^t the plain average keeps of the random initial
            weights (22% after 500 steps at 0.997). Equal to the plain
            average once t is many times 1 / (1 - decay).
        real_step_weights: On a step that takes the meta step, which V
            weighs the real step (4). "updated" (default, the paper's
            algorithm): V after this step's meta update, at the cost of a
            second backward pass of the training batch. "lookahead": V
            before it, so that the gradient the lookahead stepped along is
            the real step's and that backward pass is saved (about 0.6 of a
            CE step per meta step); each meta update then acts from the
            next step on. With `meta_interval` k > 1 it changes which V one
            step in k uses. Needs `meta_scope="all"`; methods without
            MW-Net's meta step ignore it, as they ignore `meta_interval`.
        **kwargs: Passed to `keras.Model`.
    """

    def __init__(self, classifier, weighting_net=None, method="mwnet",
                 lookahead="sgd", weight_normalization="mean",
                 meta_interval=1, meta_scope="all", from_logits=True,
                 meta_warmup_steps=0, real_step_weights="updated",
                 label_correction=False, ema_decay=None, ema_debias=False,
                 **kwargs):
        super().__init__(**kwargs)
        arguments.check_method_options(method, lookahead, weight_normalization,
                                       meta_interval, meta_warmup_steps)
        arguments.check_label_correction(label_correction, ema_decay, method)
        arguments.check_ema_debias(ema_debias)
        arguments.check_classifier_built(classifier)
        arguments.check_outputs_are_logits(classifier, from_logits)
        arguments.check_weighting_net_given(method, weighting_net)
        # Ids, not the layers: a list of layers assigned here would be
        # tracked as sublayers of this model.
        self._lookahead_ids = layer_scope.lookahead_variable_ids(classifier,
                                                                 meta_scope)
        # After meta_scope's own check, whose message is the clearer one.
        arguments.check_real_step_weights(
            real_step_weights, method,
            list(meta_scope) if isinstance(meta_scope, tuple) else meta_scope)
        self.meta_scope = (list(meta_scope)
                           if isinstance(meta_scope, tuple) else meta_scope)
        self.classifier = classifier
        self.weighting_net = weighting_net or WeightingNet()
        arguments.check_families_fit(self.weighting_net, classifier)
        self.method = method
        self.lookahead = lookahead
        self.weight_normalization = weight_normalization
        self.meta_interval = int(meta_interval)
        self.meta_warmup_steps = int(meta_warmup_steps)
        # Which kind of step runs at step t (FitWorkarounds decides how a
        # step learns it).
        self.schedule = StepSchedule(method, self.meta_interval,
                                     self.meta_warmup_steps, label_correction)
        self.real_step_weights = real_step_weights
        self.from_logits = from_logits
        self.label_correction = label_correction
        self.ema_decay = (DEFAULT_EMA_DECAY
                          if label_correction and ema_decay is None
                          else ema_decay)
        self.ema_debias = ema_debias
        # Losses and weights live in the weighting net's dtype (float32 unless
        # asked otherwise), never in a bfloat16 compute dtype.
        self._loss_dtype = self.weighting_net.compute_dtype
        self._per_example_loss = functools.partial(
            mg.cross_entropy, from_logits=from_logits, dtype=self._loss_dtype)

        self.step_metrics = StepMetrics(method,
                                        self.schedule.uses_meta_batches)
        self._averaged = self._create_average()
        self.built = True

    def _create_average(self):
        """The EMA's variables, one per float variable of the classifier
        (None for the others, e.g. a dropout's seed, which the average
        takes as it is); None without `ema_decay`."""
        if self.ema_decay is None:
            return None
        averaged = []
        for index, variable in enumerate(
                self.classifier.trainable_variables
                + self.classifier.non_trainable_variables):
            if not variable.dtype.startswith("float"):
                averaged.append(None)
                continue
            # Every replica assigns the same value (the weights are
            # identical after each step): the first replica's is kept.
            average = self.add_weight(
                shape=variable.shape, dtype=variable.dtype,
                initializer="zeros", trainable=False,
                aggregation="only_first_replica", name=f"ema_{index}")
            average.assign(variable.value)
            averaged.append(average)
        return averaged

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
            weight_decay: L2 coefficient of the classifier (paper: 5e-4),
                added whatever `optimizer` is given (e.g. an Adam of your
                own); 0 leaves regularisation to the optimiser.
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
        arguments.check_lookahead_optimizer(self.lookahead,
                                            type(mg.unwrapped(optimizer)))
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
        arguments.check_steps_per_execution(
            self.method, self.meta_interval, self.meta_warmup_steps,
            self.steps_per_execution,
            self.distribute_strategy.num_replicas_in_sync,
            self.label_correction)
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

    def call(self, inputs, training=None):
        return self.classifier(inputs, training=training)

    @property
    def lookahead_variables(self):
        """The classifier variables the lookahead moves (`meta_scope`)."""
        variables = self.classifier.trainable_variables
        if self._lookahead_ids is None:
            return variables
        return [v for v in variables if id(v) in self._lookahead_ids]

    # ------------------------------------------------------ the training step

    def train_step(self, data):
        (x, y, corrupted), (x_meta, y_meta) = inputs.unpack(
            data, needs_meta=self.schedule.uses_meta_batches)
        # 1. Forward pass of the training batch: per-example losses l_i
        # (and, with label correction, the losses to the EMA model's
        # predictions).
        forward = self._forward(x, y, self._soft_targets(x, y))
        # 2-3. Lookahead and meta step on theta (every meta_interval-th
        # step), then the real step's weights and gradients: V(l_i; theta)
        # after the meta step (or before it, reusing the lookahead's
        # gradient); L2RW's from its own lookahead (1 during the warm-up);
        # 1 for CE.
        weights, coefficients, grads = self._when_meta_step_due(
            lambda: self._meta_step(forward, x_meta, y_meta),
            lambda: self._step_gradients(
                forward, self._example_weights(forward, x_meta, y_meta)))
        # 4. The classifier step on the weighted loss.
        self._classifier_step(forward, grads)
        self._update_average()
        return self._logs_for_keras(self.step_metrics.record_step(
            forward, y, coefficients, weights, corrupted))

    @property
    def _normalization(self):
        # L2RW's weights are normalised to sum 1 whatever the option says.
        return "sum" if self.method == "l2rw" else self.weight_normalization

    @property
    def _lookahead(self):
        return mg.Lookahead(self.optimizer, self.lookahead, self.weight_decay)

    def _forward(self, x, y, soft_targets=None):
        """Step 1, recorded for the lookahead and the real step."""
        return mg.Forward(
            self.classifier, x, y, self._per_example_loss,
            lookahead_variables=(None if self._lookahead_ids is None
                                 else self.lookahead_variables),
            loss_scale=mg.loss_scale_of(self.optimizer),
            soft_targets=soft_targets)

    def _soft_targets(self, x, y):
        """Label correction's p_i: the EMA classifier's predicted
        distribution; during the warm-up the given label (so the step is
        plain CE). None without label correction."""
        if not self.label_correction:
            return None
        return self._unless_warming_up(
            lambda: self._probabilities(self.averaged_outputs(x)),
            lambda: ops.one_hot(ops.cast(ops.reshape(y, (-1,)), "int32"),
                                self.classifier.output_shape[-1],
                                dtype=self._loss_dtype))

    def _probabilities(self, outputs):
        outputs = ops.cast(outputs, self._loss_dtype)
        return ops.softmax(outputs) if self.from_logits else outputs

    def _meta_step(self, forward, x_meta, y_meta):
        """Steps 2-3: one meta-optimiser step on theta; returns the real
        step's (weights, coefficients, scaled gradients)."""
        theta = self.weighting_net.trainable_variables
        meta_loss_scale = mg.loss_scale_of(self.meta_optimizer)
        meta = mg.meta_gradients(
            forward, self.weighting_net, self._lookahead, x_meta, y_meta,
            self._per_example_loss, self._normalization, meta_loss_scale)
        # L2 in the units of the scaled gradients: the optimiser unscales both.
        grads = mg.add_l2(meta.grads, theta, self.meta_weight_decay,
                          mg.replica_share(meta_loss_scale))
        self.meta_optimizer.apply(grads, theta)
        self.step_metrics.record_meta_step(meta.loss, y_meta, meta.outputs)
        if self.real_step_weights == "updated":
            return self._step_gradients(
                forward, self._example_weights(forward, x_meta, y_meta))
        # The lookahead's gradient is the real step's with V before this
        # update: the global gradient, as this replica's share at the
        # classifier optimiser's loss scale (which it sums and unscales).
        share = mg.replica_share(forward.loss_scale)
        return (meta.weights, mg.loss_coefficients(
                    meta.weights, self._normalization, forward.corrected),
                [g * ops.cast(share, g.dtype) for g in meta.step_gradients])

    def _step_gradients(self, forward, weights):
        """(weights, coefficients, scaled gradients) of the real step with
        the given weights: the backward pass of step 1."""
        coefficients = mg.loss_coefficients(weights, self._normalization,
                                            forward.corrected)
        return weights, coefficients, forward.scaled_gradients(coefficients)

    def _example_weights(self, forward, x_meta, y_meta):
        """The per-example weights of the real step (no gradient)."""
        if self.method == "ce":
            return ops.ones_like(forward.losses)
        if self.method == "l2rw":
            return self._unless_warming_up(
                lambda: self._l2rw_weights(forward, x_meta, y_meta),
                lambda: ops.ones_like(forward.losses))
        return ops.stop_gradient(self.weighting_net(
            ops.stop_gradient(forward.losses), forward.labels))

    def _l2rw_weights(self, forward, x_meta, y_meta):
        l2rw = mg.l2rw_weights(forward, self._lookahead, x_meta, y_meta,
                               self._per_example_loss)
        self.step_metrics.record_meta_step(l2rw.loss, y_meta, l2rw.outputs)
        return l2rw.weights

    def _classifier_step(self, forward, grads):
        """Step 4: the optimiser step along the weighted loss's gradients."""
        variables = forward.variables
        # As Keras's own step: gradients of the scaled loss, which the
        # optimiser unscales (a LossScaleOptimizer under mixed_float16 also
        # skips non-finite steps); L2 joins them in the same units.
        grads = mg.add_l2(grads, variables, self.weight_decay,
                          mg.replica_share(forward.loss_scale))
        self.optimizer.apply(grads, variables)
        for variable, value in zip(self.classifier.non_trainable_variables,
                                   forward.state):
            variable.assign(value)

    def _update_average(self):
        """The EMA step: average <- decay * average + (1 - decay) * w, after
        the classifier step (BatchNorm statistics included); with
        `ema_debias`, 1 - decay is divided by 1 - decay^t at the
        classifier's t-th step (a function of the checkpointed step count,
        so a resumed run averages as the uninterrupted one)."""
        if self._averaged is None:
            return
        decay, rate = self.ema_decay, 1.0 - self.ema_decay
        if self.ema_debias:
            step = ops.cast(mg.unwrapped(self.optimizer).iterations, "float32")
            rate = rate / (1.0 - ops.power(self.ema_decay, step))
            decay = 1.0 - rate
        for average, variable in zip(
                self._averaged, self.classifier.trainable_variables
                + self.classifier.non_trainable_variables):
            if average is not None:
                average.assign(ops.cast(decay, average.dtype) * average
                               + ops.cast(rate, average.dtype)
                               * variable.value)

    # ------------------------------------------------- metrics, for Keras

    @property
    def metrics(self):
        return self.step_metrics.model_metrics

    def make_train_function(self, force=False):
        # The step's logs have fixed keys (a traced function's outputs); the
        # unmeasured meta metrics are dropped here, on the host, after each
        # call, before Keras's callbacks (the progress bar among them) see
        # them.
        if self.train_function is not None and not force:
            return self.train_function
        super().make_train_function(force)
        train_steps = self.train_function

        def train_function(iterator):
            return self.step_metrics.measured_only(
                train_steps(iterator), self.distribute_strategy)

        self.train_function = train_function
        return self.train_function

    def reset_metrics(self):
        super().reset_metrics()
        self.step_metrics.forget_measured()

    def get_metrics_result(self):
        # Keras reports these, not the last call's logs, at the end of an
        # epoch when the two have the same keys: both leave out the
        # unmeasured meta metrics.
        return self.step_metrics.measured_only(
            dict(super().get_metrics_result()), self.distribute_strategy)

    # ---------------------------------------------------------- public API

    def test_step(self, data):
        # The classifier alone, as a compiled Keras model would evaluate it:
        # plain cross-entropy (not the weighted objective `loss` logs in
        # training), `sample_weight` honoured.
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y = inputs.integer_labels(y)
        outputs = self.classifier(x, training=False)
        return self._logs_for_keras(self.step_metrics.record_evaluation(
            self._per_example_loss(y, outputs), y, outputs, sample_weight))

    def fit(self, x=None, *args, **kwargs):
        """`keras.Model.fit`, after a one-line check of the labels it is
        about to read (`inputs.check_labels_before_fit`)."""
        y = args[0] if args else kwargs.get("y")
        try:
            num_classes = self.classifier.output_shape[-1]
        except AttributeError:  # A subclassed classifier does not say.
            num_classes = None
        if num_classes is not None:
            inputs.check_labels_before_fit(x, y, num_classes)
        return super().fit(x, *args, **kwargs)

    def export(self, filepath, format="tf_saved_model", **kwargs):
        """Exports the classifier for serving (`keras.Model.export`): what
        serves predictions is the classifier; V and the meta step are
        training-time only."""
        return self.classifier.export(filepath, format=format, **kwargs)

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
        return self.weighting_net(self._per_example_loss(y, outputs), y)

    def _averaged_values(self):
        """The EMA's value of every classifier variable (trainable first),
        the classifier's own where it keeps no average."""
        if self._averaged is None:
            raise ValueError(
                "This MetaWeightNet keeps no moving average of the "
                "classifier; build it with ema_decay= (e.g. 0.997) or "
                "label_correction=True.")
        variables = self.classifier.trainable_variables \
            + self.classifier.non_trainable_variables
        return [(average if average is not None else variable).value
                for average, variable in zip(self._averaged, variables)]

    def averaged_outputs(self, x):
        """The classifier's outputs at its EMA weights (inference mode);
        nothing is updated. Needs `ema_decay` (or `label_correction`)."""
        values = self._averaged_values()
        count = len(self.classifier.trainable_variables)
        outputs, _ = self.classifier.stateless_call(
            values[:count], values[count:], x, training=False)
        return outputs

    def averaged_classifier(self):
        """A copy of the classifier holding the EMA weights: the model whose
        predictions label correction trusts (save it, audit with it,
        export it). Needs `ema_decay` (or `label_correction`)."""
        values = self._averaged_values()
        copy = keras.models.clone_model(self.classifier)
        for target, value in zip(
                copy.trainable_variables + copy.non_trainable_variables,
                values):
            target.assign(value)
        return copy

    def compute_meta_gradients(self, x, y, x_meta, y_meta):
        """Gradients of the meta loss w.r.t. `weighting_net.trainable_variables`.

        The meta loss is the mean clean loss on (x_meta, y_meta) at the
        lookahead weights w_hat(theta); nothing is applied and no variable
        (BatchNorm statistics included) changes. L2 is not included.

        Returns:
            A list of tensors aligned with `weighting_net.trainable_variables`.
        """
        return mg.meta_gradients(
            self._forward(x, y), self.weighting_net, self._lookahead, x_meta,
            y_meta, self._per_example_loss, self._normalization).grads

    def weighting_function(self, losses, labels=None):
        """V evaluated on given loss values, e.g. `np.linspace(0, 10, 200)`
        (with a class-aware V, for given labels: each label's family's V)."""
        return self.weighting_net(
            ops.convert_to_tensor(losses, self._loss_dtype),
            None if labels is None else ops.convert_to_tensor(labels))

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
            "meta_warmup_steps": self.meta_warmup_steps,
            "meta_scope": self.meta_scope,
            "real_step_weights": self.real_step_weights,
            "from_logits": self.from_logits,
            "label_correction": self.label_correction,
            "ema_decay": self.ema_decay,
            "ema_debias": self.ema_debias,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("classifier", "weighting_net"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
