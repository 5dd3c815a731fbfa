"""VGG16 + CBAM (seed 002, Ghimire et al.): a VGG convolutional base, CBAM, the shared head.

- Base: torchvision's VGG16 ``features`` (13 3x3 convs + 5 max pools, built by the same
  ``torchvision.models.vgg.make_layers`` with torchvision's VGG initialisation; no weights
  are downloaded). 14,714,688 parameters at 3 input channels. ``layers`` swaps in another
  VGG-style list (ints = conv widths, ``"M"`` = 2x2 max pool), which the small-CNN
  baseline of seed 002's table uses.
- CBAM (``nets.cbam``) after the base; ``cbam=false`` gives seed 002's VGG16 baselines.
- The shared ``ClassifierHead``: seed 002's classifier is ``head=gap`` with
  ``hidden=[512, 512]`` and ``dropout=0.5`` (GAP, dropout, FC 512, dropout, FC 512,
  classifier; the experiment config sets it); ``head=fc`` flattens the 7x7x512 map instead.
- Pre-trained base from ``pretrained_path`` (``nets.pretrained``); without one, random
  weights and a logged warning. Nothing is loaded when built on the meta device.
- With landmarks on, the key-points are drawn onto the image (``overlay``), so every
  landmark ablation applies unchanged.

``finetune_base`` / ``finetune_layers`` tell ``finetune.StagedFineTuning`` what to freeze
and which convolutions to unfreeze, last first (seed 002, Methodology).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from omegaconf import DictConfig
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from fer_lightning.nets.cbam import CBAM
from fer_lightning.nets.heads import ClassifierHead
from fer_lightning.nets.pretrained import RANDOM_INIT_WARNING, load_vgg_base

log = logging.getLogger(__name__)

VGG16_LAYERS: list[int | str] = list(cfgs["D"])


def check_layers(layers: Sequence[int | str]) -> list[int | str]:
    """A VGG layer list: positive conv widths and ``"M"`` pools, starting with a conv."""
    layers = list(layers)
    valid = all(item == "M" or (isinstance(item, int) and not isinstance(item, bool)
                                and item > 0) for item in layers)
    if not layers or not valid or layers[0] == "M":
        raise ValueError(f"model.layers must list positive conv widths and 'M' pools, starting "
                         f"with a conv, got {layers}")
    return layers


def build_base(layers: Sequence[int | str], in_channels: int) -> nn.Sequential:
    """torchvision's VGG ``features`` for ``layers`` taking ``in_channels`` input channels,
    initialised as ``torchvision.models.VGG`` does (Kaiming normal, fan-out; zero bias)."""
    base = make_layers(list(layers), batch_norm=False)
    if in_channels != 3:
        first = base[0]
        base[0] = nn.Conv2d(in_channels, first.out_channels, 3, padding=1)
    for module in base:
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(module.bias)
    return base


class VGGCBAM(nn.Module):
    """VGG convolutional base -> CBAM -> classifier head (seed 002, Fig. 3)."""

    input_keys: tuple[str, ...] = ("image",)
    landmark_encoding: str = "overlay"
    supported_heads: tuple[str, ...] = ("gap", "flatten")

    def __init__(self, num_classes: int, in_channels: int, image_size: int,
                 head: DictConfig | dict, use_landmarks: bool = False, cbam: bool = True,
                 reduction: int = 8, spatial_kernel: int = 3, spatial_batch_norm: bool = False,
                 layers: Sequence[int | str] | None = None,
                 pretrained_path: str | None = None) -> None:
        super().__init__()
        layers = check_layers(VGG16_LAYERS if layers is None else layers)
        pools = layers.count("M")
        if image_size < 2**pools:
            raise ValueError(f"data.image_size={image_size} is too small for a VGG base with "
                             f"{pools} max pools: it needs data.image_size >= {2**pools}")
        self.use_landmarks = use_landmarks
        self.features = build_base(layers, in_channels)
        channels = [item for item in layers if item != "M"][-1]
        self.cbam = (CBAM(channels, reduction, spatial_kernel, spatial_batch_norm)
                     if cbam else nn.Identity())
        side = image_size // 2**pools
        self.head = ClassifierHead(channels, num_classes, (side, side), **dict(head))
        if not self.features[0].weight.is_meta:
            self._init_base(pretrained_path, is_vgg16=layers == VGG16_LAYERS)

    def _init_base(self, pretrained_path: str | None, is_vgg16: bool) -> None:
        if pretrained_path:
            load_vgg_base(self.features, pretrained_path)
        elif is_vgg16:
            log.warning(RANDOM_INIT_WARNING)

    def finetune_base(self) -> nn.Module:
        """The pre-trained part, frozen while CBAM and the classifier train (stage 0)."""
        return self.features

    def finetune_layers(self) -> list[nn.Module]:
        """The base's convolutions in forward order; fine-tuning unfreezes them last first."""
        return [module for module in self.features if isinstance(module, nn.Conv2d)]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.cbam(self.features(image)))
