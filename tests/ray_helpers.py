"""A pixels-pca encoder that kills its Ray worker or the driver, for the Ray embed tests.

``sabotaged-pca`` behaves exactly like ``pixels-pca`` unless ``<CURATE_TEST_SABOTAGE>/armed``
exists, then, in ``encode`` (which runs only on Ray actors):

* mode ``exit-once``: the first call anywhere writes ``exited`` (with its pid) and
  ``os._exit(1)``s its worker process; later calls encode normally;
* mode ``kill-driver``: each call appends to ``calls``; from call ``K`` on it SIGKILLs the
  driver process (whose pid the encoder took when it was built there) and exits.

The class is pickled by value to the workers (they do not have tests/ on sys.path).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

from curate.encoders.base import ENCODERS
from curate.encoders.pixels_pca import PixelsPCA

NAME = "sabotaged-pca"


class SabotagedPCA(PixelsPCA):
    def __init__(self, control: str, mode: str, kill_at: int = 1, **kw):
        super().__init__(**kw)
        self.name = NAME
        self.control, self.mode, self.kill_at = Path(control), mode, kill_at
        self.driver_pid = os.getpid()

    def encode(self, x):
        if (self.control / "armed").exists():
            if self.mode == "exit-once" and not (self.control / "exited").exists():
                (self.control / "exited").write_text(str(os.getpid()))
                os._exit(1)
            if self.mode == "kill-driver":
                with open(self.control / "calls", "a") as f:
                    f.write(f"{os.getpid()}\n")
                if len((self.control / "calls").read_text().split()) >= self.kill_at:
                    with contextlib.suppress(ProcessLookupError):  # killed already
                        os.kill(self.driver_pid, signal.SIGKILL)
                    os._exit(1)
        return super().encode(x)


def register() -> None:
    """Register ``sabotaged-pca`` (configured by CURATE_TEST_SABOTAGE, _MODE, _KILL_AT)."""
    from ray import cloudpickle  # Ray's own copy pickles what it sends to workers

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    if NAME in ENCODERS:
        return

    @ENCODERS.register(NAME)
    def _factory(weights=None, image_size=None, **params):
        return SabotagedPCA(os.environ["CURATE_TEST_SABOTAGE"],
                            os.environ.get("CURATE_TEST_SABOTAGE_MODE", "exit-once"),
                            int(os.environ.get("CURATE_TEST_SABOTAGE_KILL_AT", "1")),
                            image_size=image_size, **params)


def unregister() -> None:
    """Take ``sabotaged-pca`` out of the registry again (other tests list the encoders)."""
    ENCODERS._items.pop(NAME, None)
