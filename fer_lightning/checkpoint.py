"""Checkpoints that carry everything needed to use them, read without running code.

Every checkpoint ``train`` writes holds, beside Lightning's ``state_dict``::

    checkpoint["fer_lightning"] = {
        "format_version": 1,            # FORMAT_VERSION of the code that wrote it
        "package_version": "0.1.0",     # fer_lightning.__version__
        "config": {...},                # the resolved run config (plain dict)
        "class_names": [...],           # the net's output order
        "choices": {"data": ..., ...},  # Hydra group options of the run (eval re-composes)
    }

so ``eval``, ``predict`` and ``export`` rebuild the net, the input pipeline and the landmark
pipeline from the ``.ckpt`` file alone. :func:`load_checkpoint` is the one reader: it
unpickles with ``torch.load(weights_only=True)``, which only rebuilds tensors and plain
containers, so a crafted pickle cannot run code; it turns every way a file can be wrong
(missing, truncated, foreign, from a newer format, unsafe) into a :class:`CheckpointError`
naming the file. Plain data can still ask for code through its stored config (a
``_target_`` that Hydra would import and call), so the same reader also refuses any
``_target_`` this package never builds (``fer_lightning.trust``) before anything is built.

``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` cannot undo this: torch only lets it override
``weights_only`` when a call site leaves the argument unset, and every load here (and
Lightning's loads in ``train``, given ``weights_only=True``) sets it explicitly.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from fer_lightning import __version__
from fer_lightning.errors import CheckpointError, ConfigError
from fer_lightning.trust import check_stored

#: Bumped when the layout of ``checkpoint["fer_lightning"]`` changes incompatibly.
FORMAT_VERSION = 1
METADATA_KEY = "fer_lightning"

#: Non-builtin types a fer_lightning checkpoint may hold besides tensors and plain
#: containers, allowed for ``weights_only`` unpickling. Lightning's own entries (loops,
#: callbacks, optimizer and scheduler states, hyper-parameters saved as plain dicts) need
#: none today; add a type here, never ``weights_only=False``, when one appears.
SAFE_GLOBALS: list[Any] = []

#: Expression names that different datasets spell differently, mapped to one spelling
#: (FER2013 says "angry", RAF-DB and FER+ "anger"; "happy" / "happiness"; ...).
CANONICAL_CLASS = {
    "angry": "anger", "anger": "anger",
    "happy": "happiness", "happiness": "happiness",
    "sad": "sadness", "sadness": "sadness",
    "surprised": "surprise", "surprise": "surprise",
    "fearful": "fear", "fear": "fear",
    "disgusted": "disgust", "disgust": "disgust",
    "neutral": "neutral", "contempt": "contempt",
}


# ``CheckpointError`` lives on the ground floor (fer_lightning.errors); imported from here too.


def register_safe_globals() -> None:
    """Allow :data:`SAFE_GLOBALS` in every ``weights_only`` load of this process
    (``load_checkpoint`` and Lightning's loads when ``train`` resumes)."""
    if SAFE_GLOBALS:
        torch.serialization.add_safe_globals(SAFE_GLOBALS)


# -- writing ---------------------------------------------------------------------------


def checkpoint_metadata(config: Mapping[str, Any] | None, class_names: Sequence[str],
                        choices: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The ``checkpoint["fer_lightning"]`` entry (module docstring)."""
    return {"format_version": FORMAT_VERSION, "package_version": __version__,
            "config": None if config is None else dict(config),
            "class_names": list(class_names), "choices": dict(choices or {})}


# -- reading ---------------------------------------------------------------------------


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu"
                    ) -> dict[str, Any]:
    """Read a fer_lightning checkpoint safely and check its metadata.

    Raises CheckpointError when the file is missing, is not a readable torch file
    (truncated, corrupt), holds objects other than tensors and plain data (a pickle that
    could run code: refused, never executed), is not a fer_lightning checkpoint, or was
    written in a newer format than this code reads.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"ckpt_path={str(path)!r}: no such checkpoint file")
    register_safe_globals()
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(_unpickling_message(path, error)) from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise CheckpointError(f"{path} is not a readable torch checkpoint (truncated or "
                              f"corrupt?): {first_line(error)}") from None
    metadata(checkpoint, path)
    return checkpoint


def _unpickling_message(path: Path, error: Exception) -> str:
    text = str(error)
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if "Weights only load failed" in text or found:
        what = f" ({found.group(1)})" if found else ""
        return (f"{path} asks to rebuild objects other than tensors and plain data{what}; "
                f"fer_lightning checkpoints never do, and unpickling such objects can run "
                f"code, so the file was not loaded")
    return f"{path} is not a readable torch checkpoint: {first_line(error)}"


def first_line(error: Exception) -> str:
    """The first line of an error's message (its type name when it has none)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def metadata(checkpoint: Any, path: str | Path = "checkpoint") -> dict[str, Any]:
    """The validated ``checkpoint["fer_lightning"]`` entry (CheckpointError otherwise;
    UntrustedConfigError when anything in ``checkpoint`` asks to build a class this
    package never builds, ``trust.check_stored``)."""
    meta = checkpoint.get(METADATA_KEY) if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict):
        if isinstance(checkpoint, dict) and "state_dict" in checkpoint:
            raise CheckpointError(
                f"{path} is a Lightning checkpoint without fer_lightning metadata (written "
                f"by another program, or by fer_lightning before checkpoints stored their "
                f"run config): it cannot be rebuilt from the file alone")
        raise CheckpointError(f"{path} is not a fer_lightning checkpoint (no "
                              f"{METADATA_KEY!r} entry)")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written by fer_lightning {meta.get('package_version', '?')} in "
            f"checkpoint format {version!r}; this fer_lightning {__version__} reads formats "
            f"up to {FORMAT_VERSION}: upgrade fer_lightning to use it")
    if not isinstance(meta.get("config"), dict) or not meta.get("class_names"):
        raise CheckpointError(f"{path} stores no run config or class names (saved by a "
                              f"module built outside build.build_module?)")
    check_stored(checkpoint, path)
    return meta


def class_names(checkpoint: Mapping[str, Any]) -> list[str]:
    """The net's output classes, in order."""
    return list(checkpoint[METADATA_KEY]["class_names"])


def stored_config(checkpoint: Mapping[str, Any]) -> DictConfig:
    """The run config stored in the checkpoint, as an OmegaConf container."""
    return OmegaConf.create(checkpoint[METADATA_KEY]["config"])


def load_state(module: torch.nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """``module.load_state_dict(state, strict=True, assign=True)`` for a module built on the
    meta device; a mismatch or a tensor the state does not provide is a CheckpointError."""
    try:
        module.load_state_dict(dict(state), strict=True, assign=True)
    except RuntimeError as error:
        raise CheckpointError(f"the checkpoint's weights do not fit {what} its config builds "
                              f"(edited config or checkpoint?): {error}") from None
    left = [name for name, tensor in [*module.named_parameters(), *module.named_buffers()]
            if tensor.is_meta]
    if left:
        raise CheckpointError(f"{what} has tensors the checkpoint does not hold: {left[:5]}")


# -- class names -----------------------------------------------------------------------


def canonical(name: str) -> str:
    """One spelling per expression (:data:`CANONICAL_CLASS`), lower case."""
    key = name.strip().lower()
    return CANONICAL_CLASS.get(key, key)


def label_mapping(checkpoint_names: Sequence[str], dataset_names: Sequence[str],
                  remap: bool | Mapping[str, str] = False,
                  remap_hint: str = "evaluate with remap=true to map the labels by name",
                  ) -> list[int] | None:
    """How the dataset's labels index the checkpoint's outputs: None when both name the
    same classes in the same order; with ``remap`` (true, or ``{dataset class: checkpoint
    class}`` pairs for names the synonyms do not cover) a list ``mapping[dataset label] =
    checkpoint index`` matched by name. Anything else raises ConfigError listing both
    orders: evaluating with mismatched names would report mislabelled metrics."""
    checkpoint_names, dataset_names = list(checkpoint_names), list(dataset_names)
    if checkpoint_names == dataset_names:
        return None
    pairs = dict(remap) if isinstance(remap, Mapping) else {}
    index = {canonical(name): i for i, name in enumerate(checkpoint_names)}
    mapping, unmatched = [], []
    for name in dataset_names:
        target = canonical(pairs.get(name, name))
        if target in index:
            mapping.append(index[target])
        else:
            unmatched.append(name)
    both = (f"  checkpoint classes: {checkpoint_names}\n"
            f"  dataset classes:    {dataset_names}")
    if unmatched or len(set(mapping)) != len(mapping):
        detail = (f"dataset classes {unmatched} have no checkpoint class of that name" if unmatched
                  else "several dataset classes map to one checkpoint class")
        hint = ("; map them explicitly with remap='{dataset class: checkpoint class, ...}'"
                if unmatched else "")
        raise ConfigError(f"the checkpoint's classes differ from the dataset's:\n{both}\n"
                          f"and cannot be matched by name: {detail}{hint}")
    if not remap:
        raise ConfigError(f"the checkpoint's classes differ from the dataset's:\n{both}\n"
                          f"Every dataset class matches a checkpoint class by name: {remap_hint}")
    return mapping


def check_checkpoint_classes(path: str | Path, dataset_names: Sequence[str]) -> None:
    """Read ``path`` safely and require the dataset's classes in the checkpoint's order
    (``train`` resuming or testing a checkpoint, which has no remap option)."""
    label_mapping(class_names(load_checkpoint(path)), dataset_names, remap_hint=(
        f"test it with `python -m fer_lightning.eval ckpt_path={path} remap=true` (plus the "
        f"dataset overrides), which maps the labels by name"))
