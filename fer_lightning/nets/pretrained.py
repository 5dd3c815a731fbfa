"""Pre-trained weights from local files: the one way every family loads them.

Weight hubs are unreachable on the machines this project targets, so weights come from
``model.pretrained_path``: a ``torch.save``-d state dict, or a checkpoint holding one under
``state_dict`` / ``model`` / ``net``.

- :func:`pretrained_file` decides whether a family loads anything: nothing on the meta
  device (config checks build nets there, reading no file), a logged warning when no
  path is set (random weights), ``FileNotFoundError`` for a path that is not a file.
- :func:`read_state_dict` reads the tensors.
- :func:`load_vgg_base` copies the 13 convolutions of a VGG16 into a VGG ``features``
  Sequential (VGG16-CBAM, Ghimire et al.: a VGG16 pre-trained on VGG-Face, Methodology 1;
  its baselines also use ImageNet VGG16). Recognised layouts:

  - ``torchvision``: ``features.<N>.weight`` / ``.bias`` (torchvision's ``vgg16`` state
    dict, any prefix, e.g. ``net.features.0.weight`` from this project's checkpoints);
  - ``vggface``: ``conv1_1`` ... ``conv5_3`` (the common PyTorch conversions of the
    VGG-Face model of Parkhi et al. 2015, e.g. ``vgg_face_dag.pth``) or ``conv_1_1`` ...
    ``conv_5_3``; ``fc6`` / ``fc7`` / ``fc8`` are ignored.

  The i-th convolution of the file goes to the i-th convolution of the base, shapes
  checked. A 1-channel base takes 3-channel first-layer weights summed over the input
  channels (a grey image replicated to RGB gives the same response). Any key neither used
  nor ignored is an error, as is any convolution left without weights.
- :func:`load_whole_net` loads a whole net of the same family (a fer_lightning checkpoint,
  e.g. ``make weights``' converted mini_XCEPTION, or a bare state dict) for fine-tuning;
  a classifier of another shape is left freshly initialised, and
  :func:`reconcile_classes` re-initialises it when the checkpoint names other classes
  than the run's dataset; both say so on the terminal.
- :class:`InputAdapter` gives weights the input scaling they were trained with: VGG-Face
  weights expect RGB pixels in 0..255 minus the mean face colour, not this project's
  ``(x - data.mean) / data.std`` (see ``INPUT_NORMS``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

TORCHVISION_KEY = re.compile(r"^.*?features\.(?P<index>\d+)\.(?P<kind>weight|bias)$")
VGGFACE_KEY = re.compile(r"^.*?conv_?(?P<block>\d)_(?P<layer>\d)\.(?P<kind>weight|bias)$")
IGNORED_KEY = re.compile(r"(^|\.)(classifier|fc_?[678])\.")
CHECKPOINT_CONTAINERS = ("state_dict", "model", "net")

VGG16_RANDOM_INIT_NOTE = (
    "accuracy will not match VGG16-CBAM (Ghimire et al.), which fine-tunes a VGG-Face "
    "pre-trained base. Set model.pretrained_path=<file> (torchvision or VGG-Face state dict)")

#: Input normalisation pre-trained weights were trained with, on pixels in [0, 1]:
#: ``(mean per RGB channel, std per RGB channel)``. VGG-Face (Parkhi et al. 2015; the
#: ``vgg_face_dag`` conversion's ``meta``): 0..255 RGB minus the mean face colour
#: (129.186, 104.762, 93.594), no division.
INPUT_NORMS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "vggface": ((129.186279296875 / 255, 104.76238250732422 / 255, 93.59396362304688 / 255),
                (1 / 255, 1 / 255, 1 / 255)),
}
#: ``model.input_norm`` values: ``auto`` follows the layout of the loaded weights (VGG-Face
#: files get ``vggface``, anything else ``data``); ``data`` keeps the data pipeline's.
INPUT_NORM_CHOICES = ("auto", "data", *INPUT_NORMS)


def building_on_meta() -> bool:
    """True inside ``with torch.device("meta")``: the config checks build every net there
    to find bad settings before any data is read; no weights are read then."""
    return torch.empty(()).device.type == "meta"


def pretrained_file(path: str | Path | None, what: str, note: str = "",
                    warn: bool = True) -> Path | None:
    """The local weights file to load into ``what`` (e.g. "the VGG16 base"), or None.

    A path that is not a file raises FileNotFoundError naming ``model.pretrained_path``
    (on the meta device too, so the config checks catch it). None on the meta device
    (nothing is read there) and when no path is set; then, unless ``warn`` is False, a
    warning says ``what`` starts from random weights, followed by ``note``.
    """
    if path is not None:
        given, path = str(path), Path(path).expanduser()
        if not given or not path.is_file():
            raise FileNotFoundError(f"model.pretrained_path={given!r}: no such file")
    if building_on_meta():
        return None
    if path is None and warn:
        log.warning("model.pretrained_path is not set: %s starts from random weights%s",
                    what, f"; {note}." if note else ".")
    return path


class InputAdapter(nn.Module):
    """Per-channel affine map from the data's normalised input to what the weights expect.

    The data pipeline feeds ``x = (p - data_mean) / data_std`` for pixels ``p`` in [0, 1];
    weights trained on ``(p - mean) / std`` get ``x * data_std / std + (data_mean - mean) /
    std``. Identity until :meth:`set_target` is called. The scale and shift are buffers,
    so a checkpoint keeps the scaling its weights were trained with (``target`` only
    names the last one set). A 1-channel input
    uses the average of the three RGB statistics (exact when they are equal).
    """

    def __init__(self, channels: int, data_mean: float | Sequence[float] = 0.5,
                 data_std: float | Sequence[float] = 0.5) -> None:
        super().__init__()
        self.channels = channels
        self.data_mean = self._per_channel(data_mean, "data.mean")
        self.data_std = self._per_channel(data_std, "data.std")
        self.register_buffer("scale", torch.ones(1, channels, 1, 1))
        self.register_buffer("shift", torch.zeros(1, channels, 1, 1))
        self.target = "data"

    def _per_channel(self, value: float | Sequence[float], key: str) -> torch.Tensor:
        values = torch.as_tensor(value, dtype=torch.float32).flatten()
        if len(values) == 1:
            values = values.repeat(self.channels)
        if len(values) != self.channels:
            raise ValueError(f"{key} has {len(values)} values, expected 1 or "
                             f"{self.channels} (data.channels)")
        return values

    def set_target(self, norm: str) -> None:
        """Feed the weights the input scaling ``INPUT_NORMS[norm]`` (``data``: identity)."""
        if norm == "data":
            self.scale.fill_(1.0)
            self.shift.zero_()
        else:
            mean, std = (torch.tensor(stats) for stats in INPUT_NORMS[norm])
            if self.channels == 1:
                mean, std = mean.mean(0, keepdim=True), std.mean(0, keepdim=True)
            self.scale.copy_((self.data_std / std).view(1, -1, 1, 1))
            self.shift.copy_(((self.data_mean - mean) / std).view(1, -1, 1, 1))
        self.target = norm

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return image * self.scale + self.shift


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


def _classifier_reset(head: nn.Module) -> None:
    for module in head.modules():
        if module is not head and hasattr(module, "reset_parameters"):
            module.reset_parameters()


def load_whole_net(net: nn.Module, path: str | Path, classifier: str = "head.") -> LoadReport:
    """Strictly load the net tensors of ``path`` into ``net``, except the classifier
    (keys starting with ``classifier``) when its shapes differ: that one keeps its fresh
    initialisation, with a warning. A fer_lightning checkpoint's ``net.`` prefix is
    removed and its other entries (loss weights) ignored. ValueError names missing,
    unexpected or mis-shaped keys."""
    state = read_state_dict(path)
    if any(key.startswith("net.") for key in state):
        state = {key.removeprefix("net."): value for key, value in state.items()
                 if key.startswith("net.")}
    own = net.state_dict()
    report = LoadReport(path=str(path), layout="fer_lightning")
    head_keys = [key for key in own if key.startswith(classifier)]
    if any(key not in state or state[key].shape != own[key].shape for key in head_keys):
        found = [tuple(state[key].shape) for key in head_keys if key in state]
        report.ignored = sorted(key for key in state if key.startswith(classifier))
        state = {key: value for key, value in state.items() if not key.startswith(classifier)}
        state.update({key: own[key] for key in head_keys})
        log.warning("model.pretrained_path=%s: its classifier (%s) does not fit this run's "
                    "(%s classes): the classifier is re-initialised, the rest loaded", path,
                    found[0] if found else "absent",
                    tuple(own[head_keys[0]].shape)[0] if head_keys else "?")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(f"model.pretrained_path={str(path)!r} does not fit this net (another "
                         f"family or size?): {error}") from None
    report.loaded = sorted(state)
    log.info("Loaded %d tensors from %s", len(state), path)
    return report


def checkpoint_class_names(path: str | Path) -> list[str] | None:
    """The class names stored in a fer_lightning checkpoint, None for a bare state dict."""
    try:
        checkpoint = torch.load(Path(path).expanduser(), map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - read_state_dict reports unreadable files
        return None
    meta = checkpoint.get("fer_lightning") if isinstance(checkpoint, dict) else None
    names = meta.get("class_names") if isinstance(meta, dict) else None
    return list(names) if names else None


def reconcile_classes(net: nn.Module, path: str | Path | None, class_names: Sequence[str],
                      classifier: str = "head") -> bool:
    """Re-initialise ``net.<classifier>`` when the fer_lightning checkpoint at ``path``
    (``model.pretrained_path``) was trained on other classes, or in another order, than
    ``class_names`` (the run's dataset); True when it did. Logged either way."""
    stored = checkpoint_class_names(path) if path else None
    if stored is None or not hasattr(net, classifier):
        return False
    if [name.lower() for name in stored] == [name.lower() for name in class_names]:
        log.info("model.pretrained_path=%s: same classes as the dataset, classifier kept", path)
        return False
    _classifier_reset(getattr(net, classifier))
    log.warning("model.pretrained_path=%s was trained on classes %s, this dataset has %s: "
                "the classifier is re-initialised (fine-tuning keeps the features)", path,
                stored, list(class_names))
    return True
