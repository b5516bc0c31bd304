"""TrainConfig / RuntimeConfig: one set of defaults for Python and CLI callers; stored
params (today's keys, and those of older runs) read back."""

import pytest

from curate.errors import CurateError
from curate.trainers.config import RuntimeConfig, TrainConfig
from curate.trainers.run import load_methods


@pytest.fixture(autouse=True, scope="module")
def _methods():
    load_methods()


def test_python_callers_get_the_methods_recommended_defaults():
    c = TrainConfig.build("classifier", channels=1, image_size=28)
    assert (c.epochs, c.batch_size, c.optimizer) == (5, 32, "sgd")
    c = TrainConfig.build("classifier", channels=1, image_size=28, epochs=2, optimizer="adam")
    assert (c.epochs, c.batch_size, c.optimizer) == (2, 32, "adam")
    c = TrainConfig.build("simclr", channels=1, image_size=28, temperature=0.2)
    assert (c.epochs, c.batch_size, c.optimizer, c.options) == (100, 256, "adamw", {"temperature": 0.2})


@pytest.mark.parametrize("kw, msg", [({"method": "nope"}, "unknown training method"),
                                     ({"image_size": 4}, "out of range"),
                                     ({"epochs": 0}, "at least 1"),
                                     ({"optimizer": "lbfgs"}, "unknown optimizer"),
                                     ({"holdout_fraction": 1.0}, "holdout-fraction")])
def test_bad_settings_are_one_line_errors(kw, msg):
    kw = {"method": "simclr", "channels": 3, "image_size": 32, **kw}
    with pytest.raises(CurateError, match=msg):
        TrainConfig.build(kw.pop("method"), **kw)


def test_params_round_trip_with_todays_keys_and_old_runs():
    c = TrainConfig.build("simclr", channels=3, image_size=32, lr=0.1, temperature=0.2)
    rt = RuntimeConfig(devices=1, max_minutes=2.0)
    args = c.to_params(rt)
    assert set(args) >= {"batch", "backbone", "image_size", "channels", "weights", "epochs",
                         "batch_size", "lr", "weight_decay", "optimizer", "warmup_epochs",
                         "max_steps", "precision", "seed", "knn_monitor", "knn_holdout",
                         "holdout_fraction", "options", "devices", "num_nodes", "strategy",
                         "accelerator", "max_minutes", "num_workers", "progress",
                         "checkpoint_every"}
    assert "weights_name" not in args and "method" not in args
    assert TrainConfig.from_params("simclr", args) == c
    assert RuntimeConfig.from_params(args) == rt
    assert RuntimeConfig.from_params(args, devices=2, accelerator=None).devices == 2
    old = {k: v for k, v in args.items() if k != "holdout_fraction"}  # a run from before it
    old.update(devices=None, num_nodes=None, progress=None, checkpoint_every=None)
    assert TrainConfig.from_params("simclr", old).holdout_fraction == 0.0
    assert RuntimeConfig.from_params(old) == RuntimeConfig(max_minutes=2.0)
