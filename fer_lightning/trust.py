"""What a config stored in a checkpoint or an ONNX file may build: checkpoints are data.

``eval``, ``predict``, ``export`` and ``train ckpt_path=...`` rebuild the net, the data
source, the loss and the landmark extractor from the run config a ``.ckpt`` file (or an
``.onnx`` file's metadata) carries, with Hydra's ``instantiate``. ``instantiate`` imports
and calls whatever a ``_target_`` names, so a file holding only plain data (it passes
``torch.load(weights_only=True)``) could still run code through its config, e.g. a node
``{_target_: builtins.open, _args_: [path, w]}`` nested anywhere in it.

:func:`check_stored` therefore reads the stored object as data before anything in it is
imported or built, and refuses the whole file with one line naming the key when

- a ``_target_`` at any depth (in mappings and lists, ``_partial_`` nodes alike) names a
  class that none of this package's own config files (``fer_lightning/conf``) names: its
  nets, modules, losses, data sources, landmark extractors, callbacks, loggers and the
  torch / Lightning classes those files name (:func:`shipped_targets`, read from the
  files, so the list cannot fall behind them). Classes of your own can be trusted
  explicitly with the environment variable :data:`TRUST_ENV` (never by the file);
- a string holds an interpolation (``${...}``): stored configs are resolved when written,
  so one there was put in afterwards, and resolving it would run a resolver the file
  chose (``oc.env`` reads environment variables);
- a stored Hydra group option (``choices``, which ``eval`` puts on its command line) is
  not a plain option name.

When training resumes, the checkpoint callbacks' record of their best files is confined
to this run's checkpoint folder (:func:`confine_best_record`), as Lightning deletes files
it names.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from fer_lightning.errors import UntrustedConfigError

log = logging.getLogger(__name__)

TARGET_KEY = "_target_"
#: Comma-separated class paths (``mypackage.nets.MyNet``) trusted besides the shipped ones.
TRUST_ENV = "FER_LIGHTNING_TRUSTED_TARGETS"
#: Deepest nesting of mappings / lists a stored object may have (run configs nest a few).
MAX_DEPTH = 100
#: The package's config folder, the source of the allowed targets.
CONF_DIR = Path(__file__).resolve().parent / "conf"
#: What a Hydra group or option name looks like (config folder / file names, no override
#: syntax, no path that leaves the config folder).
OPTION_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*")


def _targets_in(node: Any) -> Iterator[Any]:
    """Every ``_target_`` value in a parsed YAML document."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == TARGET_KEY:
                yield value
            else:
                yield from _targets_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from _targets_in(value)


@functools.cache
def shipped_targets(conf_dir: Path = CONF_DIR) -> frozenset[str | None]:
    """Every ``_target_`` the package's config files name (``null`` included: the
    ``scheduler=none`` option builds nothing)."""
    targets: set[str | None] = set()
    for path in sorted(conf_dir.rglob("*.yaml")):
        with path.open() as handle:
            targets.update(target for target in _targets_in(yaml.safe_load(handle))
                           if target is None or isinstance(target, str) and "${" not in target)
    return frozenset(targets)


#: Targets the package's config files named before (callbacks since moved behind
#: fer_lightning's own factories): checkpoints written then store them and keep loading.
FORMERLY_SHIPPED = frozenset({
    "lightning.pytorch.callbacks.ModelCheckpoint",
    "lightning.pytorch.callbacks.RichModelSummary",
    "lightning.pytorch.callbacks.RichProgressBar",
    "fer_lightning.launch.LaunchReport",
})


def trusted_targets() -> frozenset[str | None]:
    """:func:`shipped_targets` and :data:`FORMERLY_SHIPPED`, plus the classes named in
    :data:`TRUST_ENV`."""
    extra = {name.strip() for name in os.environ.get(TRUST_ENV, "").split(",") if name.strip()}
    return shipped_targets() | FORMERLY_SHIPPED | extra


def _walk(node: Any) -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every value in nested mappings and lists (lists as [i]),
    depth first, without recursion; nesting deeper than :data:`MAX_DEPTH` (no stored
    config comes near it) is an UntrustedConfigError, not a RecursionError later."""
    stack: list[tuple[str, Any, int]] = [("", node, 0)]
    while stack:
        key, value, depth = stack.pop()
        yield key, value
        if depth > MAX_DEPTH:
            raise UntrustedConfigError(f"{key} is nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, Mapping):
            children = [(f"{key}.{name}" if key else str(name), child)
                        for name, child in value.items()]
        elif isinstance(value, list | tuple):
            children = [(f"{key}[{index}]", child) for index, child in enumerate(value)]
        else:
            continue
        stack.extend((name, child, depth + 1) for name, child in reversed(children))


def _shown(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}..."


def untrusted_target(stored: Any, trusted: frozenset[str | None] | None = None
                     ) -> tuple[str, Any] | None:
    """(key, target) of the first ``_target_`` in ``stored`` that is not in ``trusted``
    (default :func:`trusted_targets`), or None when every one is."""
    trusted = trusted_targets() if trusted is None else trusted
    for key, value in _walk(stored):
        if isinstance(value, Mapping) and TARGET_KEY in value:
            target = value[TARGET_KEY]
            if not isinstance(target, str | type(None)) or target not in trusted:
                return f"{key}.{TARGET_KEY}" if key else TARGET_KEY, target
    return None


def interpolation(stored: Any) -> tuple[str, str] | None:
    """(key, value) of the first string in ``stored`` holding ``${``, or None."""
    for key, value in _walk(stored):
        if isinstance(value, str) and "${" in value:
            return key, value
    return None


def check_stored(stored: Any, source: str | Path) -> None:
    """Refuse ``stored`` (a checkpoint as loaded, or ``{"fer_lightning": metadata}`` of an
    ONNX file) with an UntrustedConfigError naming ``source`` and the key, unless every
    ``_target_`` in it is trusted, no string holds an interpolation and every group
    option is a plain name (module docstring). Reads only; imports and builds nothing."""
    try:
        found = untrusted_target(stored)
        found_text = interpolation(stored)
    except UntrustedConfigError as error:
        raise UntrustedConfigError(f"{source}: {error}; the file was refused") from None
    if found is not None:
        key, target = found
        raise UntrustedConfigError(
            f"{source}: {key}={_shown(target)} is not a class fer_lightning builds, so the "
            f"file was refused and nothing in it was built (stored configs may only name the "
            f"classes of fer_lightning's own configs; to trust a class of your own, list it "
            f"in {TRUST_ENV})")
    if found_text is not None:
        key, value = found_text
        raise UntrustedConfigError(
            f"{source}: {key}={_shown(value)} is an interpolation; configs are stored "
            f"resolved, so the file was edited after it was written and was refused")
    metadata = stored.get("fer_lightning") if isinstance(stored, Mapping) else None
    choices = metadata.get("choices", {}) if isinstance(metadata, Mapping) else {}
    if not isinstance(choices, Mapping):
        raise UntrustedConfigError(f"{source}: fer_lightning.choices must map config groups "
                                   f"to options, got {type(choices).__name__}")
    for group, option in choices.items():
        if not (isinstance(group, str) and OPTION_NAME.fullmatch(group)
                and isinstance(option, str) and OPTION_NAME.fullmatch(option)):
            raise UntrustedConfigError(
                f"{source}: fer_lightning.choices.{group}={_shown(option)} is not a config "
                f"option name (letters, digits, '_', '.', '-', '/'), so the file was refused")


def _inside(path: Any, folder: str) -> bool:
    """Whether ``path`` is a local file inside ``folder`` once ``..`` and links are
    resolved (a prefix such as ``<folder>/../x`` does not count)."""
    if not isinstance(path, str) or not path or "://" in path:
        return False
    return os.path.realpath(path).startswith(os.path.realpath(folder) + os.sep)


def confine_best_record(state: Mapping[str, Any], dirpath: str, mode: str) -> dict[str, Any]:
    """A ModelCheckpoint state (``best_k_models``, ``best_model_path``, ...) from a
    checkpoint with every file it names outside ``dirpath`` dropped, and the k-th best
    recomputed from what is left.

    Lightning deletes the worst of ``best_k_models`` when a better epoch arrives, and
    only checks that the path's prefix is the checkpoint folder, so a crafted record
    naming ``<folder>/../../<file>`` (or a remote URL) would delete that file on resume."""
    best = {path: score for path, score in (state.get("best_k_models") or {}).items()
            if _inside(path, dirpath)}
    record = {**state, "best_k_models": best}
    dropped = len(state.get("best_k_models") or {}) - len(best)
    for key in ("best_model_path", "last_model_path"):
        if state.get(key) and not _inside(state[key], dirpath):
            record[key] = ""
            dropped += 1
    if best:
        worst = (min if mode == "max" else max)(best, key=lambda path: float(best[path]))
        record["kth_best_model_path"], record["kth_value"] = worst, best[worst]
    elif "kth_best_model_path" in state:
        record["kth_best_model_path"] = ""
        record["kth_value"] = torch.tensor(float("-inf") if mode == "max" else float("inf"))
    if dropped:
        log.warning("The checkpoint's record of its best files named %d file(s) outside %s; "
                    "they were ignored (never read or deleted)", dropped, dirpath)
    return record
