"""The one place a config becomes objects: the net (fresh, or trained from a checkpoint),
the datamodule and its no-data hint, the loss, the LightningModule, loggers, callbacks,
the Trainer and its plugins, and a checkpoint written without training.

Every command (train, eval, predict, export, ``data summary``) and the benchmarks build
through these functions, so a config means the same objects everywhere. Below this
module live the pieces it assembles (``nets``, ``data``, ``modules``, ``checkpoint``);
above it the commands.
"""

from __future__ import annotations

import inspect
import logging
import netrc
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class, instantiate
from lightning.fabric.plugins.environments import SLURMEnvironment
from omegaconf import DictConfig, OmegaConf

from fer_lightning import checkpoint as ckpt
from fer_lightning.callbacks import LastCheckpoint
from fer_lightning.config import missing_dataset_error
from fer_lightning.data.datamodule import FERDataModule
from fer_lightning.data.landmarks.config import LandmarksConfig
from fer_lightning.data.sources import validate
from fer_lightning.data.sources.fer2013 import CLASS_NAMES
from fer_lightning.modules.classifier import FERClassifier
from fer_lightning.nets.factory import build_net, net_class  # noqa: F401  (also importable here)
from fer_lightning.resume import AtomicCheckpointIO
from fer_lightning.speed import trainer_arguments

log = logging.getLogger(__name__)


def as_plain_dict(config: DictConfig | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Resolve a config node into plain containers, the form saved into checkpoints."""
    if config is None:
        return None
    if isinstance(config, DictConfig):
        return OmegaConf.to_container(config, resolve=True)
    return dict(config)


def build_datamodule(cfg: DictConfig) -> FERDataModule:
    """The DataModule of ``cfg.data``, given the validated landmark settings of
    ``cfg.landmarks`` and told which landmark encoding the net consumes."""
    landmarks = LandmarksConfig.from_mapping(cfg.landmarks)  # fails before data is read
    make = instantiate(cfg.data, _partial_=True)  # objects are passed as they are
    return make(landmarks=landmarks,
                landmark_encoding=net_class(cfg).landmark_encoding)


def build_datamodule_or_hint(cfg: DictConfig) -> FERDataModule:
    """``build_datamodule``; a dataset missing on disk ends the run at once with the
    source's message (path and expected layout) plus the experiment's ``hint_without_data``
    or, by default, the overrides that run the same configuration on synthetic faces.
    Any other error reading the dataset becomes its one-line Config or Dataset error
    (``sources.validate.user_error``), as the data summary prints it."""
    try:
        return build_datamodule(cfg)
    except Exception as error:
        missing = missing_dataset_error(cfg, error)
        if missing is not None:
            raise missing from None
        known = validate.user_error(error)
        if known is None:
            raise
        raise known from None


def build_module(cfg: DictConfig, net: torch.nn.Module, loss: torch.nn.Module,
                 class_names: list[str]) -> FERClassifier:
    """The LightningModule named by ``model.module._target_`` (FERClassifier when absent),
    given the rest of ``model.module`` as keyword arguments (e.g. loss weights)."""
    module_cfg = as_plain_dict(cfg.model.get("module")) or {}
    target = module_cfg.pop("_target_", None)
    module_class = get_class(target) if target else FERClassifier
    module = module_class(net, loss, class_names, optimizer=as_plain_dict(cfg.optimizer),
                          scheduler=as_plain_dict(cfg.scheduler), **module_cfg)
    module.run_config, module.run_choices = run_config(cfg)  # saved into its checkpoints
    return module


def build_loss(loss_cfg: DictConfig, class_counts: list[int]) -> torch.nn.Module:
    """The loss of ``cfg.loss``; losses that take ``class_counts`` get the training split's."""
    parameters = inspect.signature(get_class(loss_cfg._target_)).parameters
    extra = {"class_counts": class_counts} if "class_counts" in parameters else {}
    return instantiate(loss_cfg, **extra)


def instantiable_nodes(group: DictConfig | None) -> list[DictConfig]:
    """The entries of a group of named objects (loggers, callbacks) that are switched on;
    an entry set to null (``callbacks.progress_bar=null``) is switched off."""
    return [node for node in (group or {}).values() if node is not None and "_target_" in node]


def wandb_key_available() -> bool:
    """True when W&B can authenticate: WANDB_API_KEY or a ``wandb login`` netrc entry."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def build_loggers(logger_cfg: DictConfig | None, verbose: bool = False) -> list[Any]:
    """Instantiate every logger of ``cfg.logger``; W&B goes offline without an API key.

    Lightning's WandbLogger always hands ``anonymous=None`` to ``wandb.init``, on which W&B
    warns that the (deprecated) setting has no effect; unless the config sets ``anonymous``
    or ``verbose``, the key is not passed."""
    loggers = []
    for conf in instantiable_nodes(logger_cfg):
        wandb = conf._target_.endswith("WandbLogger")
        if wandb and not conf.get("offline", False) \
                and os.environ.get("WANDB_MODE") != "offline" and not wandb_key_available():
            log.warning("No W&B API key found (WANDB_API_KEY or `wandb login`): logging "
                        "offline under %s; upload later with `wandb sync`.", conf.save_dir)
            conf = OmegaConf.merge(conf, {"offline": True})
        logger = instantiate(conf)
        if wandb and conf.get("anonymous") is None and not verbose:
            logger._wandb_init.pop("anonymous", None)
        loggers.append(logger)
    return loggers


def build_callbacks(callbacks_cfg: DictConfig | None) -> list[L.Callback]:
    """Instantiate every callback of ``cfg.callbacks``; ``last.ckpt`` writers go last, so
    the state they save includes this epoch's update of the best-checkpoint record."""
    callbacks = [instantiate(conf) for conf in instantiable_nodes(callbacks_cfg)]
    return sorted(callbacks, key=lambda callback: isinstance(callback, LastCheckpoint))


def build_trainer(trainer_cfg: DictConfig, callbacks_cfg: DictConfig | None,
                  **kwargs: Any) -> L.Trainer:
    """The Trainer of ``cfg.trainer`` with the callbacks of ``cfg.callbacks``; with
    ``callbacks.progress_bar=null`` no progress bar at all (Lightning would add its own)."""
    if callbacks_cfg is not None and "progress_bar" in callbacks_cfg \
            and callbacks_cfg.progress_bar is None:
        kwargs.setdefault("enable_progress_bar", False)
    return instantiate(trainer_arguments(trainer_cfg), callbacks=build_callbacks(callbacks_cfg),
                       **kwargs)


def build_plugins(trainer_cfg: DictConfig) -> list[Any]:
    """``trainer.plugins`` plus atomic checkpoint writes and, under SLURM, Lightning's SLURM
    environment with its own auto-requeue off: the job's launcher (submitit) requeues, and
    the requeued job resumes from its run folder's last.ckpt (``ckpt_path=auto``)."""
    plugins = list(instantiate(trainer_cfg.get("plugins")) or [])
    strategy = str(trainer_cfg.get("strategy", "auto"))
    if not any(word in strategy for word in ("fsdp", "deepspeed")):  # they write their own
        plugins.append(AtomicCheckpointIO())
    if SLURMEnvironment.detect():
        plugins.append(SLURMEnvironment(auto_requeue=False))
    return plugins


def run_config(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, str]]:
    """(the resolved config as plain containers, the Hydra group options it was composed
    from) of a run: what its checkpoints store. The options are empty outside Hydra."""
    config = OmegaConf.to_container(cfg, resolve=True)
    choices: dict[str, str] = {}
    if HydraConfig.initialized():
        choices = {str(group): str(option) for group, option in
                   HydraConfig.get().runtime.choices.items()
                   if option is not None and not str(group).startswith("hydra")}
    return config, choices


def write_checkpoint(cfg: DictConfig, path: str | Path,
                     class_names: Sequence[str] | None = None) -> Path:
    """A checkpoint of the module ``cfg`` configures, with freshly initialised weights
    (benchmarks and tests of eval / predict / export without training first): the state
    dict and metadata a training run writes, no loop state to resume from. Class names
    default to FER2013's seven."""
    names = list(class_names or CLASS_NAMES)
    net = build_net(cfg, len(names))
    module = build_module(cfg, net, build_loss(cfg.loss, [1] * len(names)), names)
    checkpoint = {"state_dict": module.state_dict(), "pytorch-lightning_version": L.__version__}
    module.on_save_checkpoint(checkpoint)  # the metadata, as a training run writes it
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path


def build_trained_net(checkpoint: Mapping[str, Any], cfg: DictConfig | None = None
                      ) -> torch.nn.Module:
    """The trained net of ``checkpoint`` (``cfg``: its config, default the stored one), in
    eval mode on the CPU. Built on the meta device, so neither a random initialisation
    nor ``model.pretrained_path`` (maybe absent on this machine) is touched, then given
    the checkpoint's tensors."""
    cfg = ckpt.stored_config(checkpoint) if cfg is None else cfg
    with torch.device("meta"):
        net = build_net(cfg, len(ckpt.class_names(checkpoint)))
    state = {key.removeprefix("net."): value for key, value in checkpoint["state_dict"].items()
             if key.startswith("net.")}
    ckpt.load_state(net, state, "the net")
    return net.eval()
