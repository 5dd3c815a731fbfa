"""Callbacks that write run artefacts and checkpoints. Everything that writes files runs on
rank 0 only (checkpoints through Lightning's strategy, which does the same)."""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint, RichModelSummary, RichProgressBar
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.model_summary import get_human_readable_count

from fer_lightning.metrics import SCALAR_METRICS, plot_confusion_matrix
from fer_lightning.progress import console_for
from fer_lightning.trust import confine_best_record

log = logging.getLogger(__name__)
#: The logger of the per-epoch lines (train.log; the console too when no progress bar shows).
epoch_log = logging.getLogger("fer_lightning.epochs")


class BestCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint (the best ``save_top_k`` epochs by ``monitor``) that keeps
    its record of the best epochs when a run continues another run's checkpoint.

    The resumed run's best files are linked into this run's folder first (see
    ``fer_lightning.resume.adopt_best_checkpoints``); Lightning itself forgets the scores
    when the folder changes, so the first epoch after a resume would count as the best even
    if an earlier one was better. Files the record names outside this run's checkpoint
    folder are dropped from it (``trust.confine_best_record``): Lightning deletes the
    worst of them when a better epoch arrives.
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old, new = state_dict.get("dirpath"), self.dirpath
        if old and new and old != new:
            def moved(path: Any) -> Any:
                if not isinstance(path, str) or not path.startswith(old):
                    return path
                relocated = new + path[len(old):]
                return relocated if Path(relocated).exists() else path

            state_dict = {**state_dict, "dirpath": new,
                          "best_k_models": {moved(path): score for path, score
                                            in state_dict.get("best_k_models", {}).items()},
                          **{key: moved(state_dict.get(key)) for key in
                             ("best_model_path", "kth_best_model_path", "last_model_path")}}
        if new:
            state_dict = confine_best_record(state_dict, new, self.mode)
        super().load_state_dict(state_dict)


class LastCheckpoint(ModelCheckpoint):
    """``last.ckpt``: what a resumed or requeued run continues from, written atomically
    (see ``fer_lightning.resume.AtomicCheckpointIO``).

    Written after every training epoch whatever the monitored metric does (Lightning 2.6's
    ``save_last`` rewrites it only together with a new best checkpoint), every
    ``every_n_train_steps`` optimizer steps when set, when Lightning stops on SIGTERM (it
    finishes the batch first: SLURM preemption and time limits), and, when another handler
    already owns ``requeue_signal`` (submitit's requeue on SIGUSR2), at the end of the batch
    during which that signal arrives, before that handler requeues the job.
    """

    def __init__(self, dirpath: str, every_n_train_steps: int | None = None,
                 requeue_signal: str | None = "SIGUSR2") -> None:
        # Lightning's every-epoch save; the step saves are this class's own, as
        # ModelCheckpoint takes either every_n_epochs or every_n_train_steps, not both.
        super().__init__(dirpath=dirpath, filename=self.CHECKPOINT_NAME_LAST, monitor=None,
                         save_top_k=1, every_n_epochs=1, enable_version_counter=False,
                         save_on_exception=True)
        self.every_n_train_steps = every_n_train_steps
        self._step_saved = -1
        self.requeue_signal = signal.Signals[requeue_signal] if requeue_signal else None
        self._handed_over: tuple[signal.Signals, Any] | None = None
        self._signalled = False

    @property
    def path(self) -> Path:
        """The ``last.ckpt`` file."""
        return Path(self.dirpath or ".") / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}"

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Another run's record (a run continued from its folder) says nothing about this one.
        if state_dict.get("dirpath") == self.dirpath and self.dirpath:
            super().load_state_dict(confine_best_record(state_dict, self.dirpath, self.mode))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        if trainer.is_global_zero and self.dirpath:  # leftovers of a job killed mid-write
            for partial in Path(self.dirpath).glob(f".{self.path.name}.partial-*"):
                partial.unlink(missing_ok=True)
        self._take_requeue_signal()

    def _take_requeue_signal(self) -> None:
        if self.requeue_signal is None or threading.current_thread() is not threading.main_thread():
            return
        previous = signal.getsignal(self.requeue_signal)
        if callable(previous):  # a requeue handler (submitit) is installed: run it later
            self._handed_over = (self.requeue_signal, previous)
            signal.signal(self.requeue_signal, self._note_requeue_signal)

    def _note_requeue_signal(self, signum: int, frame: FrameType | None) -> None:
        log.warning("Received %s: writing %s at the end of this batch, then requeueing",
                    signal.Signals(signum).name, self.path)
        self._signalled = True

    def _give_back_requeue_signal(self) -> None:
        if self._handed_over is not None:
            signal.signal(*self._handed_over)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._handed_over is not None and \
                trainer.strategy.reduce_boolean_decision(self._signalled, all=False):
            trainer.save_checkpoint(self.path)
            signum, handler = self._handed_over
            self._give_back_requeue_signal()
            self._handed_over, self._signalled = None, False
            handler(signum, None)  # submitit: requeue this job and exit
            return
        step, every = trainer.global_step, self.every_n_train_steps
        # The epoch's last batch is saved at the epoch end (after validation) anyway.
        if every and step % every == 0 and step != self._step_saved \
                and not trainer.fast_dev_run and not trainer.sanity_checking \
                and not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            trainer.save_checkpoint(self.path)
            self._step_saved = step

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        self._give_back_requeue_signal()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule,
                     exception: BaseException) -> None:
        self._give_back_requeue_signal()
        # Lightning raises SIGTERMException between batches, a consistent state to save;
        # other exceptions may strike in the middle of an optimizer step.
        if isinstance(exception, SIGTERMException):
            super().on_exception(trainer, pl_module, exception)


class _EvaluatedCheckpoint(L.Callback):
    """Remembers the epoch and step of the checkpoint a ``validate`` / ``test`` call loaded
    (Lightning hands the loaded checkpoint to callbacks), so what the final evaluation
    writes is labelled with the epoch it evaluates, not the epoch training stopped at."""

    evaluated: tuple[int, int] | None = None

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        if trainer.state.fn != TrainerFn.FITTING:
            self.evaluated = (int(checkpoint.get("epoch", 0)),
                              int(checkpoint.get("global_step", 0)))

    def evaluating_checkpoint(self, trainer: L.Trainer) -> tuple[int, int] | None:
        """(epoch, step) of the checkpoint under evaluation; None while fitting."""
        return None if trainer.state.fn == TrainerFn.FITTING else self.evaluated


class EvaluationEpoch(_EvaluatedCheckpoint):
    """Logs the final evaluation's metrics (``val/*``, ``test/*`` of the best checkpoint)
    at that checkpoint's epoch and step. Lightning would stamp them with the epoch training
    stopped at, one past the last epoch trained, which reads as an extra training epoch in
    ``metrics.csv`` and in TensorBoard / W&B."""

    def _stamp(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        evaluated = self.evaluating_checkpoint(trainer)
        if evaluated is not None:
            epoch, step = evaluated
            pl_module.log_dict({"epoch": float(epoch), "step": float(step)}, sync_dist=True)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stamp(trainer, pl_module)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stamp(trainer, pl_module)


class ConfusionMatrixWriter(_EvaluatedCheckpoint):
    """Writes ``confusion_val.png`` after each validation run (the latest one) and
    ``confusion_test.png`` after testing, from the module's ``results``; titled with the
    epoch the matrix belongs to (the evaluated checkpoint's, after training).

    Uses the ``*_end`` hooks: Lightning calls callbacks' ``*_epoch_end`` before the
    module's, when the epoch's metrics are not computed yet.
    """

    def __init__(self, output_dir: str) -> None:
        self.output_dir = Path(output_dir)

    @rank_zero_only
    def _write(self, pl_module: L.LightningModule, stage: str, title: str) -> None:
        result = pl_module.results.get(stage)
        if result is None:
            return
        plot_confusion_matrix(result["confusion_matrix"], pl_module.class_names,
                              self.output_dir / f"confusion_{stage}.png", title)

    def _title(self, trainer: L.Trainer, stage: str) -> str:
        evaluated = self.evaluating_checkpoint(trainer)
        if evaluated is None:
            return f"{stage}, epoch {trainer.current_epoch}"
        return f"{stage}, checkpoint of epoch {evaluated[0]}"

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._write(pl_module, "val", self._title(trainer, "validation"))

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(pl_module, "test", self._title(trainer, "test"))


class EpochSummary(L.Callback):
    """One log line per training epoch (rank 0), e.g.
    ``epoch 2 (3/10), step 450: train/loss 0.912 train/acc 0.671 val/loss 1.02 val/acc 0.652
    ... lr 1e-03, 41.7 s``.

    It goes to the ``fer_lightning.epochs`` logger, so into the run's ``train.log``; on the
    console only when no progress bar shows the same numbers (no terminal, e.g. a cluster
    job's output file, where fer_lightning.progress writes lines instead of a bar, or no
    progress bar callback). Lines are written when the next epoch
    starts or training ends: Lightning computes the epoch's training metrics after the
    callbacks' epoch-end hooks.
    """

    STAGES = ("train", "val")

    def __init__(self) -> None:
        self._started = 0.0
        self._finished: tuple[int, float] | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log_finished_epoch(trainer)
        self._started = time.monotonic()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._finished = (trainer.current_epoch, time.monotonic() - self._started)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log_finished_epoch(trainer)

    def _log_finished_epoch(self, trainer: L.Trainer) -> None:
        if self._finished is None or not trainer.is_global_zero:
            return
        (epoch, seconds), self._finished = self._finished, None
        metrics = trainer.callback_metrics
        values = []
        for stage in self.STAGES:
            for name in ("loss", *SCALAR_METRICS):
                key = f"{stage}/{name}"
                value = metrics.get(f"{key}_epoch", metrics.get(key))
                if value is not None:
                    values.append(f"{key} {float(value):.4g}")
        if trainer.optimizers:
            values.append(f"lr {trainer.optimizers[0].param_groups[0]['lr']:.3g}")
        total = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        show_on_console = not isinstance(trainer.progress_bar_callback, RichProgressBar) \
            or not trainer.progress_bar_callback.is_enabled
        epoch_log.info("epoch %d (%d%s), step %d: %s, %.1f s", epoch, epoch + 1, total,
                       trainer.global_step, " ".join(values), seconds,
                       extra={"console": show_on_console})


class ModelSummary(RichModelSummary):
    """Lightning's rich model summary without the FLOPs column and total, which read 0 for
    models that take a batch dict (Lightning counts FLOPs only from ``example_input_array``),
    and which a reader takes for a broken model."""

    @staticmethod
    def summarize(summary_data: list[tuple[str, list[str]]], total_parameters: int,
                  trainable_parameters: int, model_size: float,
                  total_training_modes: dict[str, int], total_flops: int,
                  **summarize_kwargs: Any) -> None:
        from rich.table import Table

        columns = [(name, values) for name, values in summary_data
                   if name != "FLOPs" or total_flops]
        table = Table(header_style=summarize_kwargs.get("header_style", "bold magenta"))
        for name, _ in columns:
            table.add_column(name, justify="right" if "Params" in name or name == "FLOPs"
                             else "left", style="dim" if name == " " else None)
        for row in zip(*(values for _, values in columns), strict=True):
            table.add_row(*row)
        lines = [("Trainable params", get_human_readable_count(int(trainable_parameters))),
                 ("Non-trainable params",
                  get_human_readable_count(int(total_parameters - trainable_parameters))),
                 ("Total params", get_human_readable_count(int(total_parameters))),
                 ("Estimated model size (MB)", f"{model_size:,.3f}")]
        if total_flops:
            lines.append(("Total FLOPs", get_human_readable_count(total_flops)))
        console = console_for(table)
        console.print(table)
        for name, value in lines:
            console.print(f"[bold]{name}[/]: {value}")
