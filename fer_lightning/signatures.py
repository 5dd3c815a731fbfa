"""What a config node's ``_target_`` accepts, known before the target is imported.

The config checks (``config_checks.unknown_keys``, ``config._check_against_signature``)
compare a node's keys and scalar values with its target's constructor. Importing the
targets means importing torch and Lightning, several seconds of CPU; a misspelt key would
wait for them before it is named. So each target's accepted parameters are remembered in
a small JSON file, one per Python version, with the size and modification time of every
source file they were read from (the class, its bases, the function): an entry is used
only while all those files are unchanged, so an upgraded package or an edited class is
read again. The first check of a target in an environment imports it and writes its entry;
later checks answer from the file. The file holds names and type names only (nothing in
it is imported or run) and is replaced atomically; a file that does not parse is ignored.

``FER_LIGHTNING_CACHE_DIR`` moves it (default: ``$XDG_CACHE_HOME/fer_lightning`` or
``~/.cache/fer_lightning``).
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import tempfile
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Scalar types a hint can admit, by the name an entry stores.
SCALARS: dict[str, type] = {"int": int, "float": float, "bool": bool, "str": str}


@dataclass(frozen=True)
class Signature:
    """A target's keyword parameters (without ``self`` and ``*args``), whether it takes
    ``**kwargs``, and per parameter the scalar types its hint admits and whether it
    admits None (parameters without a scalar hint are absent from ``scalars``)."""

    parameters: tuple[str, ...]
    var_keyword: bool
    scalars: dict[str, tuple[frozenset[type], bool]]


def scalar_types(hint: Any) -> tuple[set[type], bool] | None:
    """The scalar types (int, float, bool, str) a type hint admits and whether it admits
    None; None when the hint names no scalar type (containers, tensors, classes)."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    options = typing.get_args(hint) if union else (hint,)
    scalars = {option for option in options if option in SCALARS.values()}
    return (scalars, type(None) in options) if scalars else None


def cache_file(directory: str | Path | None = None) -> Path:
    """Where the entries live: in ``directory``, by default the one the module docstring
    names."""
    root = directory if directory is not None else os.environ.get("FER_LIGHTNING_CACHE_DIR")
    if root is None:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = str(Path(xdg) / "fer_lightning" if xdg else Path.home() / ".cache" / "fer_lightning")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return Path(root) / f"signatures-py{version}.json"


def _read_entries() -> dict[str, Any]:
    try:
        entries = json.loads(cache_file().read_text())
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}


def _stamp(path: str) -> list[int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return [status.st_mtime_ns, status.st_size]


def _from_entry(entry: Any) -> Signature | None:
    """The entry's signature while every file it was read from is unchanged, else None."""
    try:
        files = entry["files"]
        if not files or any(_stamp(path) != stamp for path, stamp in files.items()):
            return None
        scalars = {name: (frozenset(SCALARS[kind] for kind in kinds), bool(optional))
                   for name, (kinds, optional) in entry["scalars"].items()}
        return Signature(tuple(map(str, entry["parameters"])), bool(entry["var_keyword"]),
                         scalars)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None  # an entry of another layout: read the target again


def _source_files(target: Any) -> list[str]:
    """The files a target's signature is read from: a class's own and its bases' (an
    inherited ``__init__``), or a function's."""
    owners = [cls for cls in target.__mro__ if cls is not object] \
        if isinstance(target, type) else [target]
    files = []
    for owner in owners:
        try:
            files.append(inspect.getsourcefile(owner))
        except TypeError:  # built in: no file, nothing to invalidate it
            continue
    return [file for file in dict.fromkeys(files) if file]


def _read_signature(target: Any) -> Signature:
    parameters = inspect.signature(target).parameters
    try:
        hints = typing.get_type_hints(target.__init__ if isinstance(target, type) else target)
    except Exception:  # noqa: BLE001 - unresolvable hints: no type check, keys still checked
        hints = {}
    scalars = {}
    for name, parameter in parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        accepted = scalar_types(hints[name]) if name in hints else None
        if accepted is not None:
            scalars[name] = (frozenset(accepted[0]), accepted[1])
    return Signature(
        tuple(name for name, p in parameters.items()
              if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and name != "self"),
        any(p.kind is p.VAR_KEYWORD for p in parameters.values()), scalars)


def _remember(name: str, target: Any, signature: Signature) -> None:
    files = _source_files(target)
    stamps = {file: _stamp(file) for file in files}
    if not files or None in stamps.values():
        return
    names = {kind: key for key, kind in SCALARS.items()}
    entries = _read_entries()
    entries[name] = {"files": stamps, "parameters": list(signature.parameters),
                     "var_keyword": signature.var_keyword,
                     "scalars": {param: [sorted(names[kind] for kind in kinds), optional]
                                 for param, (kinds, optional) in signature.scalars.items()}}
    path = cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp",
                                         delete=False) as handle:
            json.dump(entries, handle)
        os.replace(handle.name, path)
    except OSError:
        return  # a read-only home: the next check imports the target again


def signature(target: str, *, allow_import: bool = True) -> Signature | None:
    """The signature of the object ``target`` names: from the cache while its files are
    unchanged, else (``allow_import``) imported, read and remembered; None when it is not
    known without an import that is not allowed, or cannot be imported or inspected."""
    known = _from_entry(_read_entries().get(target))
    if known is not None or not allow_import:
        return known
    from hydra.utils import get_object

    try:
        obj = get_object(target)
        found = _read_signature(obj)
    except Exception:  # noqa: BLE001 - an unimportable target fails later with its own message
        return None
    _remember(target, obj, found)
    return found
