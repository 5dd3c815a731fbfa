"""Checks on a composed config that fail before training, with the key and allowed values.

Hydra already rejects an unknown group option (``model=foo``) and lists the options; these
checks cover values inside groups and combinations of groups.
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from fer_lightning.checks import check_choice
from fer_lightning.config_checks import data_problems, unknown_keys
from fer_lightning.data.sources import validate
from fer_lightning.errors import ConfigError, error_line
from fer_lightning.launch import available_cpus
from fer_lightning.lazy import exports_of, lazy_exports
from fer_lightning.resolvers import (  # noqa: F401  (registers the resolvers; also importable here)
    INVALID_TASK_DIR,
    TASK_NAME,
    check_task_name,
    task_dir,
)
from fer_lightning.signatures import signature

#: Device files present wherever a GPU driver is (NVIDIA, WSL's GPU bridge, AMD ROCm).
GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia", "/dev/dxg",
                    "/dev/kfd")


#: ``build_net`` and ``net_class`` stay importable from here, imported when asked for.
__getattr__ = lazy_exports(__name__, exports_of("fer_lightning.nets.factory", "build_net",
                                                "net_class"))

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


def _fits(value: Any, scalars: Collection[type]) -> bool:
    if isinstance(value, bool):
        return bool in scalars
    if isinstance(value, int):
        return bool(scalars & {int, float})
    return type(value) in scalars


def _describe(scalars: Collection[type]) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    if float in scalars:
        scalars = scalars - {int}
    return " or ".join(names[kind] for kind in (int, float, bool, str) if kind in scalars)


def _check_against_signature(cfg: DictConfig, key: str, skip: tuple[str, ...] = (),
                             allow_import: bool = True) -> None:
    """Each scalar value of the node at ``key`` must have the type its ``_target_``'s
    signature declares (``optimizer.lr=abc`` names the key instead of failing in Adam).
    Without ``allow_import``, only a signature cached by ``fer_lightning.signatures``."""
    node = OmegaConf.select(cfg, key)
    if not isinstance(node, DictConfig) or not isinstance(node.get("_target_"), str):
        return  # scheduler=none's `_target_: null`: get_class would log a stray error line
    found = signature(node._target_, allow_import=allow_import)
    if found is None:
        return  # an unimportable target fails later with its own message
    for name in node:
        if name.startswith("_") or name in skip or name not in found.scalars \
                or OmegaConf.is_missing(node, name):
            continue
        value = node[name]
        if OmegaConf.is_config(value) or isinstance(value, list | dict):
            continue
        scalars, optional = found.scalars[name]
        if value is None and optional or value is not None and _fits(value, scalars):
            continue
        raise ConfigError(f"{key}.{name} must be {_describe(scalars)}"
                          f"{' or null' if optional else ''}, got {_shown(value)}")


def _check_values(cfg: DictConfig, allow_import: bool = True) -> None:
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
        _check_against_signature(cfg, key, allow_import=allow_import)
    _check_against_signature(cfg, "model", skip=("name", "module"), allow_import=allow_import)
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
    import torch

    from fer_lightning.nets.factory import build_net

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


def preflight(cfg: DictConfig) -> None:
    """The part of :func:`check_config` that needs nothing imported: top-level and
    ``paths`` keys, the keys and scalar types of nodes whose targets'
    signatures are cached (``fer_lightning.signatures``), values and ranges. A training
    command runs it before torch and Lightning are imported, so most config errors
    answer within a second; :func:`check_config` then checks everything."""
    unknown = unknown_keys(cfg, allow_import=False)
    if unknown:
        raise ConfigError("\n".join(unknown))
    _check_values(cfg, allow_import=False)
    problems = data_problems(cfg)
    if problems:
        raise ConfigError("\n".join(problems))


def check_config(cfg: DictConfig) -> None:
    """Raise ConfigError for the first value or combination that cannot run."""
    from fer_lightning.nets.factory import net_class

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


def may_have_a_gpu() -> bool:
    """False where torch cannot see a GPU, known without importing torch (seconds of
    CPU): a Linux machine with none of the device files a GPU driver creates."""
    return sys.platform != "linux" or any(Path(path).exists() for path in GPU_DEVICE_FILES)


def _cuda_devices() -> int:
    """How many CUDA GPUs torch sees (0 when it cannot use CUDA)."""
    if not may_have_a_gpu():
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _mps_available() -> bool:
    if sys.platform != "darwin":
        return False
    import torch

    return torch.backends.mps.is_available()


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
    asks_for_cuda = accelerator in ("gpu", "cuda")
    gpus = _cuda_devices() if asks_for_cuda or accelerator == "auto" else 0
    if asks_for_cuda and gpus == 0:
        raise ConfigError(f"trainer.accelerator={accelerator} needs a CUDA GPU and none is "
                          f"visible on this machine (torch.cuda.is_available() is False); "
                          f"{_cpu_hint(cfg)}")
    if gpus > 0:  # Lightning runs on CUDA (``auto`` picks a visible GPU)
        wanted = devices if _is_int(devices) else len(devices) if OmegaConf.is_list(devices) else 0
        if wanted > gpus:
            raise ConfigError(f"trainer.devices={devices} but only {gpus} GPU(s) are visible")
        return []
    if accelerator == "mps" or accelerator == "auto" and _mps_available():
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


def synthetic_hint(cfg: DictConfig) -> str:
    """How to run the same configuration on the embedded synthetic faces."""
    overrides = ["data=synthetic"]
    if cfg.landmarks.enabled and cfg.landmarks.name != "groundtruth":
        overrides.append("landmarks=groundtruth")  # exact landmarks, nothing to extract
    return ("Point data.root at your copy (data.root=/path/to/dataset), or run the same "
            f"configuration on the embedded synthetic faces: add {' '.join(overrides)}")


def check_data_root(cfg: DictConfig) -> None:
    """Where ``data.root`` is set and missing on disk: ConfigError with the dataset
    source's own message (the path and the layout it expects) and the experiment's
    ``hint_without_data`` or the overrides that run on synthetic faces. Only the source
    is built (numpy, no torch), so a missing dataset is named within a second."""
    root = cfg.data.get("root")
    source = cfg.data.get("source")
    if root is None or Path(str(root)).exists() or not isinstance(source, DictConfig):
        return
    try:
        instantiate(source)
    except Exception as error:  # noqa: BLE001 - only a missing path is answered here
        missing = missing_dataset_error(cfg, error)
        if missing is not None:  # anything else: the full build reports it
            raise missing from None


def missing_dataset_error(cfg: DictConfig, error: BaseException) -> ConfigError | None:
    """For an error raised while the dataset was opened whose cause is a missing file:
    the ConfigError naming it (the source's message, with the path and the layout it
    expects) and the experiment's ``hint_without_data`` or the overrides that run the
    same configuration on synthetic faces; None for any other error."""
    missing = next((link for link in validate.causes(error)
                    if isinstance(link, FileNotFoundError)), None)
    if missing is None:
        return None
    hint = cfg.get("hint_without_data") or synthetic_hint(cfg)
    return ConfigError(f"{missing}\n{hint}")


def check_hardware_and_data(cfg: DictConfig) -> list[str]:
    """``check_hardware``; when the hardware is missing and so is the dataset (a paper's GPU
    command on a laptop), one error names both problems and the command that runs here, so
    a fix for the first does not only reveal the second."""
    try:
        warnings = check_hardware(cfg)
    except ConfigError as hardware:
        try:
            check_data_root(cfg)
        except ConfigError as data:
            fix = "" if "trainer=cpu" in str(data) else \
                "\nOn synthetic faces and this machine's CPU: add data=synthetic trainer=cpu"
            raise ConfigError(f"2 problems stop this run:\n1. {hardware}\n2. {data}{fix}") \
                from None
        raise
    check_data_root(cfg)
    return warnings
