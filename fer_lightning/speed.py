"""Speed switches of the ``trainer`` config group that are not Trainer arguments.

``trainer.compile`` (``torch.compile`` of the net, in place so checkpoints keep their
keys), ``trainer.channels_last`` (NHWC memory format for the net and its image inputs)
and ``trainer.fused_optimizer`` (Adam / AdamW's fused kernels when the module is on a
CUDA device). ``trainer.benchmark`` (cudnn.benchmark) is Lightning's own argument. None
of them changes what a step computes, only how fast (docs/speed.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

#: Keys of the trainer group read here and removed before the Trainer is built.
SPEED_KEYS = ("compile", "channels_last", "fused_optimizer")
#: Optimizers with a fused implementation in PyTorch.
FUSED_OPTIMIZERS = ("Adam", "AdamW")


@dataclass(frozen=True)
class SpeedSwitches:
    """The switches of one run (all off: plain eager PyTorch)."""

    compile: bool = False
    channels_last: bool = False
    fused_optimizer: bool = False

    @classmethod
    def from_trainer_config(cls, trainer_cfg: Mapping[str, Any] | None) -> SpeedSwitches:
        """Read the switches from ``cfg.trainer``; absent keys (older runs) are off."""
        trainer_cfg = trainer_cfg or {}
        values = {key: trainer_cfg.get(key, False) for key in SPEED_KEYS}
        for key, value in values.items():
            if not isinstance(value, bool):
                raise ValueError(f"trainer.{key} must be true or false, got {value!r}")
        return cls(**values)


def trainer_arguments(trainer_cfg: DictConfig) -> DictConfig:
    """``cfg.trainer`` without the speed switches: what ``lightning.Trainer`` accepts.
    Resolved first: a detached copy could not resolve ``${paths.output_dir}``."""
    plain = OmegaConf.to_container(trainer_cfg, resolve=True)
    for key in SPEED_KEYS:
        plain.pop(key, None)
    return OmegaConf.create(plain)


def apply_speed_switches(module: Any, switches: SpeedSwitches,
                         compile_options: Mapping[str, Any] | None = None) -> Any:
    """Set ``switches`` on a FERClassifier-like ``module`` (its ``net``, its
    ``channels_last`` and ``fused_optimizer`` flags); returns the module.
    ``compile_options`` go to ``torch.compile`` (default: the inductor backend)."""
    import torch  # here: the config checks read SPEED_KEYS before torch is imported

    module.channels_last = switches.channels_last
    module.fused_optimizer = switches.fused_optimizer
    if switches.channels_last:
        module.net.to(memory_format=torch.channels_last)
    if switches.compile:
        module.net.compile(**dict(compile_options or {}))
    return module


def fused_option(optimizer_target: str, device_type: str, fused: bool,
                 optimizer_cfg: Mapping[str, Any]) -> dict[str, bool]:
    """``{"fused": True}`` when fusing is asked for, the device is CUDA, the optimizer has
    a fused kernel and the optimizer config does not set ``fused`` itself; else ``{}``."""
    name = optimizer_target.rsplit(".", 1)[-1]
    if fused and device_type == "cuda" and name in FUSED_OPTIMIZERS \
            and "fused" not in optimizer_cfg:
        return {"fused": True}
    return {}
