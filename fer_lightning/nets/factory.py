"""A config's network: its family class and the net built from ``cfg.model`` and
``cfg.head``. Here rather than in ``fer_lightning.build`` so that the config checks
(``fer_lightning.config``) build a net on the meta device without importing Lightning."""

from __future__ import annotations

from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from fer_lightning.errors import ConfigError
from fer_lightning.nets.base import FERNet


def net_class(cfg: DictConfig) -> type[FERNet]:
    """The network family named by ``model._target_``: a FERNet subclass, whose declared
    contract (``nets/base.py``) the checks read before anything is built."""
    family = get_class(cfg.model._target_)
    if not (isinstance(family, type) and issubclass(family, FERNet)):
        raise ConfigError(f"model._target_={cfg.model._target_} is not a network family: "
                          f"it must subclass fer_lightning.nets.base.FERNet")
    return family


def build_net(cfg: DictConfig, num_classes: int) -> nn.Module:
    """The network of ``cfg.model`` sized for the data, with the ``cfg.head`` head."""
    head = {key: value for key, value in OmegaConf.to_container(cfg.head, resolve=True).items()
            if key != "name"}
    # ``module`` names the LightningModule and its arguments (build_module).
    model_cfg = {key: value for key, value in cfg.model.items() if key not in ("name", "module")}
    return instantiate(model_cfg, num_classes=num_classes, in_channels=cfg.data.channels,
                       image_size=cfg.data.image_size, head=head,
                       use_landmarks=bool(cfg.landmarks.enabled), _convert_="all")
