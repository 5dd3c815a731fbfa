"""``model=timm``: any timm network as a convolutional base + the shared classifier head.

VGG16-CBAM (Ghimire et al.) compares its base with ResNet50 and InceptionV3 bases
(Experiments, results table of Fig. 7); this family builds any of them, or any other timm
model, by name:

- ``model.name`` names the timm model (the config passes it on as ``arch``, because the
  family's ``name`` key is not a constructor argument).
- ``timm.create_model(name, pretrained=False, num_classes=0, in_chans=<data.channels>,
  global_pool='')`` returns the unpooled feature map; its channels and size (needed by
  ``head=fc``'s flatten) come from a forward pass of a meta-device copy, which also turns
  "input too small" into a clear error. The constructor works on the meta device.
- Pre-trained weights only from a local file (``pretrained_path``, read through
  ``nets.pretrained.pretrained_file``): the classifier keys
  named by timm's ``pretrained_cfg`` are dropped, the first conv is adapted with timm's
  ``adapt_input_conv`` (RGB weights summed for 1-channel input); strict: any other
  missing or unexpected key raises. Keys
  are renamed first by a named map of ``KEY_MAPS`` or by an inline list of
  ``[regex, replacement]`` pairs (``pretrained_key_map``).
- Landmarks: the ``overlay`` encoding (key-points drawn on the image), so the landmark
  ablation applies to every timm model.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import timm
import torch
from timm.models import adapt_input_conv
from torch import nn

from fer_lightning.nets.base import FERNet
from fer_lightning.nets.heads import ClassifierHead
from fer_lightning.nets.pretrained import pretrained_file, read_state_dict

log = logging.getLogger(__name__)

# Named key maps: regex substitutions applied in order to every checkpoint key.
KEY_MAPS: dict[str, list[tuple[str, str]]] = {
    # A timm / torchvision state dict whose names already match the model.
    "none": [],
    # A checkpoint of this project's model=timm (FERClassifier): keep the backbone only.
    "lightning": [(r"^(?!net\.backbone\.).*", ""), (r"^net\.backbone\.", "")],
    # Common wrappers: ``model.`` / ``backbone.`` / ``encoder.`` prefixes.
    "strip_prefix": [(r"^(model|backbone|encoder)\.", "")],
}


def key_map_rules(key_map: str | Sequence[Sequence[str]] | None) -> list[tuple[str, str]]:
    """The substitution rules of a ``KEY_MAPS`` name or an inline list of pairs."""
    if key_map is None:
        return []
    if isinstance(key_map, str):
        if key_map not in KEY_MAPS:
            raise ValueError(f"model.pretrained_key_map={key_map!r} is not a known key map; "
                             f"allowed values: {sorted(KEY_MAPS)} or a list of "
                             f"[regex, replacement] pairs")
        return KEY_MAPS[key_map]
    rules = [tuple(rule) for rule in key_map]
    if not all(len(rule) == 2 for rule in rules):
        raise ValueError(f"model.pretrained_key_map must hold [regex, replacement] pairs, "
                         f"got {key_map}")
    return rules  # type: ignore[return-value]


def remap_keys(state_dict: dict[str, torch.Tensor],
               rules: Sequence[tuple[str, str]]) -> dict[str, torch.Tensor]:
    """Apply the substitutions in order; a key renamed to "" is dropped."""
    remapped = {}
    for name, tensor in state_dict.items():
        for pattern, replacement in rules:
            name = re.sub(pattern, replacement, name)
        if name:
            remapped[name] = tensor
    return remapped


def create_backbone(name: str, in_channels: int) -> nn.Module:
    """The timm model ``name`` without classifier and pooling (random init)."""
    try:
        return timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_channels,
                                 global_pool="")
    except RuntimeError as error:
        if "Unknown model" in str(error):
            raise ValueError(f"model.name={name!r} is not a timm model (see "
                             f"timm.list_models())") from None
        raise


def feature_shape(name: str, in_channels: int, image_size: int) -> tuple[int, int, int]:
    """(channels, height, width) of the backbone's output, from a meta-device forward."""
    with torch.device("meta"):
        probe = create_backbone(name, in_channels).eval()
        try:
            output = probe(torch.empty(1, in_channels, image_size, image_size))
        except RuntimeError as error:
            raise ValueError(f"data.image_size={image_size} is too small for timm model "
                             f"{name!r}: {error}") from None
    if output.ndim != 4 or min(output.shape[2:]) < 1:
        raise ValueError(f"timm model {name!r} returns features of shape {tuple(output.shape)} "
                         f"at data.image_size={image_size}; expected (B, C, H, W)")
    return int(output.shape[1]), int(output.shape[2]), int(output.shape[3])


class TimmBackbone(FERNet):
    """A timm feature extractor followed by the shared ``ClassifierHead``."""

    landmark_encoding = "overlay"
    supported_heads = ("gap", "flatten")

    def __init__(self, num_classes: int, in_channels: int, image_size: int,
                 head: Mapping[str, Any], use_landmarks: bool = False, arch: str = "resnet50",
                 pretrained_path: str | None = None,
                 pretrained_key_map: str | Sequence[Sequence[str]] | None = "none") -> None:
        super().__init__()
        self.use_landmarks = use_landmarks
        self.arch = arch
        self.in_channels = in_channels
        rules = key_map_rules(pretrained_key_map)
        channels, height, width = feature_shape(arch, in_channels, image_size)
        self.backbone = create_backbone(arch, in_channels)
        self.head = ClassifierHead(channels, num_classes, (height, width), **dict(head))
        path = pretrained_file(pretrained_path, f"timm model {arch!r}",
                               "the baselines of VGG16-CBAM (Ghimire et al.) start from "
                               "pre-trained ones")
        if path is not None:
            self.load_pretrained(path, rules)

    def load_pretrained(self, path: str | Path, rules: Sequence[tuple[str, str]]) -> None:
        """Strictly load a local state dict into the backbone: the pre-trained classifier
        is dropped, the first conv adapted to the input channels (timm's
        ``adapt_input_conv``: RGB weights summed for 1 channel); any other missing or
        unexpected key raises ValueError."""
        state_dict = remap_keys(read_state_dict(path), rules)
        own = self.backbone.state_dict()
        classifiers = self.backbone.pretrained_cfg.get("classifier") or ()
        for prefix in (classifiers,) if isinstance(classifiers, str) else classifiers:
            for key in [key for key in state_dict if key.startswith(f"{prefix}.")]:
                if key not in own:
                    del state_dict[key]
        first_convs = self.backbone.pretrained_cfg.get("first_conv") or ()
        for conv in (first_convs,) if isinstance(first_convs, str) else first_convs:
            key = f"{conv}.weight"
            if key in state_dict and key in own and state_dict[key].shape != own[key].shape:
                state_dict[key] = adapt_input_conv(self.in_channels, state_dict[key],
                                                   base_chans=state_dict[key].shape[1])
        try:
            result = self.backbone.load_state_dict(state_dict, strict=False)
        except RuntimeError as error:
            raise ValueError(f"model.pretrained_path={str(path)!r} does not fit timm model "
                             f"{self.arch!r}: {error}") from None
        if result.missing_keys or result.unexpected_keys:
            raise ValueError(
                f"model.pretrained_path={str(path)!r} does not fit timm model {self.arch!r}: "
                f"missing keys {result.missing_keys[:10]} ({len(result.missing_keys)} in all), "
                f"unexpected keys {result.unexpected_keys[:10]} "
                f"({len(result.unexpected_keys)} in all); rename keys with "
                f"model.pretrained_key_map")
        log.info("Loaded timm %s weights from %s (%d tensors)", self.arch, path, len(state_dict))

    def finetune_base(self) -> nn.Module:
        """The pre-trained part, frozen in stage 0 of staged fine-tuning."""
        return self.backbone

    def finetune_layers(self) -> list[nn.Module]:
        """The backbone's convolutions in registration order (forward order for timm's CNNs)."""
        return [module for module in self.backbone.modules() if isinstance(module, nn.Conv2d)]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(image))
