"""``--help`` of each command, written from the command's own config file.

Hydra's generic help lists every config group of the package (training groups for
``predict``, which takes none) including private ``_``-files, and none of the command's
own keys. This page is built from ``conf/<command>.yaml`` itself, so it cannot drift from
it: the file's opening comment (what the command does, examples), each top-level key with
the comment above it and its default, and the groups the command composes with their
options (files starting with ``_`` are building blocks, not options). Only the standard
library and PyYAML are imported: ``--help`` answers at once.
"""

from __future__ import annotations

import re
import textwrap
from importlib import resources
from typing import Any

import yaml

#: The command line of each config: ``python -m <module>``.
COMMANDS = {"train": "fer_lightning", "eval": "fer_lightning.eval",
            "predict": "fer_lightning.predict", "export": "fer_lightning.export"}
#: Groups every command composes that are bookkeeping, not choices (``paths``, ``hydra``).
INTERNAL_GROUPS = ("paths", "hydra")
#: Groups a user adds with ``+group=option`` or selects on Hydra's side.
EXTRA_GROUPS = {"train": (("+experiment", "experiment"), ("hydra/launcher", "hydra/launcher"))}
#: Commands whose group defaults are the checkpoint's own (the file's are placeholders),
#: and groups they compose but do not use.
FROM_CHECKPOINT = {"eval": ("hparams_search",)}
_KEY = re.compile(r"^([A-Za-z_][\w]*):(.*)$")


def _conf_text(*parts: str) -> str:
    return resources.files("fer_lightning.conf").joinpath(*parts).read_text(encoding="utf-8")


def group_options(group: str) -> list[str]:
    """The options of a config group (its ``.yaml`` files), private ``_`` files left out."""
    folder = resources.files("fer_lightning.conf").joinpath(*group.split("/"))
    return sorted(entry.name.removesuffix(".yaml") for entry in folder.iterdir()
                  if entry.name.endswith(".yaml") and not entry.name.startswith("_"))


def opening_comment(text: str) -> list[str]:
    """The comment lines a config file starts with, without their ``#``."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].removeprefix(" "))
    return lines


def own_keys(text: str) -> list[tuple[str, str, list[str]]]:
    """(key, default as written, comment lines right above it) of each top-level scalar
    key outside the defaults list; mappings (settings a command passes to a group, such as
    eval's ``callbacks``) are left out."""
    keys: list[tuple[str, str, list[str]]] = []
    comment: list[str] = []
    in_defaults = False
    for line in text.splitlines():
        if in_defaults and (line.startswith((" ", "-")) or not line.strip()):
            continue
        in_defaults = False
        if line.startswith("#"):
            comment.append(line[1:].removeprefix(" "))
            continue
        match = _KEY.match(line)
        if match and match[1] == "defaults":
            in_defaults = True
        elif match and match[2].strip():
            keys.append((match[1], match[2].strip(), comment))
        comment = []
    return keys


def composed_groups(config: str) -> dict[str, str]:
    """{group: default option} of the groups a config composes, through the configs it
    extends (``eval`` extends ``train``); ``override`` entries replace the default."""
    entries = yaml.safe_load(_conf_text(f"{config}.yaml")).get("defaults", [])
    groups: dict[str, str] = {}
    for entry in entries:
        if isinstance(entry, str) and entry != "_self_":
            groups.update(composed_groups(entry))
        elif isinstance(entry, dict):
            for key, option in entry.items():
                groups[key.removeprefix("override ").strip()] = option
    return {group: option for group, option in groups.items() if group not in INTERNAL_GROUPS}


def _shown(value: Any) -> str:
    return "none" if value is None else str(value)


def command_help(config: str) -> str:
    """The ``--help`` page of the command whose root config is ``conf/<config>.yaml``."""
    text = _conf_text(f"{config}.yaml")
    module = COMMANDS.get(config, f"fer_lightning.{config}")
    lines = [f"python -m {module} [key=value ...] [group=option ...]", ""]
    lines += [f"  {line}" for line in opening_comment(text)] + ["", "Its own keys (default):"]
    for key, default, comment in own_keys(text):
        lines.append(f"  {key}={default}" + (" (required)" if default == "???" else ""))
        lines += [f"      {line}" for line in comment]
    groups = composed_groups(config)
    unused = FROM_CHECKPOINT.get(config)
    if unused is not None:
        groups = {group: option for group, option in groups.items() if group not in unused}
    extra = EXTRA_GROUPS.get(config, ())
    if groups or extra:
        lines += ["", "Groups it takes (group=option; default in brackets):" if unused is None
                  else "Groups it takes (group=option; the checkpoint's own options are the "
                       "defaults):"]
        width = max(len(name) for name in [*groups, *(shown for shown, _ in extra)])
        rows = [(group, ", ".join(group_options(group))
                 + ("" if unused is not None else f" [{_shown(default)}]"))
                for group, default in groups.items()]
        rows += [(shown, ", ".join(group_options(group))) for shown, group in extra]
        for name, options in rows:
            wrapped = textwrap.wrap(options, width=96 - width)
            lines.append(f"  {name:<{width}}  {wrapped[0]}")
            lines += [f"  {'':<{width}}  {more}" for more in wrapped[1:]]
    else:
        lines += ["", "Groups it takes: none (the checkpoint brings its own configuration)."]
    lines += ["", f"Every key of the composed config can be set; `python -m {module} --cfg job "
              f"[key=value ...]` prints it all, `--hydra-help` Hydra's own options.", ""]
    return "\n".join(lines).replace("$", "$$")  # Hydra fills $NAMES into the page
