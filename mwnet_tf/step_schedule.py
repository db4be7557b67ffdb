"""Which kind of training step runs at step t.

A run's steps differ in two ways: whether the step takes MW-Net's meta
step (every `meta_interval`-th step, counted from the end of the warm-up),
and whether it is a warm-up step that trains unweighted (L2RW's weights of
1; label correction's plain CE before the averaged model is worth
trusting). `StepSchedule` says which, for a step number that is a Python
int (on the host) or a tensor (in the graph); how a step learns its kind
inside `keras.Model.fit` is `mwnet_tf.fit_workarounds`'s business.
"""

import dataclasses
import itertools
from typing import NamedTuple


class StepKind(NamedTuple):
    """What one step does: the meta step? a warm-up step without weights?"""

    meta_step: bool
    warming_up: bool


# Every kind a step can be; a run may use fewer.
STEP_KINDS = tuple(StepKind(*kind)
                   for kind in itertools.product((True, False), repeat=2))


@dataclasses.dataclass(frozen=True)
class StepSchedule:
    """The kinds of a run's steps, from the trainer's arguments.

    Attributes:
        method: "mwnet", "l2rw", "ce" or "fixed".
        meta_interval: MW-Net's meta step every this many steps.
        meta_warmup_steps: Steps before the first meta step (and, for L2RW
            and label correction, the unweighted warm-up).
        label_correction: Whether the step corrects labels (CMW-Net-SL).
    """

    method: str
    meta_interval: int = 1
    meta_warmup_steps: int = 0
    label_correction: bool = False

    @property
    def takes_meta_steps(self):
        """Whether any step takes MW-Net's meta step on V."""
        return self.method == "mwnet"

    @property
    def uses_meta_batches(self):
        """Whether steps read the meta batch (MW-Net's meta step, L2RW's
        weights): the methods whose logs have a meta loss."""
        return self.method in ("mwnet", "l2rw")

    @property
    def warms_up_unweighted(self):
        """Whether warm-up steps train with weights of 1 (L2RW) or with
        the given labels alone (label correction)."""
        return self.method == "l2rw" or self.label_correction

    @property
    def steps_differ(self):
        """Whether two steps of the run can be of different kinds."""
        warm_up_matters = self.uses_meta_batches or self.label_correction
        return ((self.takes_meta_steps and self.meta_interval > 1)
                or (warm_up_matters and self.meta_warmup_steps > 0))

    def meta_step_at(self, step):
        """Whether step `step` (int or int tensor) takes the meta step,
        for a method that takes any."""
        start = self.meta_warmup_steps
        return (step >= start) & ((step - start) % self.meta_interval == 0)

    def warming_up_at(self, step):
        """Whether step `step` (int or int tensor) is in the warm-up."""
        return step < self.meta_warmup_steps

    def kind_at(self, step):
        """The `StepKind` of step `step`, a Python int."""
        return StepKind(
            meta_step=self.takes_meta_steps and bool(self.meta_step_at(step)),
            warming_up=(self.warms_up_unweighted
                        and bool(self.warming_up_at(step))))
