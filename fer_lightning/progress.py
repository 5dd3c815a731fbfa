"""Progress output: a live rich bar on a terminal, plain log lines everywhere else.

A cluster job's output file, ``make train | tee`` or a CI log cannot show a live bar: rich
prints nothing until the bar stops and then dumps its last frame folded into 80 columns.
There, :class:`LogLineProgress` writes a line when each epoch starts and a step line every
``every_n_seconds`` (or ``every_n_steps``) with the elapsed time and an ETA, through the
logging system (so into ``train.log`` too). Both count epochs as the per-epoch summary does:
``epoch 2 (3/10)`` is the third of ten epochs, numbered from 0.
"""

from __future__ import annotations

import io
import logging
import sys
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar
from rich import get_console
from rich.console import Console, RenderableType

log = logging.getLogger("fer_lightning.progress")


def epoch_label(epoch: int, max_epochs: int | None) -> str:
    """``epoch 2 (3/10)``: the 0-based epoch and its 1-based position among ``max_epochs``
    (``epoch 2 (3)`` when the run has no epoch limit)."""
    total = f"/{max_epochs}" if max_epochs is not None and max_epochs > 0 else ""
    return f"epoch {epoch} ({epoch + 1}{total})"


def duration(seconds: float) -> str:
    """``1:02:03`` / ``2:03``: a duration as hours, minutes and seconds."""
    minutes, secs = divmod(int(round(max(seconds, 0.0))), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class EpochBar(RichProgressBar):
    """Lightning's rich progress bar, its epochs labelled like the rest of the output
    (``epoch 9 (10/10)``, where Lightning's own label reads ``Epoch 9/9``)."""

    def _get_train_description(self, current_epoch: int) -> str:
        description = epoch_label(current_epoch, self.trainer.max_epochs)
        return f"{description:{len(self.validation_description)}}"


class LogLineProgress(ProgressBar):
    """Progress as log lines, for output that is not a terminal.

    One line when a training epoch starts, then a step line every ``every_n_seconds``
    seconds and/or every ``every_n_steps`` batches (either may be ``None``), e.g.
    ``epoch 2 (3/10) batch 120/469, step 1058: train/loss 1.02, elapsed 4:10, epoch ETA
    2:01, run ETA 23:30``. The run ETA assumes the batches still to come take as long as
    the ones this process has run so far (validation included).
    """

    def __init__(self, every_n_seconds: float | None = 30.0,
                 every_n_steps: int | None = None) -> None:
        super().__init__()
        self.every_n_seconds = every_n_seconds
        self.every_n_steps = every_n_steps
        self._enabled = True
        self._run_started = self._epoch_started = self._last_line = 0.0
        self._batches_run = 0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def _say(self, message: str, *args: Any) -> None:
        if self._enabled and self.trainer.is_global_zero:
            log.info(message, *args)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._run_started = time.monotonic()
        self._batches_run = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_started = self._last_line = time.monotonic()
        batches = self.total_train_batches
        size = f"{batches} batches" if batches != float("inf") else "batches until exhausted"
        self._say("%s started: %s, elapsed %s", epoch_label(trainer.current_epoch,
                  trainer.max_epochs), size, duration(self._epoch_started - self._run_started))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        self._batches_run += 1
        now = time.monotonic()
        due_by_time = self.every_n_seconds is not None \
            and now - self._last_line >= self.every_n_seconds
        due_by_steps = self.every_n_steps is not None and (batch_idx + 1) % self.every_n_steps == 0
        if due_by_time or due_by_steps:
            self._last_line = now
            self._say("%s", self.step_line(trainer, pl_module, batch_idx, now))

    def step_line(self, trainer: L.Trainer, pl_module: L.LightningModule, batch_idx: int,
                  now: float) -> str:
        """The step line after batch ``batch_idx`` (0-based) of the current epoch."""
        done, total = batch_idx + 1, self.total_train_batches
        metrics = {name: value for name, value in self.get_metrics(trainer, pl_module).items()
                   if name.startswith("train/") and not name.endswith("_epoch")}
        values = ", ".join(f"{name.removesuffix('_step')} {value:.4g}"
                           if isinstance(value, float) else f"{name} {value}"
                           for name, value in metrics.items())
        position = f"batch {done}/{total}" if total != float("inf") else f"batch {done}"
        parts = [f"{epoch_label(trainer.current_epoch, trainer.max_epochs)} {position}, "
                 f"step {trainer.global_step}" + (f": {values}" if values else ""),
                 f"elapsed {duration(now - self._run_started)}"]
        if total != float("inf"):
            per_batch = (now - self._epoch_started) / done
            parts.append(f"epoch ETA {duration(per_batch * (total - done))}")
            max_epochs = trainer.max_epochs
            if max_epochs is not None and max_epochs > 0:
                left = total - done + total * (max_epochs - trainer.current_epoch - 1)
                per_run_batch = (now - self._run_started) / self._batches_run
                parts.append(f"run ETA {duration(per_run_batch * left)}")
        return ", ".join(parts)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn != "fit":
            self._say("validating: %s batches", _count(sum(trainer.num_val_batches)))

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._say("testing: %s batches", _count(sum(trainer.num_test_batches)))


def _count(batches: int | float) -> str:
    return "all" if batches == float("inf") else str(int(batches))


def progress_bar(style: str = "auto", every_n_seconds: float | None = 30.0,
                 every_n_steps: int | None = None) -> ProgressBar:
    """The run's progress display (``callbacks.progress_bar``): ``rich`` (a live bar),
    ``lines`` (:class:`LogLineProgress`) or ``auto``: the bar when stdout is a terminal,
    lines otherwise (a cluster log, a pipe, a file). Values are checked with the config
    (``fer_lightning.config``)."""
    if style == "rich" or (style == "auto" and sys.stdout.isatty()):
        return EpochBar()
    return LogLineProgress(every_n_seconds=every_n_seconds, every_n_steps=every_n_steps)


def console_for(*renderables: RenderableType) -> Console:
    """The console to print ``renderables`` on: rich's own on a terminal (tables fit its
    width); elsewhere one as wide as the widest of them, so a table is never cropped or
    folded at rich's default 80 columns in a log file."""
    console = get_console()
    if console.is_terminal:
        return console
    measuring = Console(file=io.StringIO(), width=100_000)
    width = max([console.width, *(measuring.measure(item).maximum for item in renderables)])
    return Console(file=console.file, width=width, color_system=None, highlight=False)
