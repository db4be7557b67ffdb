"""The rules on MetaWeightNet's arguments, each checked here once.

`MetaWeightNet` calls these on construction and in `compile`; the runner's
flag layer calls the same functions, so a rule and its message live in one
place. Every check raises ValueError with a one-line message. `is_integer`
is the test the data stages and the zoo share.
"""

import numbers

import keras

from mwnet_tf.meta_gradient import LOOKAHEADS, WEIGHT_NORMALIZATIONS
from mwnet_tf.step_schedule import StepSchedule

METHODS = ("mwnet", "l2rw", "ce", "fixed")
# Which V weighs the real step of a step that takes the meta step.
REAL_STEP_WEIGHTS = ("updated", "lookahead")


def is_integer(value):
    """Whether `value` is an integer (Python or NumPy), and not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_fraction(value, what):
    """Raises ValueError unless `value` is a number in (0, 1]; the message
    says `what` it is."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
            0 < value <= 1):
        raise ValueError(f"{what}, in (0, 1]; got {value!r}.")


def check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(
            f"{name} must be one of {', '.join(map(repr, choices))}; "
            f"got {value!r}.")


def check_method_options(method, lookahead, weight_normalization,
                         meta_interval, meta_warmup_steps):
    """The options of the algorithm, each against its allowed values."""
    check_choice("method", method, METHODS)
    check_choice("lookahead", lookahead, LOOKAHEADS)
    check_choice("weight_normalization", weight_normalization,
                 WEIGHT_NORMALIZATIONS)
    if int(meta_interval) != meta_interval or meta_interval < 1:
        raise ValueError(
            f"meta_interval must be a positive integer; got {meta_interval!r}.")
    if int(meta_warmup_steps) != meta_warmup_steps or meta_warmup_steps < 0:
        raise ValueError("meta_warmup_steps must be a non-negative integer; "
                         f"got {meta_warmup_steps!r}.")


def check_label_correction(label_correction, ema_decay, method):
    """Label correction mixes V's weight with an averaged model's
    prediction, so it needs a V (mwnet or fixed) and a decay in (0, 1)."""
    if not isinstance(label_correction, bool):
        raise ValueError("label_correction must be True or False; got "
                         f"{label_correction!r}.")
    if ema_decay is not None and (
            not isinstance(ema_decay, numbers.Real) or isinstance(
                ema_decay, bool) or not 0.0 < ema_decay < 1.0):
        raise ValueError(
            f"ema_decay must be a number in (0, 1), e.g. 0.997; got "
            f"{ema_decay!r}.")
    if label_correction and method not in ("mwnet", "fixed"):
        raise ValueError(
            "label_correction trusts each label by V's weight, so it needs "
            f"method='mwnet' or 'fixed'; got method={method!r}.")


def check_ema_debias(ema_debias):
    if not isinstance(ema_debias, bool):
        raise ValueError(f"ema_debias must be True or False; got "
                         f"{ema_debias!r}.")


def check_steps_per_execution(method, meta_interval, meta_warmup_steps,
                              steps_per_execution, num_replicas,
                              label_correction=False):
    """Raises ValueError where several replicas would need the kind of step
    chosen inside one call of the train function."""
    schedule = StepSchedule(method, meta_interval, meta_warmup_steps,
                            label_correction)
    if (schedule.steps_differ and num_replicas > 1
            and steps_per_execution != 1):
        raise ValueError(
            "meta_interval > 1 or meta_warmup_steps > 0 under a "
            "multi-replica strategy chooses the kind of step between calls "
            "of the train function, so it needs steps_per_execution=1; got "
            f"{steps_per_execution}.")


def check_weighting_net_given(method, weighting_net):
    """Raises ValueError for method="fixed" without a learned V."""
    if method == "fixed" and weighting_net is None:
        raise ValueError(
            'method="fixed" trains with the weights of a learned V: give '
            "it as weighting_net (a run's weighting_net.keras; in Python, "
            "loaded with mwnet_tf.load_weighting_net).")


def check_classifier_built(classifier):
    if not classifier.built:
        raise ValueError(
            "The classifier must be built before it is wrapped: give it an "
            "keras.Input or call it once on a batch.")


def _ends_in_softmax(classifier):
    """Whether the classifier's last layer that computes anything is a
    softmax (a Dense or Activation with activation="softmax", a Softmax
    layer); a linear Activation after it (a float32 cast under mixed
    precision) is looked through. Subclassed models are not inspected."""
    for layer in reversed(getattr(classifier, "layers", None) or []):
        if isinstance(layer, keras.layers.Softmax):
            return True
        activation = getattr(layer, "activation", None)
        name = getattr(activation, "__name__", None)
        if isinstance(layer, keras.layers.Activation) and name == "linear":
            continue
        if isinstance(layer, keras.layers.InputLayer):
            continue
        return name == "softmax"
    return False


def check_outputs_are_logits(classifier, from_logits):
    """A softmax output read as logits gives silently wrong losses (Keras
    sometimes, not always, finds the softmax and undoes it)."""
    if from_logits and _ends_in_softmax(classifier):
        raise ValueError(
            "The classifier ends in a softmax, but MetaWeightNet computes "
            "its losses from logits: build it without the softmax "
            "(keras.applications: classifier_activation=None; a layer: "
            "activation=None), or pass from_logits=False.")


def check_families_fit(weighting_net, classifier):
    """A class-aware V must name a family for each of the classifier's
    classes."""
    families = getattr(weighting_net, "class_families", None)
    num_classes = classifier.output_shape[-1] if families is not None else None
    if families is not None and len(families) != num_classes:
        raise ValueError(
            f"The class-aware weighting net has families for {len(families)} "
            f"classes, but the classifier has {num_classes}; build it with "
            "task_families of this data set's label counts.")


def check_lookahead_optimizer(lookahead, optimizer_class):
    """lookahead="optimizer" replays an SGD step, so it needs SGD."""
    if lookahead == "optimizer" and not issubclass(optimizer_class,
                                                   keras.optimizers.SGD):
        raise ValueError(
            'lookahead="optimizer" needs a keras.optimizers.SGD classifier '
            f"optimizer; got {optimizer_class.__name__}. Use "
            'lookahead="sgd" with other optimisers.')


def check_real_step_weights(real_step_weights, method, meta_scope):
    """real_step_weights="lookahead" reuses the lookahead's gradient, which
    covers every classifier variable only when the lookahead moves them all."""
    check_choice("real_step_weights", real_step_weights, REAL_STEP_WEIGHTS)
    if (real_step_weights == "lookahead" and method == "mwnet"
            and meta_scope != "all"):
        raise ValueError(
            'real_step_weights="lookahead" reuses the lookahead\'s gradient '
            "as the real step's, which needs the lookahead to move every "
            f"variable: meta_scope='all'; got meta_scope={meta_scope!r}.")
