"""How long a CPU run will take, measured from its first steps, said once when it is long.

An experiment sized for a GPU (``+experiment=vgg_cbam data=synthetic``: VGG16 at 224 px,
50 epochs) starts on a CPU without complaint and trains for hours. ``CPUTimeProjection``
times the first training batches (after a warm-up), multiplies by the batches the run
will train (``trainer.estimated_stepping_batches``) and, when the projection exceeds
``warn_hours``, logs it once with the ways to a shorter run: ``trainer=gpu`` on a machine
with a GPU, or a smaller budget. It says nothing on a GPU, and nothing about short runs.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import lightning as L

log = logging.getLogger(__name__)


def format_duration(seconds: float) -> str:
    """``42 s``, ``12 min``, ``3.4 h``, ``2.1 days``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def projection_message(per_batch: float, batches: int, measured: int) -> str:
    """The one line logged for a long projected CPU run."""
    total = per_batch * batches
    return (f"Projected CPU training time: about {format_duration(total)} ({per_batch:.2f} s "
            f"per batch over {batches} training batches to go, timed on {measured}; validation "
            f"comes on top). On a machine with a GPU add trainer=gpu; for a quick run on "
            f"this CPU shrink the budget, e.g. trainer.max_epochs=2, a smaller "
            f"data.image_size, model.backbone=resnet18 where the model has one, or "
            f"trainer.limit_train_batches=0.1")


class CPUTimeProjection(L.Callback):
    """Log, once per run, the projected training time of a run on the CPU when it exceeds
    ``warn_hours``: timed over ``measure_batches`` training batches after
    ``warmup_batches`` (the first batches pay one-off costs)."""

    def __init__(self, warn_hours: float = 1.0, warmup_batches: int = 2,
                 measure_batches: int = 5) -> None:
        if not warn_hours > 0 or warmup_batches < 1 or measure_batches < 1:
            raise ValueError(f"callbacks.cpu_time_projection: warn_hours must be > 0, "
                             f"warmup_batches and measure_batches >= 1, got {warn_hours}, "
                             f"{warmup_batches}, {measure_batches}")
        self.warn_hours = warn_hours
        self.warmup_batches, self.measure_batches = warmup_batches, measure_batches
        self._seen = 0
        self._started = 0.0
        self._done = False

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._done:
            return
        if trainer.strategy.root_device.type != "cpu":
            self._done = True
            return
        self._seen += 1
        if self._seen == self.warmup_batches:
            self._started = time.perf_counter()
        if self._seen < self.warmup_batches + self.measure_batches:
            return
        self._done = True
        per_batch = (time.perf_counter() - self._started) / self.measure_batches
        steps_left = trainer.estimated_stepping_batches - getattr(trainer, "global_step", 0)
        batches = steps_left * trainer.accumulate_grad_batches  # a resumed run: what is left
        if math.isfinite(batches) and per_batch * batches > self.warn_hours * 3600:
            log.warning(projection_message(per_batch, int(batches), self.measure_batches))
