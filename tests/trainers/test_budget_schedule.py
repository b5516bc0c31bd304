"""Schedules over a time budget (``--max-minutes``): a short run ends annealed (learning
rate, EMA momentum, DINO teacher temperature), planned and actual steps are stored;
without a budget the horizon is the epochs one, as before."""

import math

import pytest
import torch
from lightly.utils.scheduler import cosine_warmup_schedule
from lightning.pytorch.callbacks import Callback

from curate.trainers.run import load_methods, train
from curate.trainers.schedule import BudgetSchedule

load_methods()
FAST = dict(image_size=16, batch_size=8, num_workers=0, progress=False, devices=1,
            accelerator="cpu", checkpoint_every=0, holdout_fraction=0.0, compare=False)


@pytest.fixture(scope="module")
def ws_index(tmp_path_factory):
    from helpers import gray_noise_workspace

    ws, index = gray_noise_workspace(tmp_path_factory.mktemp("budget"), 24, batch="b1")
    yield ws, index
    index.close()


class _Last(Callback):
    """The values the schedules had at the last step."""

    def __init__(self):
        self.lrs, self.momenta, self.values = [], [], {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])
        if "momentum" in module.opts:
            self.momenta.append(module.momentum(module.opts["momentum"]))
            self.values["momentum"] = self.momenta[-1]
        if hasattr(module, "teacher_temperature"):
            self.values["teacher_temp"] = module.teacher_temperature()


SMALL = {"dino": dict(out_dim=64, hidden_dim=32, bottleneck_dim=16, local_crops=1),
         "moco": dict(queue_size=16)}


@pytest.mark.parametrize("method", ["simclr", "moco", "dino"])
def test_a_tiny_budget_ends_annealed(ws_index, method):
    ws, index = ws_index
    cb = _Last()
    run = train(index, ws, method, name=f"budget-{method}", epochs=1000, max_minutes=0.06,
                warmup_epochs=2, callbacks=[cb], **FAST, **SMALL.get(method, {}))
    sched = run.data["schedule"]
    steps = run.data["steps"]
    assert run.data["stopped_by"] == "max_time" and sched["horizon"] == "max-minutes"
    assert sched["epochs_horizon_steps"] == 1000 * 3  # 24 images / batch 8, 1000 epochs
    assert sched["first_plan"] and sched["plans"] >= 1 and sched["first_plan"] < 3000
    # the horizon followed the clock: the last plan is within a few steps of the real end
    assert steps - 2 <= sched["planned_steps"] <= steps * 1.25 + 5, (steps, sched)
    lr0 = run.params["module"]["lr"]
    assert max(cb.lrs) > 0.5 * lr0 and cb.lrs[-1] < 0.1 * lr0, (cb.lrs[:3], cb.lrs[-3:])
    if method == "moco":  # cosine from 0.99 to 1
        assert cb.values["momentum"] > 0.999, cb.values
    if method == "dino":  # teacher momentum 0.996 -> 1; temperature 0.04 -> 0.01 (per epoch)
        assert cb.values["momentum"] > 0.9996 and cb.values["teacher_temp"] < 0.0131, cb.values
    ckpt = torch.load(run.checkpoint_path, map_location="cpu", weights_only=True)
    state = next(v for k, v in ckpt["callbacks"].items() if "BudgetSchedule" in k)
    assert state["planned"] == sched["planned_steps"]  # a resumed run keeps the plan


def test_without_a_budget_the_epochs_horizon_is_unchanged(ws_index):
    ws, index = ws_index
    cb = _Last()
    run = train(index, ws, "moco", name="no-budget", epochs=4, warmup_epochs=1, lr=0.01,
                callbacks=[cb], **FAST, **SMALL["moco"])
    assert run.data["schedule"] == {"horizon": "epochs", "planned_steps": 12,
                                    "epochs_horizon_steps": 12}
    assert run.data["steps"] == 12 and len(cb.lrs) == 12
    # lightly's warm-up + cosine over the 12 steps of 4 epochs, warm-up 1 epoch (3 steps)
    want = [0.01 * cosine_warmup_schedule(s, 12, 1.0, 0.001, 3, 0.0) for s in range(12)]
    assert cb.lrs == pytest.approx(want, rel=1e-6)
    want = [1.0 - 0.01 * (math.cos(math.pi * s / 11) + 1) / 2 for s in range(12)]  # 0.99 -> 1
    assert cb.momenta == pytest.approx(want, abs=1e-9)


def test_the_plan_keeps_the_warmup_share_and_never_passes_the_epochs_horizon():
    class _Trainer:
        global_step = 10

        def __init__(self, sched):
            self.lr_scheduler_configs = [type("C", (), {"scheduler": sched})()]

    class _Module:
        def epoch_horizon(self):
            return 1000

    from lightly.utils.scheduler import CosineWarmupScheduler

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = CosineWarmupScheduler(opt, warmup_epochs=100, max_epochs=1000)
    b, m, t = BudgetSchedule(1.0), _Module(), _Trainer(sched)
    b.apply(t, m, 200)
    assert m.planned_steps == 200 and sched.max_epochs == 200 and sched.warmup_epochs == 20
    b.apply(t, m, 5000)  # never beyond the epochs/max-steps horizon
    assert m.planned_steps == 1000 and sched.max_epochs == 1000 and sched.warmup_epochs == 100
    b.apply(t, m, 3)  # never behind the current step
    assert m.planned_steps == 11 and sched.warmup_epochs == 1


def test_a_budget_on_another_clock_plans_and_stops_on_that_clock():
    """``clock=time.process_time`` in the encoder benchmark: the plan and the stop follow
    the given clock (here one that advances 1 s per step), with no Lightning Timer."""

    class _Trainer:
        callbacks: list = []
        lr_scheduler_configs: list = []
        global_step = 0
        should_stop = False

    class _Module:
        planned_steps = None

        def epoch_horizon(self):
            return 10_000

    ticks = iter(range(10_000))
    b, t, m = BudgetSchedule(1.0, first=5, clock=lambda: float(next(ticks))), _Trainer(), _Module()
    stopped_at = None
    for step in range(200):
        t.global_step = step
        b.on_train_batch_end(t, m, None, None, step)
        if t.should_stop:
            stopped_at = step
            break
    assert stopped_at == 60  # 60 s of budget at 1 s per step on the given clock
    assert abs(m.planned_steps - 60) <= 1  # planned from the rate on that clock
