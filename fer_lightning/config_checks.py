"""Checks on a composed training config's keys and data values, before anything is built.

Keys: every key must be read by something.

Hydra accepts any ``+key=value``: ``+lr=0.1`` adds a top-level ``lr`` that nothing reads
(the run trains at ``optimizer.lr``), and ``+data.batchsize=64`` or
``+optimizer.learning_rate=0.1`` reach a constructor as an unexpected keyword argument
(a TypeError traceback). ``unknown_keys`` finds both before anything is built, naming the
key, the keys accepted there and the nearest known ones.

What reads a key:

- top level: the keys of ``conf/train.yaml`` and its groups, plus ``hint_without_data``
  (set by experiments whose data must be downloaded);
- ``paths``: the keys of ``conf/paths/default.yaml``;
- a node with a ``_target_`` (data, data.source, model, loss, optimizer, scheduler,
  trainer, each logger and callback): the parameters of that class's constructor, plus
  the keys this package reads itself (``NODE_EXTRAS``); a constructor taking
  ``**kwargs`` accepts any key, and a target that cannot be imported is left to fail
  later with its own message; ``data.augment`` is read by ``LandmarkAugment``, ``head``
  by ``ClassifierHead``.

Values (``data_problems``): augmentation ranges (``data.augment.scale=[2,1]``) and one
``data.mean`` / ``data.std`` value or one per ``data.channels``, so a mismatch fails
before the data is read, not after the model summary.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from fer_lightning.signatures import signature
from fer_lightning.speed import SPEED_KEYS

#: Top-level keys set by experiments rather than by conf/train.yaml.
EXPERIMENT_KEYS = ("hint_without_data",)
#: Keys of a node this package reads itself (not passed to the node's ``_target_``).
NODE_EXTRAS: dict[str, tuple[str, ...]] = {
    "optimizer": ("conv_l2", "conv_l2_modules"),  # modules/classifier.py PARAM_GROUP_KEYS
    "scheduler": ("interval", "frequency", "monitor"),  # LIGHTNING_SCHEDULER_KEYS
    "model": ("name", "module"),  # train.build_net / build_module
    "head": ("name",),  # the option's name; the rest goes to ClassifierHead
    "trainer": SPEED_KEYS,  # speed.py: compile, channels_last, fused_optimizer
}
#: Nodes of plain values read by name; their keys are those of the shipped option.
FIXED_KEYS = {"paths": Path(__file__).parent / "conf" / "paths" / "default.yaml"}
#: Nodes without a ``_target_`` and the class their keys are passed to.
READERS = {"data.augment": "fer_lightning.data.transforms.LandmarkAugment",
           "head": "fer_lightning.nets.heads.ClassifierHead"}
#: Constructor arguments the code passes itself when it builds the node (train.py,
#: config.build_net, the nets): a config value there would be overridden or collide.
PASSED_IN_CODE: dict[str, tuple[str, ...]] = {
    "optimizer": ("params",),
    "scheduler": ("optimizer",),
    "model": ("num_classes", "in_channels", "image_size", "head", "use_landmarks"),
    "model.module": ("net", "loss", "class_names", "optimizer", "scheduler"),
    "head": ("in_channels", "num_classes", "feature_size"),
    "data": ("landmarks", "landmark_encoding"),
    "loss": ("class_counts",),
    "trainer": ("callbacks", "logger"),
}
TRAIN_YAML = Path(__file__).parent / "conf" / "train.yaml"


def top_level_keys() -> list[str]:
    """The top-level keys a training config may hold: conf/train.yaml's own keys, its
    groups (the defaults list) and the keys experiments add."""
    root = OmegaConf.load(TRAIN_YAML)
    groups = [next(iter(entry)) for entry in root.get("defaults", [])
              if OmegaConf.is_dict(entry) or isinstance(entry, dict)]
    own = [key for key in root if key != "defaults"]
    return sorted({*own, *groups, *EXPERIMENT_KEYS} - {"_self_", "hydra"})


def _all_keys(node: Any, prefix: str = "") -> list[str]:
    """Every dotted key below ``node`` (``data.source.train_size`` ...)."""
    keys = []
    if isinstance(node, DictConfig):
        for key in node:
            dotted = f"{prefix}{key}"
            keys.append(dotted)
            keys += _all_keys(node._get_node(key), f"{dotted}.")
    return keys


def nearest(key: str, known: Iterable[str], count: int = 3) -> list[str]:
    """The known dotted keys closest to ``key``: by the whole key, then by its last part
    (``lr`` -> ``optimizer.lr``; ``batchsize`` -> ``data.batch_size``)."""
    known = list(dict.fromkeys(known))
    whole = difflib.get_close_matches(key, known, n=count, cutoff=0.6)
    leaf = key.rsplit(".", 1)[-1]
    leaves: dict[str, list[str]] = {}
    for candidate in known:
        leaves.setdefault(candidate.rsplit(".", 1)[-1], []).append(candidate)
    by_leaf = [candidate for name in difflib.get_close_matches(leaf, list(leaves), n=count,
                                                               cutoff=0.6)
               for candidate in leaves[name]]
    return list(dict.fromkeys([*whole, *by_leaf]))[:count]


def _target(node: DictConfig, key: str) -> str | None:
    return node.get("_target_") if "_target_" in node else READERS.get(key)


def _accepted(node: DictConfig, key: str, allow_import: bool = True) -> list[str] | None:
    """The keys the node at ``key`` may hold, or None when any key is accepted (no
    ``_target_``, an unimportable one, a constructor taking ``**kwargs``) or when the
    target's signature is not known without an import that ``allow_import`` forbids."""
    target = _target(node, key)
    if not isinstance(target, str):
        return None
    found = signature(target, allow_import=allow_import)  # class or factory
    if found is None or found.var_keyword:
        return None
    passed = set(PASSED_IN_CODE.get(key, ()))
    names = [name for name in found.parameters if name not in passed]
    return sorted({*names, *NODE_EXTRAS.get(key, ())})


def _unknown_in_node(node: DictConfig, key: str, allow_import: bool = True
                     ) -> list[tuple[str, list[str]]]:
    accepted = _accepted(node, key, allow_import)
    if accepted is None:
        return []
    return [(f"{key}.{name}", accepted) for name in node
            if not str(name).startswith("_") and name not in accepted]


def _target_nodes(cfg: DictConfig) -> list[tuple[str, DictConfig]]:
    """(key, node) of every instantiated node whose keys are checked."""
    nodes = [(key, OmegaConf.select(cfg, key)) for key in
             ("data", "data.source", "data.augment", "model", "head", "loss", "optimizer",
              "scheduler", "trainer")]
    module = OmegaConf.select(cfg, "model.module")
    if isinstance(module, DictConfig) and "_target_" in module:
        nodes.append(("model.module", module))
    for group in ("logger", "callbacks"):
        entries = cfg.get(group)
        if isinstance(entries, DictConfig) and "_target_" not in entries:
            nodes += [(f"{group}.{name}", entries[name]) for name in entries
                      if isinstance(entries[name], DictConfig)]
    return [(key, node) for key, node in nodes if isinstance(node, DictConfig)]


def unknown_keys(cfg: DictConfig, allow_import: bool = True) -> list[str]:
    """One message per key of ``cfg`` that nothing reads, naming the accepted keys of its
    node and the nearest known keys. Without ``allow_import``, nodes whose target's
    signature is not cached (``fer_lightning.signatures``) are not checked."""
    known = _all_keys(cfg)
    messages = []
    allowed = top_level_keys()
    for key in cfg:
        if key not in allowed:
            close = nearest(str(key), [k for k in known if k != key])
            hint = f"; nearest known keys: {', '.join(close)}" if close else ""
            messages.append(f"{key}={_shown(cfg, str(key))} is a key nothing reads{hint} "
                            f"(top-level keys: {', '.join(allowed)})")
    for key, path in FIXED_KEYS.items():
        node = cfg.get(key)
        accepted = sorted(OmegaConf.load(path))
        if isinstance(node, DictConfig):
            messages += [f"{key}.{name} is not a key of {key}; accepted keys: "
                         f"{', '.join(accepted)}" for name in node if name not in accepted]
    for key, node in _target_nodes(cfg):
        for dotted, accepted in _unknown_in_node(node, key, allow_import):
            if dotted.rsplit(".", 1)[-1] in PASSED_IN_CODE.get(key, ()):
                messages.append(f"{dotted} is passed by the code that builds {key} (from "
                                f"other settings: data.image_size, data.channels, head, "
                                f"landmarks, ...), so a value here would be overridden; "
                                f"set the setting it comes from")
                continue
            close = nearest(dotted.rsplit(".", 1)[-1], accepted)
            hint = f" (did you mean {', '.join(f'{key}.{c}' for c in close)}?)" if close else ""
            messages.append(f"{dotted} is not a key of {key} ({_target(node, key)}){hint}; "
                            f"accepted keys: {', '.join(accepted)}{_from_experiment(dotted)}")
    return messages


def _from_experiment(dotted: str) -> str:
    """Why an experiment's key sits where nothing reads it: the experiment was written for
    another dataset (``+experiment=smoke data=fer2013``: smoke sizes the synthetic set)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        choices = HydraConfig.get().runtime.choices
    except Exception:  # noqa: BLE001 - outside a Hydra run there is no choice to name
        return ""
    experiment = choices.get("experiment")
    if not experiment or not dotted.startswith("data."):
        return ""
    return (f". +experiment={experiment} sets {dotted} for the dataset it was written for; "
            f"with data={choices.get('data')} nothing reads it: drop it with "
            f"~{dotted}, or run the experiment on its own dataset")


def _shown(cfg: DictConfig, key: str) -> str:
    node = cfg._get_node(key)
    try:
        value = node._value() if node is not None else None
    except Exception:  # noqa: BLE001 - a value that does not resolve is shown as written
        value = "?"
    return "null" if value is None else str(value)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _augment_problems(augment: Any) -> list[str]:
    """Ranges of ``data.augment``: probabilities in [0, 1], a rotation in degrees >= 0,
    a scale range 0 < low <= high, a translation fraction in [0, 1)."""
    if not isinstance(augment, DictConfig):
        return []
    problems = []
    checks = {"hflip": (lambda v: 0.0 <= v <= 1.0, "a probability in [0, 1]"),
              "rotate": (lambda v: 0.0 <= v <= 180.0, "degrees in [0, 180]"),
              "translate": (lambda v: 0.0 <= v < 1.0, "a fraction of the image in [0, 1)")}
    for key, (fits, expected) in checks.items():
        value = augment.get(key)
        if key in augment and not (_number(value) and fits(value)):
            problems.append(f"data.augment.{key} must be {expected}, got {value!r}")
    if "scale" in augment:
        scale = augment.scale
        values = list(scale) if OmegaConf.is_list(scale) else None
        if not (values and len(values) == 2 and all(map(_number, values))
                and 0 < values[0] <= values[1]):
            shown = values if values is not None else scale
            problems.append(f"data.augment.scale must be [low, high] with 0 < low <= high "
                            f"(zoom factors), got {shown!r}")
    return problems


def _per_channel_problems(data: DictConfig) -> list[str]:
    """``data.mean`` and ``data.std``: one number, or one per channel; std > 0."""
    channels = data.get("channels")
    problems = []
    for key in ("mean", "std"):
        if key not in data:
            continue
        value = data.get(key)
        values = list(value) if OmegaConf.is_list(value) else [value]
        if not all(map(_number, values)):
            problems.append(f"data.{key} must be a number or a list of numbers, got {value!r}")
        elif len(values) not in (1, channels):
            problems.append(f"data.{key} has {len(values)} values but data.channels="
                            f"{channels}: give one value, or one per channel")
        elif key == "std" and min(values) <= 0:
            problems.append(f"data.std must be > 0 (inputs are divided by it), got {value!r}")
    return problems


def data_problems(cfg: DictConfig) -> list[str]:
    """Ranges of the data values a run uses, each naming its key."""
    data = cfg.get("data")
    if not isinstance(data, DictConfig):
        return []
    return _augment_problems(data.get("augment")) + _per_channel_problems(data)
