"""Checks on a composed config that fail before training, with the key and allowed values.

Hydra already rejects an unknown group option (``model=foo``) and lists the options; these
checks cover values inside groups and combinations of groups.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf, open_dict

from fer_lightning.build import build_net, net_class  # noqa: F401  (also importable here)
from fer_lightning.checks import check_choice
from fer_lightning.config_checks import data_problems, unknown_keys
from fer_lightning.errors import ConfigError, error_line
from fer_lightning.launch import available_cpus
from fer_lightning.resolvers import (  # noqa: F401  (registers the resolvers; also importable here)
    INVALID_TASK_DIR,
    TASK_NAME,
    check_task_name,
    task_dir,
)

PRECISIONS = ("32", "32-true", "16-mixed", "bf16-mixed")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
#: ``callbacks.progress_bar.style``: a live bar on a terminal and log lines elsewhere, or either.
PROGRESS_STYLES = ("auto", "rich", "lines")
def compose_config(overrides: Sequence[str], output_dir: str | Path,
                   config_name: str = "train") -> DictConfig:
    """Compose ``conf/train.yaml`` (or ``conf/<config_name>.yaml``: eval, predict, export)
    with ``overrides`` outside the CLI (tests, benchmarks, notebooks), with every path
    pointed at ``output_dir``; ``train(cfg)`` runs it."""
    output_dir = str(output_dir)
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="fer_lightning.conf", version_base="1.3"):
        cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
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


def user_error_exit(error: Exception) -> SystemExit:
    """What an entry point raises for a user error: the message alone, prefixed with the
    kind of error (``errors.FerError.prefix``; no traceback, exit status 1)."""
    return SystemExit(error_line(error))


def _shown(value: Any) -> str:
    """A value as a message quotes it: ``'abc'``, ``-1``, ``null``."""
    return "null" if value is None else repr(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _int_at_least(cfg: DictConfig, key: str, minimum: int, *, also: tuple[Any, ...] = (),
                  meaning: str = "") -> None:
    """``key`` must be an integer >= ``minimum`` or one of ``also`` (e.g. None, -1)."""
    value = OmegaConf.select(cfg, key)
    if value in also and not isinstance(value, bool) or _is_int(value) and value >= minimum:
        return
    expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
    raise ConfigError(f"{key} must be {expected}{meaning}, got {_shown(value)}")


def _number_at_least(cfg: DictConfig, key: str, minimum: float, *,
                     optional: bool = False) -> None:
    """``key`` must be a number >= ``minimum`` (or null when ``optional``)."""
    value = OmegaConf.select(cfg, key)
    if value is None and optional or _is_number(value) and value >= minimum:
        return
    raise ConfigError(f"{key} must be a number >= {minimum:g}, got {_shown(value)}")


def _limit_batches(cfg: DictConfig, key: str) -> None:
    value = OmegaConf.select(cfg, key)
    if value is None or _is_int(value) and value >= 0 \
            or isinstance(value, float) and 0.0 <= value <= 1.0:
        return
    raise ConfigError(f"{key} must be null, a number of batches (integer >= 0) or a fraction "
                      f"in [0.0, 1.0], got {value!r}")


def _check_trainer_values(cfg: DictConfig) -> None:
    """The Trainer's numbers, before Lightning asserts on them deep inside ``fit``."""
    _int_at_least(cfg, "trainer.max_epochs", 1, also=(None, -1), meaning=" (or -1: no limit)")
    _int_at_least(cfg, "trainer.min_epochs", 0, also=(None,))
    max_epochs, min_epochs = cfg.trainer.get("max_epochs"), cfg.trainer.get("min_epochs")
    if _is_int(max_epochs) and max_epochs > 0 and _is_int(min_epochs) and min_epochs > max_epochs:
        raise ConfigError(f"trainer.min_epochs={min_epochs} exceeds "
                          f"trainer.max_epochs={max_epochs}")
    _int_at_least(cfg, "trainer.max_steps", 1, also=(None, -1), meaning=" (or -1: no limit)")
    _int_at_least(cfg, "trainer.check_val_every_n_epoch", 1, also=(None,))
    _int_at_least(cfg, "trainer.log_every_n_steps", 1, also=(None,))
    _int_at_least(cfg, "trainer.accumulate_grad_batches", 1, also=(None,))
    _int_at_least(cfg, "trainer.num_nodes", 1, also=(None,))
    _number_at_least(cfg, "trainer.gradient_clip_val", 0.0, optional=True)
    for stage in ("train", "val", "test"):
        _limit_batches(cfg, f"trainer.limit_{stage}_batches")
    fast_dev_run = cfg.trainer.get("fast_dev_run", False)
    if not (isinstance(fast_dev_run, bool) or _is_int(fast_dev_run) and fast_dev_run >= 0):
        raise ConfigError(f"trainer.fast_dev_run must be true, false or a number of batches, "
                          f"got {fast_dev_run!r}")
    devices = cfg.trainer.get("devices", "auto")
    if not (devices == "auto" or _is_int(devices) and (devices >= 1 or devices == -1)
            or OmegaConf.is_list(devices) and devices and all(map(_is_int, devices))):
        raise ConfigError(f"trainer.devices must be a positive integer, -1 (every GPU), 'auto' "
                          f"or a list of device indices, got {devices!r}")
    try:
        check_choice("trainer.accelerator", cfg.trainer.get("accelerator", "auto"), ACCELERATORS)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    precision = str(cfg.trainer.get("precision", "32"))
    if precision not in PRECISIONS:
        raise ConfigError(f"trainer.precision={precision!r} is not supported; "
                          f"allowed values: {list(PRECISIONS)}")


def _scalar_types(hint: Any) -> tuple[set[type], bool] | None:
    """The scalar types (int, float, bool, str) a type hint admits and whether it admits
    None; None when the hint names no scalar type (containers, tensors, classes)."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    options = typing.get_args(hint) if union else (hint,)
    scalars = {option for option in options if option in (int, float, bool, str)}
    return (scalars, type(None) in options) if scalars else None


def _fits(value: Any, scalars: set[type]) -> bool:
    if isinstance(value, bool):
        return bool in scalars
    if isinstance(value, int):
        return bool(scalars & {int, float})
    return type(value) in scalars


def _describe(scalars: set[type]) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    if float in scalars:
        scalars = scalars - {int}
    return " or ".join(names[kind] for kind in (int, float, bool, str) if kind in scalars)


def _check_against_signature(cfg: DictConfig, key: str, skip: tuple[str, ...] = ()) -> None:
    """Each scalar value of the node at ``key`` must have the type its ``_target_``'s
    signature declares (``optimizer.lr=abc`` names the key instead of failing in Adam)."""
    node = OmegaConf.select(cfg, key)
    if not isinstance(node, DictConfig) or not isinstance(node.get("_target_"), str):
        return  # scheduler=none's `_target_: null`: get_class would log a stray error line
    try:
        hints = typing.get_type_hints(get_class(node._target_).__init__)
    except Exception:  # noqa: BLE001 - an unimportable target fails later with its own message
        return
    for name in node:
        if name.startswith("_") or name in skip or name not in hints \
                or OmegaConf.is_missing(node, name):
            continue
        value = node[name]
        if OmegaConf.is_config(value) or isinstance(value, list | dict):
            continue
        accepted = _scalar_types(hints[name])
        if accepted is None:
            continue
        scalars, optional = accepted
        if value is None and optional or value is not None and _fits(value, scalars):
            continue
        raise ConfigError(f"{key}.{name} must be {_describe(scalars)}"
                          f"{' or null' if optional else ''}, got {_shown(value)}")


def _check_values(cfg: DictConfig) -> None:
    """Types and ranges of the values a user types on the command line, each named by its
    key, before any data is read or any object built."""
    check_task_name(cfg.get("task_name"))
    seed = cfg.get("seed")
    if not _is_int(seed) or not 0 <= seed < 2**32:
        raise ConfigError(f"seed must be an integer in [0, 2**32), got {_shown(seed)}")
    for key in ("batch_size", "image_size", "channels"):
        if key in cfg.data:
            _int_at_least(cfg, f"data.{key}", 1)
    _int_at_least(cfg, "data.num_workers", 0, also=(None,))
    _check_trainer_values(cfg)
    for key in ("optimizer", "scheduler", "loss", "data.source"):
        _check_against_signature(cfg, key)
    _check_against_signature(cfg, "model", skip=("name", "module"))
    source = cfg.data.get("source") or {}
    for name, value in source.items():
        # split sizes are counts (a float would be a fraction, a source's own business)
        if name.endswith("_size") and value is not None and not isinstance(value, float):
            _int_at_least(cfg, f"data.source.{name}", 1)
    for name in ("lr", "weight_decay", "momentum"):
        if name in cfg.optimizer:
            _number_at_least(cfg, f"optimizer.{name}", 0.0)
    every_n_steps = OmegaConf.select(cfg, "callbacks.last_checkpoint.every_n_train_steps")
    if every_n_steps is not None:
        _int_at_least(cfg, "callbacks.last_checkpoint.every_n_train_steps", 1)
    _check_progress_bar(cfg)


def _check_progress_bar(cfg: DictConfig) -> None:
    """``callbacks.progress_bar``'s style and line intervals (see fer_lightning.progress)."""
    node = OmegaConf.select(cfg, "callbacks.progress_bar")
    if not isinstance(node, DictConfig):
        return
    if "style" in node and node.style not in PROGRESS_STYLES:
        raise ConfigError(f"callbacks.progress_bar.style must be one of "
                          f"{list(PROGRESS_STYLES)}, got {_shown(node.style)}")
    if node.get("every_n_seconds") is not None \
            and not (_is_number(node.every_n_seconds) and node.every_n_seconds > 0):
        raise ConfigError(f"callbacks.progress_bar.every_n_seconds must be a positive number "
                          f"or null, got {_shown(node.every_n_seconds)}")
    if node.get("every_n_steps") is not None:
        _int_at_least(cfg, "callbacks.progress_bar.every_n_steps", 1)


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
    net = net_class(cfg)  # first: the family's keys are what the key check compares with
    unknown = unknown_keys(cfg)  # then: a misspelt key explains the errors it causes
    if unknown:
        raise ConfigError("\n".join(unknown))
    _check_values(cfg)
    problems = data_problems(cfg)
    if problems:
        raise ConfigError("\n".join(problems))
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


def _uses_gpu(trainer: DictConfig) -> bool:
    """Whether Lightning will run ``trainer`` on CUDA GPUs (``auto`` picks one if visible)."""
    accelerator = str(trainer.get("accelerator", "auto"))
    return accelerator in ("gpu", "cuda") or accelerator == "auto" and torch.cuda.is_available()


def _cpu_hint(cfg: DictConfig) -> str:
    """The overrides that run the same config on the CPU."""
    precision = " trainer.precision=32" if str(cfg.trainer.get("precision")) == "16-mixed" else ""
    hint = f"run on the CPU with: trainer=cpu{precision}"
    if cfg.trainer.get("strategy") == "ddp":
        hint += (f" (or DDP over CPU processes: trainer=ddp trainer.accelerator=cpu "
                 f"trainer.devices=2 trainer.sync_batchnorm=false{precision})")
    return hint


def check_hardware(cfg: DictConfig) -> list[str]:
    """Raise ConfigError when ``cfg.trainer`` asks for hardware this machine lacks, or for a
    setting Lightning would silently change here, naming the overrides that run; returns
    warnings for settings that run but waste the machine. Separate from
    :func:`check_config`, which judges the config alone (an experiment written for GPUs is
    a valid config on a laptop)."""
    trainer = cfg.trainer
    accelerator, devices = str(trainer.get("accelerator", "auto")), trainer.get("devices", 1)
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.accelerator={accelerator} needs a CUDA GPU and none is "
                          f"visible on this machine (torch.cuda.is_available() is False); "
                          f"{_cpu_hint(cfg)}")
    if _uses_gpu(trainer):
        wanted = devices if _is_int(devices) else len(devices) if OmegaConf.is_list(devices) else 0
        if wanted > torch.cuda.device_count():
            raise ConfigError(f"trainer.devices={devices} but only "
                              f"{torch.cuda.device_count()} GPU(s) are visible")
        return []
    if accelerator == "mps" or accelerator == "auto" and torch.backends.mps.is_available():
        return []
    problems, fixes = [], []
    if str(trainer.get("precision", "32")) == "16-mixed":
        problems.append("trainer.precision=16-mixed needs a GPU (on the CPU Lightning would "
                        "silently switch to bf16-mixed, many times slower than fp32 on most "
                        "CPUs)")
        fixes.append("trainer.precision=32")
    processes = devices if _is_int(devices) else 1
    if devices == -1:
        problems.append("trainer.devices=-1 means every GPU")
        fixes.append("trainer.devices=2")
        processes = 2
    if trainer.get("sync_batchnorm") and processes > 1:
        problems.append("trainer.sync_batchnorm=true needs GPUs (PyTorch's SyncBatchNorm runs "
                        "on GPUs only)")
        fixes.append("trainer.sync_batchnorm=false")
    if problems:
        raise ConfigError(f"{'; '.join(problems)}. This run is on the CPU: add "
                          f"{' '.join(fixes)}")
    warnings, cpus = [], available_cpus()
    workers = (cfg.data.get("num_workers") or 0) * processes
    if processes > cpus:
        warnings.append(f"trainer.devices={devices} CPU processes on {cpus} cores: they take "
                        f"turns on the same cores")
    if workers > cpus:
        warnings.append(f"data.num_workers={cfg.data.num_workers} loader processes"
                        f"{f' per device ({workers} in all)' if processes > 1 else ''} on "
                        f"{cpus} cores: they compete with training for the same cores")
    return warnings
