"""From complete runs to blocks, axes and cells (docs/reporting.md, "Blocks, axes, cells").

- Block: runs on the same data (the data source's settings and root), the same model
  family and the same code version (package version and git commit). Runs in different
  blocks are never pooled.
- Axis: a config group whose option differs between a block's runs (from Hydra's
  ``runtime.choices``, so ``landmarks=groundtruth`` is the ``landmarks`` axis however it was
  launched), or a config key that differs and is not explained by such a group. Keys that
  change together with an axis (``landmarks.enabled`` with ``landmarks``) are its
  ``covarying`` keys, not axes of their own. Bookkeeping keys (paths, loggers, ...) and
  ``seed`` (the replicate) are never axes.
- Cell: one combination of axis values; its runs are its seeds.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fer_lightning.keys import SEED, is_bookkeeping, strip_override_prefix
from fer_lightning.report.discover import Run

#: Config groups in the order the root config lists them (axes are shown in this order).
GROUP_ORDER = ("data", "landmarks", "model", "head", "loss", "optimizer", "scheduler",
               "trainer", "callbacks", "experiment")
#: Settings of the data source that only mirror data.image_size / data.channels.
DATA_RENDERING = ("data.source.image_size", "data.source.channels")
UNSET = "<unset>"


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists and empty mappings are leaves."""
    if isinstance(node, dict) and node:
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: node}


def canonical(value: Any) -> str:
    """A hashable, order-independent form of a config value (for comparing runs)."""
    return json.dumps(value, sort_keys=True, default=str)


def class_name(target: Any) -> str | None:
    """``torch.optim.Adam`` -> ``Adam``."""
    return str(target).rsplit(".", 1)[-1] if target else None


def default_options() -> dict[str, str]:
    """The root config's default option of each group (baselines of group axes)."""
    train_yaml = Path(__file__).resolve().parents[1] / "conf" / "train.yaml"
    defaults: dict[str, str] = {}
    for entry in yaml.safe_load(train_yaml.read_text()).get("defaults", []):
        if isinstance(entry, dict):
            for group, option in entry.items():
                defaults[str(group).removeprefix("override ")] = str(option)
    return defaults


# ---------------------------------------------------------------------------- blocks --

def block_identity(run: Run) -> dict[str, Any]:
    """What must be equal for two runs to be compared: data, model family, code version."""
    config, results = run.config or {}, run.results or {}
    data = config.get("data") or {}
    source = {key: value for key, value in flatten(data.get("source") or {}, "data.source.").items()
              if key not in DATA_RENDERING}
    model = config.get("model") or {}
    choices = run.choices or {}
    return {
        "data": choices.get("data") or class_name(source.get("data.source._target_")),
        "model": choices.get("model") or model.get("name") or class_name(model.get("_target_")),
        "package_version": results.get("package_version"),
        "git_commit": results.get("git_commit"),
        "data.root": data.get("root"),
        **source,
        "model._target_": model.get("_target_"),
    }


#: Identity keys shown in a block's title; the others only when they tell blocks apart.
SHOWN_IDENTITY = ("data", "model", "package_version", "git_commit")


def split_blocks(runs: list[Run]) -> list[tuple[dict[str, Any], list[Run]]]:
    """Group complete runs into blocks; each with the identity keys that name it (always
    data, model and code version, plus any other identity key that differs between
    blocks). The ``data`` / ``model`` labels only name a block: runs with and without
    Hydra's record of the options fall in one block when their settings are equal."""
    groups: dict[str, tuple[dict[str, Any], list[Run]]] = {}
    for run in runs:
        identity = block_identity(run)
        key = canonical({k: v for k, v in identity.items() if k not in ("data", "model")})
        groups.setdefault(key, (identity, []))[1].append(run)
    identities = [identity for identity, _ in groups.values()]
    differing = {key for key in identities[0] for other in identities[1:]
                 if canonical(other.get(key)) != canonical(identities[0].get(key))} \
        if identities else set()
    blocks = []
    for identity, members in groups.values():
        shown = {key: value for key, value in identity.items()
                 if key in SHOWN_IDENTITY or key in differing}
        blocks.append((shown, members))
    return blocks


# ------------------------------------------------------------------------------ axes --

@dataclass
class Axis:
    """One ablation axis of a block: its values in display order (baseline first)."""

    name: str
    values: list[Any]
    baseline: Any
    is_group: bool
    covarying: list[str] = field(default_factory=list)


@dataclass
class Variable:
    """A group choice or a config key, with its value in each run of a block. A group's
    ``scope`` is what choosing an option may set: the keys under its config node, or
    everything ("") for a group without a node of its own (``experiment``)."""

    name: str
    is_group: bool
    values: list[Any]
    explicit: bool
    scope: str | None = None

    def distinct(self) -> int:
        return len({canonical(value) for value in self.values})

    def sets(self, other: Variable) -> bool:
        """True when choosing this group's option may set ``other`` by itself."""
        return self.scope is not None and other.name != self.name and \
            (self.scope == "" or other.name.startswith(self.scope))

    def determined_by(self, *others: Variable) -> bool:
        """True when each combination of ``others``' values fixes this one's value. Unless
        one of ``others`` is a group whose option sets this variable, the combinations must
        repeat: a value unique to each run explains nothing."""
        mapping: dict[str, set[str]] = defaultdict(set)
        for index, value in enumerate(self.values):
            key = canonical([other.values[index] for other in others])
            mapping[key].add(canonical(value))
        if any(len(values) > 1 for values in mapping.values()):
            return False
        return len(mapping) < len(self.values) or any(other.sets(self) for other in others)


def _group_labels(runs: list[Run]) -> list[dict[str, Any]]:
    """Each run's option of every config group: Hydra's choices when every run has them,
    else the group node's ``name`` or its ``_target_`` class (runs launched elsewhere)."""
    if all(run.choices is not None for run in runs):
        return [{group: option for group, option in (run.choices or {}).items()
                 if not is_bookkeeping(group)} for run in runs]
    labels = []
    for run in runs:
        derived = {}
        for group, node in (run.config or {}).items():
            if isinstance(node, dict) and not is_bookkeeping(group):
                derived[group] = node.get("name") or class_name(node.get("_target_"))
        labels.append(derived)
    return labels


def _ordered_groups(labels: list[dict[str, Any]]) -> list[str]:
    """The config groups of ``labels``, in the root config's order (others by name)."""
    return sorted({g for label in labels for g in label},
                  key=lambda g: (GROUP_ORDER.index(g) if g in GROUP_ORDER else 99, g))


def _overridden_keys(runs: list[Run]) -> set[str]:
    """The config keys any of ``runs`` set by a command-line override."""
    return {strip_override_prefix(line.partition("=")[0])
            for run in runs for line in run.overrides}


def _variables(runs: list[Run], ignore: tuple[str, ...]) -> list[Variable]:
    """Every group choice and config key that differs between ``runs``, in priority order:
    groups (root config order), then keys set by overrides, then other keys."""
    labels = _group_labels(runs)
    groups = _ordered_groups(labels)
    flats = [{key: value for key, value in flatten(run.config or {}).items()
              if key != SEED and not is_bookkeeping(key, ignore)} for run in runs]
    overridden = _overridden_keys(runs)
    nodes = {key for run in runs for key, node in (run.config or {}).items()
             if isinstance(node, dict)}
    variables = [Variable(group, True, [label.get(group) for label in labels],
                          group in overridden, f"{group}." if group in nodes else "")
                 for group in groups if not is_bookkeeping(group, ignore)]
    keys = sorted({key for flat in flats for key in flat})
    variables += [Variable(key, False, [flat.get(key, UNSET) for flat in flats],
                           key in overridden) for key in keys]
    varying = [variable for variable in variables if variable.distinct() > 1]
    return sorted(varying, key=lambda v: (not v.is_group, not v.explicit,
                                          varying.index(v) if v.is_group else len(v.name)))


def _sort_key(value: Any) -> tuple:
    """Display order of values: unset / null / none / false first, numbers by size."""
    if value in (UNSET, None, "none", False, "null"):
        return (0, 0, "")
    if isinstance(value, bool):
        return (1, int(value), "")
    if isinstance(value, int | float):
        return (1, value, "")
    return (2, 0, canonical(value))


def _order_values(variable: Variable, defaults: dict[str, str],
                  baselines: dict[str, Any]) -> tuple[list[Any], Any]:
    distinct: dict[str, Any] = {}
    for value in variable.values:
        distinct.setdefault(canonical(value), value)
    values = sorted(distinct.values(), key=_sort_key)
    if variable.name in baselines:
        wanted = baselines[variable.name]
        baseline = next((v for v in values if str(v) == str(wanted)), None)
        if baseline is None:
            raise ValueError(f"--baseline {variable.name}={wanted}: the axis has values "
                             f"{[str(v) for v in values]}")
    elif variable.is_group and defaults.get(variable.name) in values:
        baseline = defaults[variable.name]
    else:
        baseline = values[0]
    values.remove(baseline)
    return [baseline, *values], baseline


def find_axes(runs: list[Run], ignore: tuple[str, ...] = (),
              baselines: dict[str, Any] | None = None
              ) -> tuple[list[Axis], list[dict[str, Any]]]:
    """The axes of a block's runs (see module docstring) and each run's value on them. A
    variable explained by the axes found before it (alone or jointly) joins them as
    covarying; an axis that a later, finer variable explains is folded into that one."""
    chosen: list[Variable] = []
    covarying: dict[str, list[str]] = defaultdict(list)
    for variable in _variables(runs, ignore):
        owner = next((axis for axis in chosen if variable.determined_by(axis)), None)
        if owner is not None:
            covarying[owner.name].append(variable.name)
            continue
        if chosen and variable.determined_by(*chosen):
            covarying[chosen[-1].name].append(variable.name)
            continue
        for axis in list(chosen):
            if axis.determined_by(variable):
                chosen.remove(axis)
                covarying[variable.name] += [axis.name, *covarying.pop(axis.name, [])]
        chosen.append(variable)
    defaults = default_options()
    axes = []
    for variable in chosen:
        values, baseline = _order_values(variable, defaults, baselines or {})
        axes.append(Axis(variable.name, values, baseline, variable.is_group,
                         covarying.get(variable.name, [])))
    run_values = [{variable.name: variable.values[index] for variable in chosen}
                  for index in range(len(runs))]
    return axes, run_values


def constant_settings(runs: list[Run], axes: list[Axis]) -> dict[str, Any]:
    """Group options and overridden keys that all of a block's runs share (what was held
    fixed), for the block's summary."""
    names = {axis.name for axis in axes} | {key for axis in axes for key in axis.covarying}
    labels = _group_labels(runs)
    fixed: dict[str, Any] = {}
    for group in _ordered_groups(labels):
        values = {canonical(label.get(group)) for label in labels}
        if group not in names and len(values) == 1 and labels[0].get(group) is not None:
            fixed[group] = labels[0][group]
    overridden = sorted(_overridden_keys(runs))
    flats = [flatten(run.config or {}) for run in runs]
    for key in overridden:
        if key in names or key in fixed or key == SEED or is_bookkeeping(key) or \
                key not in flats[0]:
            continue
        if len({canonical(flat.get(key, UNSET)) for flat in flats}) == 1:
            fixed[key] = flats[0][key]
    return fixed
