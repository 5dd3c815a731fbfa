"""VGG16-CBAM (Ghimire et al.): a VGG convolutional base, CBAM, the shared classifier head.

- Base: torchvision's VGG16 ``features`` (13 3x3 convs + 5 max pools, built by the same
  ``torchvision.models.vgg.make_layers`` with torchvision's VGG initialisation; no weights
  are downloaded). 14,714,688 parameters at 3 input channels. ``layers`` swaps in another
  VGG-style list (ints = conv widths, ``"M"`` = 2x2 max pool), which the small-CNN
  baseline of the paper's results table (Fig. 7) uses.
- CBAM (``nets.cbam``) after the base (Methodology 2); ``cbam=false`` gives the paper's
  VGG16 baselines.
- The shared ``ClassifierHead``: the paper's classifier (Methodology 3) is ``head=gap``
  with ``hidden=[512, 512]``, ``dropout=0.5`` and no dropout right before the output
  layer (the experiment config sets it); ``head=fc`` flattens the 7x7x512 map instead.
- Pre-trained base from ``pretrained_path`` (``nets.pretrained``); without one, random
  weights and a logged warning. Nothing is read when built on the meta device.
- Input scaling (``input_norm``): the paper only says the images are "scaled and
  normalized" (Methodology). VGG-Face weights were trained on 0..255 pixels minus the mean
  face colour; with ``auto`` a VGG-Face layout file switches the net's
  :class:`~fer_lightning.nets.pretrained.InputAdapter` to that scaling, from the data's
  ``(x - data_mean) / data_std``. ``data`` keeps the data's scaling; ``vggface`` forces it.
- With landmarks on, the key-points are drawn onto the image (``overlay``), so every
  landmark ablation applies unchanged.

``finetune_base`` / ``finetune_layers`` tell ``finetune.StagedFineTuning`` what to freeze
and which convolutions to unfreeze, last first (Methodology 1 and 5).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from fer_lightning.checks import check_choice
from fer_lightning.nets.base import FERNet
from fer_lightning.nets.cbam import CBAM
from fer_lightning.nets.heads import ClassifierHead
from fer_lightning.nets.pretrained import (
    INPUT_NORM_CHOICES,
    VGG16_RANDOM_INIT_NOTE,
    InputAdapter,
    building_on_meta,
    load_vgg_base,
    pretrained_file,
)

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


class VGGCBAM(FERNet):
    """Input scaling -> VGG convolutional base -> CBAM -> classifier head (Fig. 3)."""

    landmark_encoding = "overlay"
    supported_heads = ("gap", "flatten")

    def __init__(self, num_classes: int, in_channels: int, image_size: int,
                 head: Mapping[str, Any], use_landmarks: bool = False, cbam: bool = True,
                 reduction: int = 8, spatial_kernel: int = 3, spatial_batch_norm: bool = False,
                 layers: Sequence[int | str] | None = None,
                 pretrained_path: str | None = None, input_norm: str = "auto",
                 data_mean: float | Sequence[float] = 0.5,
                 data_std: float | Sequence[float] = 0.5) -> None:
        super().__init__()
        layers = check_layers(VGG16_LAYERS if layers is None else layers)
        check_choice("model.input_norm", input_norm, INPUT_NORM_CHOICES)
        pools = layers.count("M")
        if image_size < 2**pools:
            raise ValueError(f"data.image_size={image_size} is too small for a VGG base with "
                             f"{pools} max pools: it needs data.image_size >= {2**pools}")
        self.use_landmarks = use_landmarks
        self.input_adapter = InputAdapter(in_channels, data_mean, data_std)
        self.features = build_base(layers, in_channels)
        channels = [item for item in layers if item != "M"][-1]
        self.cbam = (CBAM(channels, reduction, spatial_kernel, spatial_batch_norm)
                     if cbam else nn.Identity())
        side = image_size // 2**pools
        self.head = ClassifierHead(channels, num_classes, (side, side), **dict(head))
        path = pretrained_file(pretrained_path, "the VGG base", VGG16_RANDOM_INIT_NOTE,
                               warn=layers == VGG16_LAYERS)
        layout = load_vgg_base(self.features, path).layout if path is not None else None
        if input_norm == "auto":
            input_norm = "vggface" if layout == "vggface" else "data"
        if not building_on_meta():
            self.input_adapter.set_target(input_norm)

    def finetune_base(self) -> nn.Module:
        """The pre-trained part, frozen while CBAM and the classifier train (stage 0)."""
        return self.features

    def finetune_layers(self) -> list[nn.Module]:
        """The base's convolutions in forward order; fine-tuning unfreezes them last first."""
        return [module for module in self.features if isinstance(module, nn.Conv2d)]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.cbam(self.features(self.input_adapter(image))))
