"""Arriaga et al.'s Keras mini_XCEPTION (HDF5, Keras 2) as a :class:`MiniXception`.

The file is read with h5py alone (no TensorFlow): ``model_config`` holds the layer graph
(JSON), ``model_weights/<layer>`` the arrays. Layers are matched by walking the graph
from the input, never by name: Keras numbers layer names by creation order, so in a
mini_XCEPTION module the shortcut's BatchNorm is numbered before the main path's.

The walk expects exactly the family's design: a stem of two Conv2D 3x3 'valid' (no bias)
-> BatchNormalization -> ReLU; residual modules whose input feeds a main path
SeparableConv2D -> BN -> ReLU -> SeparableConv2D -> BN -> MaxPooling2D 3x3 / 2 'same'
and a shortcut Conv2D 1x1 / 2 -> BN, joined by Add; then Conv2D 3x3 'same' with bias ->
GlobalAveragePooling2D -> softmax. Anything else is refused with a message listing the
layer types found and the input shape.

Keras stores kernels channels-last: Conv2D ``(kh, kw, in, out)`` becomes torch's
``(out, in, kh, kw)``; a depthwise kernel ``(kh, kw, in, 1)`` becomes ``(in, 1, kh, kw)``.
BatchNorm's gamma, beta, moving mean and variance are torch's weight, bias, running mean
and variance; eps and momentum come from the layer config (momentum converted to torch's
convention, ``1 - keras_momentum``).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fer_lightning.errors import ConvertError


class KerasImportError(ConvertError):
    """A file that is not a Keras mini_XCEPTION this importer can map."""


@dataclass
class KerasLayer:
    """One node of the Keras graph: class name, config and the names of its inputs."""

    name: str
    kind: str
    config: dict[str, Any]
    inputs: list[str]


@dataclass
class MiniXceptionSpec:
    """What the walk found: the architecture options and, per torch module, its layer."""

    image_size: int
    in_channels: int
    stem_width: int
    widths: list[int]
    num_classes: int
    bn_eps: float
    bn_momentum: float
    stem: list[tuple[str, str]] = field(default_factory=list)            # (conv, bn)
    modules: list[dict[str, str]] = field(default_factory=list)          # role -> layer
    head: str = ""

    @property
    def model_options(self) -> dict[str, Any]:
        """``model.*`` of ``conf/model/mini_xception.yaml`` that rebuild this net."""
        return {"num_modules": len(self.widths), "base_width": self.widths[0],
                "stem_width": self.stem_width, "padding": "tf", "bn_eps": self.bn_eps,
                "bn_momentum": self.bn_momentum}


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file (the provenance of converted weights)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _attr_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_graph(h5: Any, path: str | Path) -> list[KerasLayer]:
    """The layers of the model stored in the open HDF5 file ``h5``, in file order."""
    if "model_config" not in h5.attrs or "model_weights" not in h5:
        raise KerasImportError(f"{path}: an HDF5 file without 'model_config' and "
                               f"'model_weights': not a Keras 2 model saved with model.save")
    config = json.loads(_attr_text(h5.attrs["model_config"]))
    if config.get("class_name") not in ("Model", "Functional"):
        raise KerasImportError(f"{path}: a Keras {config.get('class_name')!r}, expected a "
                               f"functional Model (mini_XCEPTION)")
    layers = []
    for layer in config["config"]["layers"]:
        nodes = layer.get("inbound_nodes") or []
        inputs = [inbound[0] for inbound in nodes[0]] if nodes else []
        layers.append(KerasLayer(layer["name"], layer["class_name"], layer["config"], inputs))
    return layers


def describe(layers: list[KerasLayer]) -> str:
    """Layer types with counts and the input shape, for refusal messages."""
    kinds = Counter(layer.kind for layer in layers)
    counts = ", ".join(f"{kind} x{n}" for kind, n in kinds.items())
    shapes = [layer.config.get("batch_input_shape") for layer in layers
              if layer.kind == "InputLayer"]
    return f"layers: {counts}; input shape: {shapes[0][1:] if shapes else 'none'}"


class _Walk:
    """Matches the graph against the mini_XCEPTION design, one expected layer at a time."""

    def __init__(self, layers: list[KerasLayer], path: str | Path) -> None:
        self.layers = {layer.name: layer for layer in layers}
        self.consumers: dict[str, list[str]] = {name: [] for name in self.layers}
        for layer in layers:
            for source in layer.inputs:
                self.consumers[source].append(layer.name)
        self.summary = describe(layers)
        self.path = path

    def fail(self, what: str) -> KerasImportError:
        return KerasImportError(
            f"{self.path} is not a Keras mini_XCEPTION: {what} ({self.summary})")

    def next(self, name: str, kind: str, **expected: Any) -> KerasLayer:
        """The single consumer of ``name``, which must be a ``kind`` with ``expected``
        config values."""
        consumers = self.consumers[name]
        if len(consumers) != 1:
            raise self.fail(f"{name!r} feeds {len(consumers)} layers where one {kind} was "
                            f"expected")
        return self.check(self.layers[consumers[0]], kind, **expected)

    def check(self, layer: KerasLayer, kind: str, **expected: Any) -> KerasLayer:
        if layer.kind != kind:
            raise self.fail(f"found {layer.kind} {layer.name!r} where a {kind} was expected")
        for key, value in expected.items():
            found = layer.config.get(key)
            if isinstance(found, list):
                found = tuple(found)
            if found != value:
                raise self.fail(f"{kind} {layer.name!r} has {key}={found!r}, expected {value!r}")
        if layer.config.get("data_format", "channels_last") != "channels_last":
            raise self.fail(f"{layer.name!r} is channels_first")
        return layer


def _bn_options(walk: _Walk, bns: list[KerasLayer]) -> tuple[float, float]:
    options = {(bn.config.get("epsilon"), bn.config.get("momentum")) for bn in bns}
    if len(options) != 1 or any(not (bn.config.get("center", True) and bn.config.get("scale", True))
                                for bn in bns):
        raise walk.fail(f"BatchNormalization layers differ in epsilon/momentum {sorted(options)} "
                        f"or lack centre/scale")
    eps, momentum = options.pop()
    return float(eps), round(1.0 - float(momentum), 6)


def parse_mini_xception(layers: list[KerasLayer], path: str | Path) -> MiniXceptionSpec:
    """Walk the graph (module docstring); KerasImportError naming the first mismatch."""
    walk = _Walk(layers, path)
    inputs = [layer for layer in layers if layer.kind == "InputLayer"]
    if len(inputs) != 1:
        raise walk.fail(f"{len(inputs)} input layers, expected 1")
    shape = inputs[0].config.get("batch_input_shape") or []
    if len(shape) != 4 or shape[1] != shape[2] or shape[3] not in (1, 3):
        raise walk.fail(f"input shape {shape[1:]}, expected (S, S, 1) or (S, S, 3)")
    bns: list[KerasLayer] = []
    stem: list[tuple[str, str]] = []
    current = inputs[0].name
    for _ in range(2):
        conv = walk.next(current, "Conv2D", kernel_size=(3, 3), strides=(1, 1),
                         padding="valid", use_bias=False)
        bn = walk.next(conv.name, "BatchNormalization")
        current = walk.next(bn.name, "Activation", activation="relu").name
        stem.append((conv.name, bn.name))
        bns.append(bn)
    stem_width = walk.layers[stem[0][0]].config["filters"]
    if walk.layers[stem[1][0]].config["filters"] != stem_width:
        raise walk.fail("the two stem convs differ in width")
    modules: list[dict[str, str]] = []
    widths: list[int] = []
    while len(walk.consumers[current]) == 2:
        kinds = {walk.layers[name].kind: name for name in walk.consumers[current]}
        if set(kinds) != {"SeparableConv2D", "Conv2D"}:
            raise walk.fail(f"{current!r} feeds {sorted(kinds)}, expected a residual module's "
                            f"SeparableConv2D and 1x1 Conv2D shortcut")
        sep = dict(kernel_size=(3, 3), strides=(1, 1), padding="same", use_bias=False,
                   depth_multiplier=1)
        sep1 = walk.check(walk.layers[kinds["SeparableConv2D"]], "SeparableConv2D", **sep)
        width = sep1.config["filters"]
        bn1 = walk.next(sep1.name, "BatchNormalization")
        relu = walk.next(bn1.name, "Activation", activation="relu")
        sep2 = walk.next(relu.name, "SeparableConv2D", filters=width, **sep)
        bn2 = walk.next(sep2.name, "BatchNormalization")
        pool = walk.next(bn2.name, "MaxPooling2D", pool_size=(3, 3), strides=(2, 2),
                         padding="same")
        short = walk.check(walk.layers[kinds["Conv2D"]], "Conv2D", kernel_size=(1, 1),
                           strides=(2, 2), padding="same", use_bias=False, filters=width)
        short_bn = walk.next(short.name, "BatchNormalization")
        add = walk.next(pool.name, "Add")
        if sorted(add.inputs) != sorted([pool.name, short_bn.name]):
            raise walk.fail(f"Add {add.name!r} joins {add.inputs}, expected the module's pool "
                            f"and shortcut")
        if widths and width != 2 * widths[-1]:
            raise walk.fail(f"module widths {widths + [width]} do not double")
        modules.append({"sep1": sep1.name, "bn1": bn1.name, "sep2": sep2.name,
                        "bn2": bn2.name, "shortcut": short.name, "shortcut_bn": short_bn.name})
        widths.append(width)
        bns += [bn1, bn2, short_bn]
        current = add.name
    if not modules:
        raise walk.fail("no residual module after the stem")
    head = walk.next(current, "Conv2D", kernel_size=(3, 3), strides=(1, 1), padding="same",
                     use_bias=True)
    gap = walk.next(head.name, "GlobalAveragePooling2D")
    out = walk.next(gap.name, "Activation", activation="softmax")
    if walk.consumers[out.name]:
        raise walk.fail(f"layers after the softmax {out.name!r}")
    eps, momentum = _bn_options(walk, bns)
    return MiniXceptionSpec(image_size=int(shape[1]), in_channels=int(shape[3]),
                            stem_width=int(stem_width), widths=widths,
                            num_classes=int(head.config["filters"]), bn_eps=eps,
                            bn_momentum=momentum, stem=stem, modules=modules, head=head.name)


def _weights(h5: Any, layer: str) -> dict[str, np.ndarray]:
    """The arrays of one layer by short name (``kernel``, ``gamma``, ...)."""
    group = h5["model_weights"][layer]
    names = [_attr_text(name) for name in group.attrs.get("weight_names", [])]
    return {name.split("/")[-1].split(":")[0]: np.asarray(group[name]) for name in names}


def _set(parameter: torch.Tensor, array: np.ndarray, where: str) -> None:
    value = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if tuple(value.shape) != tuple(parameter.shape):
        raise KerasImportError(f"{where}: shape {tuple(value.shape)}, the net expects "
                               f"{tuple(parameter.shape)}")
    parameter.copy_(value)


def _conv(module: nn.Conv2d, arrays: Mapping[str, np.ndarray], where: str) -> None:
    _set(module.weight, arrays["kernel"].transpose(3, 2, 0, 1), f"{where} kernel")
    if module.bias is not None:
        _set(module.bias, arrays["bias"], f"{where} bias")


def _separable(module: nn.Sequential, arrays: Mapping[str, np.ndarray], where: str) -> None:
    _set(module[0].weight, arrays["depthwise_kernel"].transpose(2, 3, 0, 1),
         f"{where} depthwise kernel")
    _set(module[1].weight, arrays["pointwise_kernel"].transpose(3, 2, 0, 1),
         f"{where} pointwise kernel")


def _batch_norm(module: nn.BatchNorm2d, arrays: Mapping[str, np.ndarray], where: str) -> None:
    for ours, theirs in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                         ("running_var", "moving_variance")):
        _set(getattr(module, ours), arrays[theirs], f"{where} {theirs}")


@torch.no_grad()
def load_weights(net: nn.Module, h5: Any, spec: MiniXceptionSpec) -> None:
    """Copy the Keras arrays into ``net`` (a MiniXception built from ``spec``)."""
    for (conv, bn), unit in zip(spec.stem, net.stem, strict=True):
        _conv(unit[0], _weights(h5, conv), conv)
        _batch_norm(unit[1], _weights(h5, bn), bn)
    for names, module in zip(spec.modules, net.modules_, strict=True):
        _separable(module.main[0], _weights(h5, names["sep1"]), names["sep1"])
        _batch_norm(module.main[1], _weights(h5, names["bn1"]), names["bn1"])
        _separable(module.main[3], _weights(h5, names["sep2"]), names["sep2"])
        _batch_norm(module.main[4], _weights(h5, names["bn2"]), names["bn2"])
        _conv(module.shortcut[0], _weights(h5, names["shortcut"]), names["shortcut"])
        _batch_norm(module.shortcut[1], _weights(h5, names["shortcut_bn"]), names["shortcut_bn"])
    head_conv = next(m for m in net.head.modules() if isinstance(m, nn.Conv2d))
    _conv(head_conv, _weights(h5, spec.head), spec.head)


def open_keras_file(path: str | Path) -> Any:
    """The HDF5 file at ``path``, opened read-only (KerasImportError if it is not one)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise KerasImportError(f"{path}: no such file")
    if not h5py.is_hdf5(path):
        raise KerasImportError(f"{path} is not an HDF5 file (a Keras 2 .h5/.hdf5 model was "
                               f"expected; Keras 3 .keras archives are not supported)")
    return h5py.File(path, "r")
