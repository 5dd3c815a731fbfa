"""Staged fine-tuning of VGG16-CBAM (Ghimire et al., Methodology 1 and 5) as a Lightning
callback.

Stage 0 trains CBAM and the classifier with the pre-trained base frozen, at the optimizer's
learning rate (Adam 1e-3 in the paper, Methodology 5). Stage k = 1..3 additionally
unfreezes the k-th last convolution of the base (conv5_3, then conv5_2, then conv5_1 for
VGG16) and trains at the learning rate divided by ``lr_factor``**k (10 in the paper). Our
reading of "unfreezed the last layer ... This fine-tuning process was repeated for up to
the third last layer" (Methodology 1) is that unfrozen layers stay trainable. The paper
does not give the epochs per stage ("after training for some epochs"); ``stage_epochs``
sets them (its length is the number of stages).

The net (``pl_module.net``) tells the callback what to do through the
``nets.base.StagedFineTunable`` hooks, which ``model=vgg_cbam`` and ``model=timm``
provide: ``finetune_base()`` (the module frozen in stage 0) and ``finetune_layers()``
(its layers in forward order).

The callback owns the learning rate: at every epoch start it sets every parameter group to
the stage's rate, so a run resumed from a checkpoint mid-schedule continues at the right
stage, with the right layers trainable and the right rate. An LR scheduler would fight it,
so one is refused (``scheduler=none``).
"""

from __future__ import annotations

import bisect
import itertools
import logging
from collections.abc import Sequence
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import BaseFinetuning
from torch import nn
from torch.optim import Optimizer

from fer_lightning.nets.base import StagedFineTunable

log = logging.getLogger(__name__)


def finetune_net(pl_module: L.LightningModule) -> StagedFineTunable:
    """The net inside the LightningModule, which must provide the fine-tuning hooks."""
    net = pl_module.net
    if not isinstance(net, StagedFineTunable):
        raise ValueError(
            f"callbacks.staged_finetune needs a net with finetune_base() and finetune_layers() "
            f"(model=vgg_cbam or model=timm); {type(net).__name__} has neither")
    return net


class StagedFineTuning(BaseFinetuning):
    """Freeze the base, then unfreeze its last layers one per stage, dividing the lr each time.

    Args:
        stage_epochs: epochs of each stage; stage 0 is the frozen-base stage, stage k
            unfreezes the last k layers of ``finetune_layers()``.
        lr_factor: the learning rate of stage k is the optimizer's lr / lr_factor**k.
        train_bn: keep batch-norm layers of the frozen base trainable (Lightning's
            ``BaseFinetuning.freeze`` semantics); VGG16 has none.
    """

    def __init__(self, stage_epochs: Sequence[int] = (20, 10, 10, 10), lr_factor: float = 10.0,
                 train_bn: bool = True) -> None:
        super().__init__()
        stage_epochs = list(stage_epochs)
        if not stage_epochs or not all(isinstance(e, int) and not isinstance(e, bool) and e > 0
                                       for e in stage_epochs):
            raise ValueError(f"callbacks.staged_finetune.stage_epochs must be a non-empty list "
                             f"of positive integers, got {stage_epochs}")
        if lr_factor <= 0:
            raise ValueError(f"callbacks.staged_finetune.lr_factor must be > 0, got {lr_factor}")
        self.stage_epochs = stage_epochs
        self.stage_ends = list(itertools.accumulate(stage_epochs))
        self.lr_factor = float(lr_factor)
        self.train_bn = train_bn
        self.stage = -1

    @property
    def total_epochs(self) -> int:
        """Epochs of the whole schedule (set ``trainer.max_epochs`` to this)."""
        return self.stage_ends[-1]

    def stage_of(self, epoch: int) -> int:
        """The stage an epoch belongs to; epochs after the schedule stay in the last stage."""
        return min(bisect.bisect_right(self.stage_ends, epoch), len(self.stage_epochs) - 1)

    def stage_lr(self, optimizer: Optimizer, stage: int) -> float:
        """The learning rate of ``stage``: the optimizer's configured lr / lr_factor**stage."""
        return float(optimizer.defaults["lr"]) / self.lr_factor**stage

    def unfrozen_layers(self, pl_module: L.LightningModule, stage: int) -> list[nn.Module]:
        """The base layers trainable in ``stage``: the last ``stage`` ones."""
        layers = finetune_net(pl_module).finetune_layers()
        return layers[len(layers) - stage:] if stage > 0 else []

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "stage": self.stage}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.stage = int(state_dict.get("stage", -1))

    def freeze_before_training(self, pl_module: L.LightningModule) -> None:
        net = finetune_net(pl_module)
        stages = len(self.stage_epochs) - 1
        if len(net.finetune_layers()) < stages:
            raise ValueError(f"callbacks.staged_finetune has {stages} unfreezing stages but the "
                             f"base of {type(net).__name__} has only "
                             f"{len(net.finetune_layers())} layers")
        self.freeze(net.finetune_base(), train_bn=self.train_bn)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.lr_scheduler_configs:
            raise ValueError("callbacks.staged_finetune sets the learning rate of each stage; "
                             "use scheduler=none")
        if trainer.max_epochs is not None and 0 <= trainer.max_epochs < self.total_epochs:
            log.warning("trainer.max_epochs=%d ends before the fine-tuning schedule %s (%d epochs)",
                        trainer.max_epochs, self.stage_epochs, self.total_epochs)
        super().on_fit_start(trainer, pl_module)

    def finetune_function(self, pl_module: L.LightningModule, epoch: int,
                          optimizer: Optimizer) -> None:
        stage = self.stage_of(epoch)
        layers = self.unfrozen_layers(pl_module, stage)
        self.make_trainable(layers)
        lr = self.stage_lr(optimizer, stage)
        known = {id(p) for group in optimizer.param_groups for p in group["params"]}
        new = [p for p in self.filter_params(layers, train_bn=True) if id(p) not in known]
        if new:
            optimizer.add_param_group({"params": new, "lr": lr})
        for group in optimizer.param_groups:
            group["lr"] = lr
        if stage != self.stage:
            log.info("Staged fine-tuning: stage %d starts at epoch %d: %d of %d base layers "
                     "trainable, lr %.3g", stage, epoch, len(layers),
                     len(finetune_net(pl_module).finetune_layers()), lr)
            self.stage = stage

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        pl_module.log_dict({"finetune/stage": float(self.stage),
                            "finetune/lr": trainer.optimizers[0].param_groups[0]["lr"]},
                           on_step=False, on_epoch=True)
