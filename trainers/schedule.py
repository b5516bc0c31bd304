"""Step schedules laid over a time budget (``curate train --max-minutes``).

Every step schedule of a run (the learning rate's linear warm-up + cosine of
:func:`curate.trainers.base.make_optimizers`, the MoCo/DINO EMA momentum, the DINO
teacher-temperature epochs) has a horizon, :meth:`TrainModule.total_steps`. Without a
budget it is the epochs/max-steps horizon (Lightning's ``estimated_stepping_batches``),
as before. With ``--max-minutes`` the run stops on time, usually long before that
horizon, so :class:`BudgetSchedule` plans the horizon from the measured speed:

    planned = steps done + rate x time left       (rate: steps/s of this process so far)

first after ``first`` timed steps (the first step, with its start-up cost, is not
timed; or after 5% of the budget, when steps are slow), then again after every step:
the rate then includes checkpoints and epoch ends, and a machine that slows down or
speeds up (shared CPUs) moves the horizon with it, so the schedules' progress
``step / planned`` follows the clock and reaches 1 when the time is up (the price: a
budgeted run's schedule depends on the machine's speed, as its step count already
does). The horizon never exceeds the epochs/max-steps one and never falls behind the
current step; the warm-up keeps its share of the horizon (warm-up steps x planned /
epochs horizon). A run stopped by the clock therefore ends with the learning rate, momentum and teacher temperature at (or
next to) their end values, as a full run does. The plan is checkpointed (a resumed run
keeps it until it re-plans) and stored with the run (:func:`schedule_record`).

``clock``: the time the budget is counted in, ``time.monotonic`` (wall) by default; a
benchmark that must give every method the same CPU time passes ``time.process_time``.
Without a Lightning ``Timer`` among the callbacks, the schedule also stops the run once
the budget is spent on that clock.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from lightning.pytorch.callbacks import Callback, Timer


class BudgetSchedule(Callback):
    """Set ``module.planned_steps`` and the LR schedulers' horizon from the time budget."""

    def __init__(self, minutes: float, first: int = 10,
                 clock: Callable[[], float] = time.monotonic):
        self.budget_s, self.first, self.clock = float(minutes) * 60.0, int(first), clock
        self.planned: int | None = None
        self.first_plan: int | None = None
        self.plans = 0
        self._t0: float | None = None
        self._s0 = 0
        self._warm: dict[int, float] = {}  # scheduler id -> warm-up share of the horizon

    # ------------------------------------------------------------ state (checkpointed)
    def state_dict(self) -> dict[str, Any]:
        return {"planned": self.planned, "first_plan": self.first_plan, "plans": self.plans}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.planned, self.first_plan = state.get("planned"), state.get("first_plan")
        self.plans = int(state.get("plans") or 0)

    # ------------------------------------------------------------ hooks
    def on_train_start(self, trainer, pl_module) -> None:
        self._t0 = None
        if self.planned:  # resumed: keep the stored plan until this process re-plans
            self.apply(trainer, pl_module, self.planned)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now, step = self.clock(), int(trainer.global_step)
        if self._t0 is None:
            self._t0, self._s0 = now, step
            return
        if not self._timer(trainer) and now - self._t0 >= self.budget_s:
            trainer.should_stop = True
        done = step - self._s0
        early = done >= 2 and now - self._t0 >= 0.05 * self.budget_s  # slow steps, short budget
        if done < self.first and not early:
            return
        rate = done / max(now - self._t0, 1e-9)
        planned = step + int(rate * self.time_left(trainer, now))
        self.apply(trainer, pl_module, planned)
        self.first_plan = self.first_plan or self.planned
        self.plans += 1

    # ------------------------------------------------------------ helpers
    @staticmethod
    def _timer(trainer) -> Timer | None:
        return next((cb for cb in trainer.callbacks if isinstance(cb, Timer)), None)

    def time_left(self, trainer, now: float) -> float:
        """Seconds left of the budget (Lightning's Timer when present)."""
        timer = self._timer(trainer)
        left = timer.time_remaining("train") if timer is not None else None
        if left is not None:
            return max(0.0, float(left))
        return max(0.0, self.budget_s - (now - (now if self._t0 is None else self._t0)))

    def apply(self, trainer, module, planned: int) -> None:
        """Horizon := ``planned`` (clipped to [step + 1, epochs horizon]) for the module
        (momentum, teacher temperature) and every warm-up/cosine LR scheduler."""
        horizon = module.epoch_horizon()
        planned = max(int(trainer.global_step) + 1, min(int(planned), horizon))
        self.planned = module.planned_steps = planned
        for cfg in trainer.lr_scheduler_configs:
            sch = cfg.scheduler
            if not hasattr(sch, "max_epochs") or not hasattr(sch, "warmup_epochs"):
                continue  # not lightly's CosineWarmupScheduler
            share = self._warm.setdefault(id(sch), sch.warmup_epochs / max(1, sch.max_epochs))
            sch.max_epochs = planned
            sch.warmup_epochs = min(planned - 1, int(round(share * planned))) if planned > 1 else 0


def schedule_record(module, callbacks) -> dict[str, Any]:
    """What the run stores about its schedule horizon (``TrainingRun.data["schedule"]``):
    ``horizon`` (``epochs`` or ``max-minutes``), ``planned_steps`` (the horizon the
    schedules ended on), the epochs/max-steps horizon and, with a budget, the first plan
    and how many plans were made."""
    budget = next((c for c in callbacks if isinstance(c, BudgetSchedule)), None)
    out: dict[str, Any] = {"horizon": "max-minutes" if budget else "epochs",
                           "planned_steps": int(module.total_steps()),
                           "epochs_horizon_steps": int(module.epoch_horizon())}
    if budget is not None:
        out.update(first_plan=budget.first_plan, plans=budget.plans)
    return out
