"""Checks on a composed config that fail before training, with the key and allowed values.

Hydra already rejects an unknown group option (``model=foo``) and lists the options; these
checks cover values inside groups and combinations of groups.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from fer_lightning.nets.base import FERNet

PRECISIONS = ("32", "32-true", "16-mixed", "bf16-mixed")

# `${launch_dir:}` in configs: the directory the command was started from (runs never
# chdir). Unlike `${hydra:runtime.cwd}` it also resolves while a multirun launcher computes
# its sweep directory, before Hydra's per-job state exists.
OmegaConf.register_new_resolver("launch_dir", os.getcwd, replace=True)


def compose_config(overrides: Sequence[str], output_dir: str | Path) -> DictConfig:
    """Compose ``conf/train.yaml`` with ``overrides`` outside the CLI (tests, benchmarks,
    notebooks), with every path pointed at ``output_dir``; ``train(cfg)`` runs it."""
    output_dir = str(output_dir)
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="fer_lightning.conf", version_base="1.3"):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = output_dir
        cfg.hydra.runtime.cwd = output_dir
        cfg.hydra.job.num = 0
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.root_dir = output_dir
        cfg.paths.output_dir = output_dir
        del cfg.hydra
    return cfg


class ConfigError(ValueError):
    """A config value or combination that cannot run; the message names the key."""


def _positive_int(cfg: DictConfig, key: str) -> None:
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"data.{key} must be a positive integer, got {value!r}")


def net_class(cfg: DictConfig) -> type[FERNet]:
    """The network family named by ``model._target_``: a FERNet subclass, whose declared
    contract (``nets/base.py``) the checks read before anything is built."""
    family = get_class(cfg.model._target_)
    if not (isinstance(family, type) and issubclass(family, FERNet)):
        raise ConfigError(f"model._target_={cfg.model._target_} is not a network family: "
                          f"it must subclass fer_lightning.nets.base.FERNet")
    return family


def build_net(cfg: DictConfig, num_classes: int) -> torch.nn.Module:
    """The network of ``cfg.model`` sized for the data, with the ``cfg.head`` head."""
    head = {key: value for key, value in OmegaConf.to_container(cfg.head, resolve=True).items()
            if key != "name"}
    # ``module`` names the LightningModule and its arguments (train.build_module).
    model_cfg = {key: value for key, value in cfg.model.items() if key not in ("name", "module")}
    return instantiate(model_cfg, num_classes=num_classes, in_channels=cfg.data.channels,
                       image_size=cfg.data.image_size, head=head,
                       use_landmarks=bool(cfg.landmarks.enabled), _convert_="all")


def _check_net_builds(cfg: DictConfig) -> None:
    """Build the net on the meta device (no memory, no compute), so that what only the
    family knows (e.g. the smallest input it takes) fails before any data is read."""
    try:
        with torch.device("meta"):
            build_net(cfg, num_classes=2)
    except InstantiationException as error:
        raise ConfigError(str(error.__cause__ or error)) from None


def _check_soft_labels(cfg: DictConfig) -> None:
    """FER+ label modes other than majority train on vote distributions; a hard-label loss
    would silently train on their argmax instead."""
    label_mode = cfg.data.get("source", {}).get("label_mode")
    uses_soft = getattr(get_class(cfg.loss._target_), "uses_soft_target", False)
    if label_mode not in (None, "majority") and not uses_soft:
        raise ConfigError(f"data.source.label_mode={label_mode} trains on soft vote "
                          f"distributions: add loss=soft_ce (or use label_mode=majority)")


def check_config(cfg: DictConfig) -> None:
    """Raise ConfigError for the first value or combination that cannot run."""
    for key in ("batch_size", "image_size"):
        _positive_int(cfg.data, key)
    if cfg.data.get("num_workers", 0) < 0:
        raise ConfigError(f"data.num_workers must be >= 0, got {cfg.data.num_workers}")
    precision = str(cfg.trainer.get("precision", "32"))
    if precision not in PRECISIONS:
        raise ConfigError(f"trainer.precision={precision!r} is not supported; "
                          f"allowed values: {list(PRECISIONS)}")
    net = net_class(cfg)
    if cfg.head.pool not in net.supported_heads:
        raise ConfigError(
            f"model={cfg.model.name} cannot honour head={cfg.head.name} "
            f"(head.pool={cfg.head.pool!r}); it supports head.pool in "
            f"{list(net.supported_heads)}"
        )
    if cfg.landmarks.enabled and net.landmark_encoding is None:
        raise ConfigError(f"model={cfg.model.name} cannot use landmarks; "
                          f"set landmarks=none")
    _check_soft_labels(cfg)
    _check_net_builds(cfg)


def find_last_checkpoint(log_dir: str | Path, task_name: str) -> Path:
    """The newest ``last.ckpt`` among earlier runs of ``task_name`` (for ``ckpt_path=last``)."""
    task_dir = Path(log_dir) / task_name
    candidates = sorted(task_dir.glob("**/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise ConfigError(f"ckpt_path=last: no checkpoints/last.ckpt under {task_dir} "
                          f"(runs of task_name={task_name!r})")
    return candidates[-1]


def resolve_ckpt_path(cfg: DictConfig) -> str | None:
    """``ckpt_path`` as a file path: ``last`` is looked up, other paths must exist."""
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path is None:
        return None
    if str(ckpt_path) == "last":
        return str(find_last_checkpoint(cfg.paths.log_dir, cfg.task_name))
    if not Path(ckpt_path).is_file():
        raise ConfigError(f"ckpt_path={ckpt_path!r}: no such checkpoint file")
    return str(ckpt_path)
