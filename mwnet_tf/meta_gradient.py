"""The mathematics of one Meta-Weight-Net step, as functions.

`MetaWeightNet.train_step` (trainer.py) composes these, and each is tested
on its own against finite differences of its definition
(tests/test_meta_gradient.py). For a training batch (x, y) and a clean meta
batch (x_m, y_m):

1. `Forward`: l_i = CE(f(x_i; w), y_i), recorded on tapes.
2. `meta_objective`: w_hat(c) = lookahead step from w along
   grad_w sum_i c_i l_i, then J(c) = mean CE(f(x_m; w_hat), y_m).
   `loss_coefficients` gives c from per-example weights.
3. `meta_gradients`: d J / d theta with c = coefficients(V(l; theta))
   (MW-Net); `l2rw_weights`: max(-d J / d c, 0) at c = 0 (Ren et al. 2018).
With label correction (CMW-Net-SL) every "sum_i c_i l_i" below is
sum_i c_i l_i + d_i CE(f(x_i), p_i), with p_i a slowly averaged model's
prediction and d_i = n (1 - v_i) (`CorrectedCoefficients`): the lookahead
and the real step use the same corrected objective.

4. The real step descends sum_i c_i l_i, reusing the forward pass of 1
   (and, with `real_step_weights="lookahead"`, on a meta step the gradient
   the lookahead already took, with V's weights before the meta update).

Everything runs per replica. Under tf.distribute the sums one device would
take over the global batch are all-reduced (`sum_over_replicas`) and losses
are this replica's share (divided by the number of replicas), so N
replicas compute what one device would.

Loss scaling (mixed_float16): `Forward` takes every gradient of the
weighted loss at the classifier optimiser's loss scale, so that float16
gradients do not underflow, and unscales it where the mathematics needs the
true gradient (the lookahead); the real step hands its gradients to the
optimiser scaled, as Keras's own step does, and the optimiser unscales.
The meta-gradient is taken at the meta optimiser's scale (`meta_gradients`'
`loss_scale`), which that optimiser's `apply` divides out.
"""

import contextlib
from typing import NamedTuple

import keras
import tensorflow as tf
from keras import ops

from mwnet_tf import keras_compat

LOOKAHEADS = ("sgd", "optimizer")
WEIGHT_NORMALIZATIONS = ("mean", "sum")


def num_replicas():
    context = tf.distribute.get_replica_context()
    return 1 if context is None else context.num_replicas_in_sync


def sum_over_replicas(values):
    """All-reduces (differentiably) across replicas; identity on one replica."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return values
    return context.all_reduce(tf.distribute.ReduceOp.SUM, values)


def replica_share(loss_scale=1.0):
    """What turns a true gradient of the global batch into the gradient an
    optimiser's `apply` expects from this replica: its share (the
    optimiser sums over replicas) at the optimiser's loss scale (which it
    divides out). The one place the trainer converts units."""
    return loss_scale / num_replicas()


def add_l2(grads, variables, weight_decay, scale):
    """PyTorch-style L2: weight_decay * w added to the gradient of every weight.

    `scale` multiplies the term: 1 / num_replicas, as the optimiser sums
    gradients over replicas and each replica contributes its share, times
    the loss scale when the gradients it joins are scaled.
    """
    if not weight_decay:
        return list(grads)
    return [g + ops.cast(weight_decay * scale, v.dtype) * v
            for g, v in zip(grads, variables)]


def unwrapped(optimizer):
    """The optimiser inside a LossScaleOptimizer (mixed_float16), or itself."""
    return getattr(optimizer, "inner_optimizer", optimizer)


def loss_scale_of(optimizer):
    """The factor `optimizer` scales losses by (1.0 without loss scaling)."""
    return optimizer.scale_loss(1.0)


def cross_entropy(y, outputs, from_logits=True, dtype="float32"):
    """Per-example cross-entropy, computed in `dtype` (float32 even when the
    classifier computes in a 16-bit type): to integer labels [B], or to
    distributions over the classes [B, K] (soft targets)."""
    outputs = ops.cast(outputs, dtype)
    if len(y.shape) == len(outputs.shape):
        return keras.losses.categorical_crossentropy(
            ops.cast(y, dtype), outputs, from_logits=from_logits)
    return keras.losses.sparse_categorical_crossentropy(
        y, outputs, from_logits=from_logits)


class CorrectedCoefficients(NamedTuple):
    """Coefficients of the soft-label-corrected objective (CMW-Net-SL):
    sum_i label_i * CE(f(x_i), y_i) + model_i * CE(f(x_i), p_i), with p_i a
    model's prediction (`Forward`'s `soft_targets`). With weights v_i,
    label_i = n v_i and model_i = n (1 - v_i): the cross-entropy to the soft
    target v_i onehot(y_i) + (1 - v_i) p_i, reduced by the normaliser n."""

    label: object
    model: object


class Forward:
    """The training-mode forward pass of step 1, kept for the steps after it.

    One `stateless_call` of the classifier, recorded on a persistent tape
    that differentiates the per-example losses w.r.t. every trainable
    variable (the real step) and, when the lookahead moves only some of
    them, on a second tape that watches only those (so differentiating it
    never runs below the lowest looked-ahead layer).

    Attributes:
        classifier: The model.
        labels: y (a class-aware V weights by them).
        outputs: Its outputs on x.
        losses: Per-example losses l_i.
        state: The non-trainable values (BatchNorm moving statistics, RNG
            state) after this pass, not yet assigned to the classifier.
        variables: The classifier's trainable variables.
        lookahead_variables: The ones the lookahead moves.
        loss_scale: The classifier optimiser's loss scale (1.0 without).
    """

    def __init__(self, classifier, x, y, per_example_loss,
                 lookahead_variables=None, loss_scale=1.0, soft_targets=None):
        self.classifier = classifier
        self.labels = y
        self.variables = classifier.trainable_variables
        self.lookahead_variables = (self.variables if lookahead_variables is None
                                    else list(lookahead_variables))
        self.loss_scale = loss_scale
        state = [v.value for v in classifier.non_trainable_variables]
        self._tape = tf.GradientTape(persistent=True)
        self._lookahead_tape = self._tape
        with contextlib.ExitStack() as recording:
            recording.enter_context(self._tape)
            if lookahead_variables is not None:
                self._lookahead_tape = recording.enter_context(
                    tf.GradientTape(watch_accessed_variables=False))
                self._lookahead_tape.watch(
                    [v.value for v in self.lookahead_variables])
            self.outputs, self.state = classifier.stateless_call(
                self.variables, state, x, training=True)
            self.losses = per_example_loss(y, self.outputs)
            # CE to another model's predictions (label correction), on the
            # same forward pass; no gradient reaches the targets.
            self.target_losses = (
                None if soft_targets is None else per_example_loss(
                    ops.stop_gradient(soft_targets), self.outputs))

    @property
    def corrected(self):
        """Whether the objective mixes in the soft targets' losses."""
        return self.target_losses is not None

    def objective(self, coefficients):
        """sum_i c_i l_i (+ d_i CE(f(x_i), p_i) with `CorrectedCoefficients`)
        over this replica's examples."""
        if isinstance(coefficients, CorrectedCoefficients):
            return (ops.sum(coefficients.label * self.losses)
                    + ops.sum(coefficients.model * self.target_losses))
        return ops.sum(coefficients * self.losses)

    def scaled_gradients(self, coefficients, lookahead=False):
        """Gradients of loss_scale * `objective(coefficients)` w.r.t. the
        variables (the looked-ahead ones if `lookahead`), by the recorded
        backward pass with the coefficients as output gradients (the
        objective is linear in the losses); differentiable in
        `coefficients`. Corrected coefficients take one backward pass too:
        both losses' output gradients flow back through the network at once."""
        tape = self._lookahead_tape if lookahead else self._tape
        variables = self.lookahead_variables if lookahead else self.variables
        if isinstance(coefficients, CorrectedCoefficients):
            return tape.gradient(
                [self.losses, self.target_losses], variables,
                output_gradients=[coefficients.label * self.loss_scale,
                                  coefficients.model * self.loss_scale])
        return tape.gradient(self.losses, variables,
                             output_gradients=coefficients * self.loss_scale)

    def lookahead_gradients(self, coefficients):
        """True (unscaled) gradients of sum_i c_i l_i over the global batch
        w.r.t. the looked-ahead variables: every replica gets the same."""
        grads = sum_over_replicas(self.scaled_gradients(coefficients,
                                                        lookahead=True))
        return [g / ops.cast(self.loss_scale, g.dtype) for g in grads]


def loss_coefficients(weights, normalization="mean", corrected=False):
    """d(reduced weighted loss) / d l_i for this replica's weights v_i.

    "mean": mean_i(v_i l_i) over the global batch (MW-Net.py); "sum":
    sum_i(v_i l_i) / sum_i(v_i) (the paper's appendix; L2RW). Scaled so
    that summing over replicas gives the single-device quantity.

    With `corrected`, `CorrectedCoefficients`: the weight v_i goes to the
    given label's loss and 1 - v_i to the loss against the soft target,
    under the same normaliser (CMW-Net-SL's mean over the batch for "mean").
    """
    if normalization == "sum":
        normaliser = 1.0 / ops.maximum(sum_over_replicas(ops.sum(weights)),
                                       1e-12)
    elif normalization == "mean":
        normaliser = 1.0 / ops.cast(ops.shape(weights)[0] * num_replicas(),
                                    weights.dtype)
    else:
        raise ValueError(f"normalization must be one of "
                         f"{', '.join(map(repr, WEIGHT_NORMALIZATIONS))}; "
                         f"got {normalization!r}.")
    if corrected:
        return CorrectedCoefficients(label=weights * normaliser,
                                     model=(1.0 - weights) * normaliser)
    return weights * normaliser


class Lookahead:
    """w_hat = one step from w along given gradients, differentiable in them.

    Args:
        optimizer: The classifier's optimiser (its learning rate, and for
            rule="optimizer" its momentum slots).
        rule: "sgd", a plain SGD step at the optimiser's current learning
            rate (the official MW-Net.py); "optimizer", the step the
            classifier's `keras.optimizers.SGD` would take, momentum,
            Nesterov and L2 included.
        weight_decay: The L2 the real step adds (rule="optimizer" only).
    """

    def __init__(self, optimizer, rule="sgd", weight_decay=0.0):
        if rule not in LOOKAHEADS:
            raise ValueError(f"lookahead must be one of "
                             f"{', '.join(map(repr, LOOKAHEADS))}; got {rule!r}.")
        self.optimizer = unwrapped(optimizer)
        self.rule = rule
        self.weight_decay = weight_decay

    def __call__(self, variables, grads):
        optimizer = self.optimizer
        lr = optimizer.learning_rate
        if self.rule == "sgd":
            return [v - ops.cast(lr, v.dtype) * g
                    for v, g in zip(variables, grads)]
        # The Keras SGD update (velocity = mu * velocity - lr * g), with the
        # L2 term the real step adds.
        grads = add_l2(grads, variables, self.weight_decay, 1.0)
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


class MetaObjective(NamedTuple):
    """J(c) and what computing it gave on the way.

    Attributes:
        loss: This replica's share of the meta loss J (its mean over its
            meta slice / num_replicas).
        outputs: The classifier's outputs on the meta batch at w_hat.
        step_gradients: The true, global gradients of sum_i c_i l_i w.r.t.
            the looked-ahead variables: what the lookahead stepped along.
    """

    loss: object
    outputs: object
    step_gradients: list


def meta_objective(forward, coefficients, lookahead, x_meta, y_meta,
                   per_example_loss):
    """J(c): the clean loss at the weights one lookahead step along
    grad_w sum_i c_i l_i reaches; differentiable in `coefficients`.

    Variables outside the lookahead's scope enter as they are, so a tape
    watching only theta (or c) records nothing below the looked-ahead layers.
    The meta batch runs in training mode from the state after the forward
    pass (as MW-Net.py's meta model does); nothing is assigned.

    Returns:
        A `MetaObjective`.
    """
    moved = forward.lookahead_variables
    step_gradients = forward.lookahead_gradients(coefficients)
    looked_ahead = dict(zip(map(id, moved), lookahead(moved, step_gradients)))
    weights = [looked_ahead.get(id(v), v) for v in forward.variables]
    meta_outputs, _ = forward.classifier.stateless_call(
        weights, forward.state, x_meta, training=True)
    meta_loss = ops.mean(per_example_loss(y_meta, meta_outputs)) / num_replicas()
    return MetaObjective(meta_loss, meta_outputs, step_gradients)


class MetaGradients(NamedTuple):
    """MW-Net's meta-gradient and what the step after it can reuse.

    Attributes:
        grads: d J / d theta, aligned with the weighting net's trainable
            variables, at the meta optimiser's loss scale.
        loss, outputs: The meta loss (this replica's share) and outputs.
        weights: V(l; theta) before any update to theta (no gradient).
        step_gradients: What the lookahead stepped along (true, global; no
            gradient): the real step's gradient with `weights`.
    """

    grads: list
    loss: object
    outputs: object
    weights: object
    step_gradients: list


def meta_gradients(forward, weighting_net, lookahead, x_meta, y_meta,
                   per_example_loss, normalization="mean", loss_scale=1.0):
    """MW-Net's step 3 gradient: d J(coefficients(V(l; theta))) / d theta.

    Args:
        loss_scale: Multiplies J before differentiating (the meta
            optimiser's loss scale, which its `apply` divides out).

    Returns:
        A `MetaGradients`.
    """
    theta = weighting_net.trainable_variables
    with tf.GradientTape(watch_accessed_variables=False) as meta_tape:
        meta_tape.watch([v.value for v in theta])
        weights = weighting_net(ops.stop_gradient(forward.losses),
                                forward.labels)
        objective = meta_objective(
            forward, loss_coefficients(weights, normalization,
                                       forward.corrected), lookahead,
            x_meta, y_meta, per_example_loss)
        target = objective.loss * ops.cast(loss_scale, objective.loss.dtype)
    grads = meta_tape.gradient(target, theta)
    return MetaGradients(
        grads, objective.loss, objective.outputs, ops.stop_gradient(weights),
        [ops.stop_gradient(g) for g in objective.step_gradients])


class L2RWWeights(NamedTuple):
    """Learning to Reweight's raw weights (no gradient), the meta loss
    (this replica's share) and outputs they came from."""

    weights: object
    loss: object
    outputs: object


def l2rw_weights(forward, lookahead, x_meta, y_meta, per_example_loss):
    """Learning-to-Reweight's raw weights max(-d J / d c_i, 0) at c = 0.

    Normalised to sum 1 by `loss_coefficients(..., "sum")`, so the loss
    scale under which J is differentiated cancels.

    Returns:
        An `L2RWWeights`.
    """
    epsilon = ops.zeros_like(forward.losses)
    with tf.GradientTape(watch_accessed_variables=False) as meta_tape:
        meta_tape.watch(epsilon)
        objective = meta_objective(forward, epsilon, lookahead, x_meta,
                                   y_meta, per_example_loss)
        scaled = objective.loss * ops.cast(forward.loss_scale,
                                           objective.loss.dtype)
    raw = ops.maximum(-meta_tape.gradient(scaled, epsilon), 0.0)
    return L2RWWeights(ops.stop_gradient(raw), objective.loss,
                       objective.outputs)
