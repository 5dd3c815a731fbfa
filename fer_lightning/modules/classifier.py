"""FERClassifier: the one LightningModule for every family that maps a batch to logits."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import hydra
import lightning as L
import torch
from omegaconf import OmegaConf
from torch import nn

from fer_lightning.checkpoint import METADATA_KEY, checkpoint_metadata
from fer_lightning.metrics import classification_metrics, split_results
from fer_lightning.speed import fused_option

STAGES = ("train", "val", "test")
LIGHTNING_SCHEDULER_KEYS = ("interval", "frequency", "monitor")
#: Keys of the optimizer config that shape its parameter groups (not optimizer arguments).
PARAM_GROUP_KEYS = ("conv_l2", "conv_l2_modules")
#: Optimizers whose weight_decay is decoupled from the gradient: no Keras-style L2.
DECOUPLED_WEIGHT_DECAY = ("AdamW",)


def param_groups(module: nn.Module, conv_l2: float = 0.0, conv_l2_modules: str | None = None,
                 optimizer_target: str = "") -> list[dict[str, Any]]:
    """The optimizer's parameter groups: one home for per-layer L2 regularisation.

    ``conv_l2`` = lambda > 0 puts the kernels (weights, not biases) of the ``nn.Conv2d``
    layers whose qualified name matches the regex ``conv_l2_modules`` (``re.search``;
    null = every Conv2d) into their own group with ``weight_decay = 2 * lambda``. Keras'
    ``kernel_regularizer=l2(lambda)`` adds ``lambda * sum(w ** 2)`` to the loss, whose
    gradient is ``2 * lambda * w``: exactly what a coupled weight decay of ``2 * lambda``
    adds to the gradient in SGD and Adam (not AdamW, whose decay is decoupled: refused).
    Every other parameter (BN, biases, linear layers) keeps the optimizer's weight_decay.
    """
    if conv_l2 < 0:
        raise ValueError(f"optimizer.conv_l2 must be >= 0, got {conv_l2}")
    if not conv_l2:
        return [{"params": list(module.parameters())}]
    if optimizer_target.rsplit(".", 1)[-1] in DECOUPLED_WEIGHT_DECAY:
        raise ValueError(f"optimizer.conv_l2 is an L2 term in the loss; {optimizer_target}'s "
                         f"weight_decay is decoupled from the gradient: use optimizer=adam or sgd")
    try:
        pattern = re.compile(conv_l2_modules) if conv_l2_modules else None
    except re.error as error:
        raise ValueError(f"optimizer.conv_l2_modules={conv_l2_modules!r} is not a regular "
                         f"expression: {error}") from None
    convs = {name: conv for name, conv in module.named_modules() if isinstance(conv, nn.Conv2d)}
    chosen = [conv.weight for name, conv in convs.items()
              if pattern is None or pattern.search(name)]
    if not chosen:
        raise ValueError(f"optimizer.conv_l2_modules={conv_l2_modules!r} matches no Conv2d; "
                         f"the convs are named like {list(convs)[:4]}")
    kernels = {id(weight) for weight in chosen}
    rest = [parameter for parameter in module.parameters() if id(parameter) not in kernels]
    return [{"params": chosen, "weight_decay": 2 * conv_l2}, {"params": rest}]


class FERClassifier(L.LightningModule):
    """Trains any net that declares ``input_keys`` and returns class logits.

    The net receives exactly the batch keys it declares. Class names and their order are
    saved in the hyperparameters and the checkpoint so evaluation never guesses them.
    After each val / test epoch the computed metrics are kept in ``self.results[stage]``
    (scalars, per-class accuracy, confusion matrix) for callbacks and reports.
    """

    #: The resolved run config and its Hydra group options (``checkpoint.run_config``),
    #: handed over by ``build.build_module`` and saved into every checkpoint, so eval,
    #: predict and export need only the ``.ckpt`` file.
    run_config: dict[str, Any] | None = None
    run_choices: dict[str, str] | None = None
    #: Speed switches (``speed.apply_speed_switches``): NHWC image inputs, fused Adam on CUDA.
    channels_last: bool = False
    fused_optimizer: bool = False

    def __init__(self, net: nn.Module, loss: nn.Module, class_names: Sequence[str],
                 optimizer: Mapping[str, Any], scheduler: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net", "loss"])
        self.net = net
        self.loss = loss
        self.class_names = list(class_names)
        # ModuleDict keys may not shadow nn.Module attributes such as ``train``.
        self.metrics = nn.ModuleDict(
            {f"{stage}_metrics": classification_metrics(len(self.class_names)) for stage in STAGES}
        )
        self.results: dict[str, dict[str, Any]] = {}
        self._param_groups()  # a bad optimizer.conv_l2* fails here, before training

    def _param_groups(self) -> list[dict[str, Any]]:
        """``param_groups`` of this module with the optimizer config's group keys."""
        optimizer = self.hparams.optimizer or {}
        options = {key: optimizer[key] for key in PARAM_GROUP_KEYS if key in optimizer}
        return param_groups(self, **options,
                            optimizer_target=str(optimizer.get("_target_", "")))

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        inputs = {key: batch[key] for key in self.net.input_keys}
        if self.channels_last:
            inputs = {key: value.contiguous(memory_format=torch.channels_last)
                      if value.ndim == 4 else value for key, value in inputs.items()}
        return self.net(**inputs)

    def _step(self, batch: Mapping[str, torch.Tensor], stage: str) -> torch.Tensor:
        logits = self(batch)
        loss = self.loss(logits, self._loss_target(batch))
        self.log_loss(stage, loss, len(logits))
        self.metrics[f"{stage}_metrics"].update(logits.detach(), batch["label"])
        return loss

    def log_loss(self, stage: str, loss: torch.Tensor, batch_size: int) -> None:
        """Log ``{stage}/loss`` without a host sync per step: the value stays on the device
        and is read only when Lightning writes a log row (``trainer.log_every_n_steps``)
        and at epoch end. Progress-bar values are read on every refresh, so the training
        loss is not shown there per step (its epoch mean is in the logs)."""
        training = stage == "train"
        self.log(f"{stage}/loss", loss.detach(), on_step=training, on_epoch=True,
                 prog_bar=not training, batch_size=batch_size, sync_dist=not training)

    def _loss_target(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``batch["target"]`` for losses declaring ``uses_soft_target``, else the labels."""
        if not getattr(self.loss, "uses_soft_target", False):
            return batch["label"]
        if "target" not in batch:
            raise ValueError(f"{type(self.loss).__name__} trains on soft targets "
                             f"(batch['target']), but this dataset provides none; use a "
                             f"dataset with soft labels (data=ferplus) or loss=ce")
        return batch["target"]

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def _epoch_end(self, stage: str) -> None:
        scalars, per_class, confusion = split_results(self.metrics[f"{stage}_metrics"].compute(),
                                                      self.class_names)
        self.metrics[f"{stage}_metrics"].reset()
        self.log_dict({f"{stage}/{name}": value for name, value in scalars.items()},
                      prog_bar=stage != "train")
        self.log_dict({f"{stage}/acc_{name}": value for name, value in per_class.items()})
        self.results[stage] = {"metrics": scalars, "per_class_acc": per_class,
                               "confusion_matrix": confusion}

    def on_train_epoch_end(self) -> None:
        self._epoch_end("train")

    def on_validation_epoch_end(self) -> None:
        self._epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._epoch_end("test")

    def configure_optimizers(self) -> Any:
        optimizer_cfg = {key: value for key, value in self.hparams.optimizer.items()
                         if key not in PARAM_GROUP_KEYS}
        # partial: instantiate would turn the group dicts into DictConfigs
        optimizer_cfg.update(fused_option(str(optimizer_cfg.get("_target_", "")),
                                          self.device.type, self.fused_optimizer, optimizer_cfg))
        optimizer = hydra.utils.instantiate(optimizer_cfg, _partial_=True)(self._param_groups())
        scheduler_cfg = self.hparams.scheduler
        if not scheduler_cfg or scheduler_cfg.get("_target_") is None:
            return optimizer
        scheduler_cfg = OmegaConf.to_container(OmegaConf.create(dict(scheduler_cfg)))
        lightning_keys = {key: scheduler_cfg.pop(key) for key in LIGHTNING_SCHEDULER_KEYS
                          if key in scheduler_cfg}
        scheduler = hydra.utils.instantiate(scheduler_cfg, optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, **lightning_keys}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[METADATA_KEY] = checkpoint_metadata(self.run_config, self.class_names,
                                                       self.run_choices)


