"""Callbacks that write run artefacts. Everything that writes files runs on rank 0 only."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_only

from fer_lightning.metrics import plot_confusion_matrix


class ConfusionMatrixWriter(L.Callback):
    """Writes ``confusion_val.png`` after each validation run (the latest one) and
    ``confusion_test.png`` after testing, from the module's ``results``.

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

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._write(pl_module, "val", f"validation, epoch {trainer.current_epoch}")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(pl_module, "test", "test")
