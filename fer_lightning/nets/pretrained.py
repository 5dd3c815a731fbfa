"""Pre-trained weights from a local file for the VGG16 convolutional base (seed 002).

Seed 002 starts from a VGG16 pre-trained on VGG-Face (Parkhi et al. 2015); its baselines also
use ImageNet VGG16. Weight hubs are unreachable on the machines this project targets, so the
weights come from ``model.pretrained_path``: a ``torch.save``-d state dict, or a checkpoint
holding one under ``state_dict`` / ``model``. Recognised layouts of the 13 convolutions:

- ``torchvision``: ``features.<N>.weight`` / ``.bias`` (torchvision's ``vgg16`` state dict,
  any prefix, e.g. ``net.features.0.weight`` from this project's checkpoints);
- ``vggface``: ``conv1_1`` ... ``conv5_3`` (the common PyTorch conversions of the VGG-Face
  Caffe / MatConvNet model, e.g. ``vgg_face_dag.pth``) or ``conv_1_1`` ... ``conv_5_3``;
  ``fc6`` / ``fc7`` / ``fc8`` are ignored.

The i-th convolution of the file goes to the i-th convolution of the base, shapes checked.
A 1-channel base takes 3-channel first-layer weights summed over the input channels (a grey
image replicated to RGB gives the same response). Any key neither used nor ignored is an
error, as is any convolution left without weights.

VGG-Face conversions expect BGR pixels in 0..255 minus a mean; channel order does not matter
for grey faces replicated to 3 channels, but the scale does: see the README.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

TORCHVISION_KEY = re.compile(r"^.*?features\.(?P<index>\d+)\.(?P<kind>weight|bias)$")
VGGFACE_KEY = re.compile(r"^.*?conv_?(?P<block>\d)_(?P<layer>\d)\.(?P<kind>weight|bias)$")
IGNORED_KEY = re.compile(r"(^|\.)(classifier|fc_?[678])\.")
CHECKPOINT_CONTAINERS = ("state_dict", "model", "net")

RANDOM_INIT_WARNING = (
    "model.pretrained_path is not set: the VGG16 base starts from random weights, so accuracy "
    "will not match seed 002, which fine-tunes a VGG-Face pre-trained base. Set "
    "model.pretrained_path=<file> (torchvision or VGG-Face state dict).")


@dataclass
class LoadReport:
    """What a pre-trained load did: the layout found and the keys used and ignored."""

    path: str
    layout: str
    loaded: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    converted_input: bool = False


def read_state_dict(path: str | Path,
                    key: str = "model.pretrained_path") -> dict[str, torch.Tensor]:
    """The tensors of a local checkpoint file: a bare state dict, or one nested under
    ``state_dict`` / ``model`` / ``net``; a leading ``module.`` (DataParallel) is removed."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{key}={str(path)!r}: no such file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure gets the same message
        raise ValueError(f"{key}={str(path)!r} is not a torch checkpoint readable with "
                         f"weights_only=True: {error}") from None
    for container in CHECKPOINT_CONTAINERS:
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(container), dict):
            checkpoint = checkpoint[container]
            break
    if not isinstance(checkpoint, dict) or not all(
            isinstance(value, torch.Tensor) for value in checkpoint.values()):
        raise ValueError(f"{key}={str(path)!r} holds no state dict (name -> tensor)")
    return {name.removeprefix("module."): value for name, value in checkpoint.items()}


def conv_pairs(state_dict: dict[str, torch.Tensor]) -> tuple[str, list[tuple[str, str]]]:
    """The layout name and the (weight key, bias key) of each convolution, in network order."""
    for layout, pattern, order in (
        ("torchvision", TORCHVISION_KEY, lambda m: (int(m["index"]),)),
        ("vggface", VGGFACE_KEY, lambda m: (int(m["block"]), int(m["layer"]))),
    ):
        matches = {name: pattern.match(name) for name in state_dict}
        weights = sorted((order(m), name) for name, m in matches.items()
                         if m and m["kind"] == "weight" and state_dict[name].ndim == 4)
        if weights:
            return layout, [(name, name.removesuffix("weight") + "bias") for _, name in weights]
    return "unknown", []


def adapt_first_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """3-channel first-layer weights for a 1-channel input: the sum over input channels."""
    if weight.shape[1] == in_channels:
        return weight
    if in_channels == 1 and weight.shape[1] == 3:
        return weight.sum(dim=1, keepdim=True)
    raise ValueError(f"cannot convert first-layer weights with {weight.shape[1]} input channels "
                     f"to {in_channels}")


def load_vgg_base(base: nn.Sequential, path: str | Path) -> LoadReport:
    """Copy the convolutions of the checkpoint at ``path`` into ``base`` (a VGG ``features``
    Sequential); raises ValueError naming every missing, unexpected or mis-shaped key."""
    state_dict = read_state_dict(path)
    layout, pairs = conv_pairs(state_dict)
    convs = [module for module in base if isinstance(module, nn.Conv2d)]
    report = LoadReport(path=str(path), layout=layout)
    if len(pairs) != len(convs):
        raise ValueError(
            f"model.pretrained_path={str(path)!r}: found {len(pairs)} convolutions in layout "
            f"{layout!r}, the base has {len(convs)} (expected torchvision 'features.N.weight' or "
            f"VGG-Face 'conv1_1.weight' names); first keys: {sorted(state_dict)[:6]}")
    new_state = {}
    for index, (conv, (weight_key, bias_key)) in enumerate(zip(convs, pairs, strict=True)):
        if bias_key not in state_dict:
            raise ValueError(f"model.pretrained_path={str(path)!r}: missing key {bias_key!r}")
        weight = state_dict[weight_key]
        if index == 0 and weight.shape[1] != conv.in_channels:
            weight = adapt_first_conv(weight, conv.in_channels)
            report.converted_input = True
        if weight.shape != conv.weight.shape or state_dict[bias_key].shape != conv.bias.shape:
            raise ValueError(
                f"model.pretrained_path={str(path)!r}: {weight_key!r} has shape "
                f"{tuple(state_dict[weight_key].shape)}, convolution {index} of the base "
                f"expects {tuple(conv.weight.shape)}")
        position = list(base).index(conv)
        new_state[f"{position}.weight"] = weight
        new_state[f"{position}.bias"] = state_dict[bias_key]
        report.loaded += [weight_key, bias_key]
    used = set(report.loaded)
    report.ignored = sorted(name for name in state_dict if name not in used
                            and IGNORED_KEY.search(name))
    unexpected = sorted(set(state_dict) - used - set(report.ignored))
    if unexpected:
        raise ValueError(f"model.pretrained_path={str(path)!r}: unexpected keys {unexpected} "
                         f"(only the base's convolutions and the classifier / fc6-8 are known)")
    base.load_state_dict(new_state, strict=True)
    log.info("Loaded %d VGG convolutions from %s (layout %s%s); ignored %d classifier keys",
             len(convs), path, layout, ", 3->1 input channels summed" if report.converted_input
             else "", len(report.ignored))
    return report
