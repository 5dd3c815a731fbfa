"""W&B run name, group and tags from a run's ablation axes (``${run_label:...}`` in
``conf/logger/wandb.yaml``), so the W&B UI groups the seeds of each cell of each sweep.

- name: the swept overrides and the seed, e.g. ``head=fc,landmarks=groundtruth,seed=2``
- group: ``<sweep>/<cell>``, the cell without the seed, so W&B aggregates its seeds
- tags: the config's ``tags``, ``sweep=<sweep>`` and one ``key=value`` per swept override

The sweep is ``<task_name>/<multirun folder>`` for a Hydra multirun (any launcher or
sweeper), ``<task_name>/wandb-<id>`` under a W&B sweep agent and ``<task_name>`` for a
single run. In a multirun only the swept overrides count as axes (read from the
multirun's ``multirun.yaml`` and ``hydra.sweeper.params``); otherwise every override
that is not bookkeeping (see ``keys.is_bookkeeping``) does.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from fer_lightning.keys import SEED, is_bookkeeping, strip_override_prefix

#: W&B's limits on a group name and on one tag.
MAX_GROUP, MAX_TAG = 128, 64


def _shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, keeping it unique with a short hash."""
    if len(text) <= limit:
        return text
    digest = hashlib.sha1(text.encode()).hexdigest()[:8]
    return f"{text[:limit - 9]}~{digest}"


def _hydra() -> DictConfig | None:
    return HydraConfig.get() if HydraConfig.initialized() else None


def _is_multirun(hydra_cfg: DictConfig) -> bool:
    return str(hydra_cfg.get("mode")) == "RunMode.MULTIRUN"


def _swept_keys(hydra_cfg: DictConfig) -> set[str] | None:
    """Keys a multirun sweeps (None when they cannot be known: then all overrides count)."""
    keys = set((hydra_cfg.get("sweeper", {}) or {}).get("params", {}) or {})
    multirun_file = Path(str(hydra_cfg.sweep.dir)) / "multirun.yaml"
    if multirun_file.is_file():
        lines = OmegaConf.load(multirun_file).hydra.overrides.task
        parsed = OverridesParser.create().parse_overrides([str(line) for line in lines])
        keys |= {override.key_or_group for override in parsed if override.is_sweep_override()}
    elif not keys:
        return None
    return {strip_override_prefix(key) for key in keys}


def axis_overrides(hydra_cfg: DictConfig | None) -> list[str]:
    """The run's ``key=value`` overrides that define its cell, sorted by key."""
    if hydra_cfg is None:
        return []
    swept = _swept_keys(hydra_cfg) if _is_multirun(hydra_cfg) else None
    chosen = []
    for line in hydra_cfg.overrides.task:
        key, _, value = str(line).partition("=")
        key = strip_override_prefix(key)
        if key == SEED or is_bookkeeping(key) or (swept is not None and key not in swept):
            continue
        chosen.append((key, value))
    return [f"{key}={value}" for key, value in sorted(chosen)]


def sweep_label(hydra_cfg: DictConfig | None, task_name: str) -> str:
    """Which sweep (or multirun) the run belongs to; the task name for a single run."""
    if hydra_cfg is not None and _is_multirun(hydra_cfg):
        return f"{task_name}/{Path(str(hydra_cfg.sweep.dir)).name}"
    if os.environ.get("WANDB_SWEEP_ID"):
        return f"{task_name}/wandb-{os.environ['WANDB_SWEEP_ID']}"
    return task_name


def run_label(what: str, _root_: DictConfig) -> Any:
    """``${run_label:name}``, ``${run_label:group}`` or ``${run_label:tags}`` (see module
    docstring)."""
    hydra_cfg = _hydra()
    axes = axis_overrides(hydra_cfg)
    cell = ",".join(axes) or "default"
    sweep = sweep_label(hydra_cfg, str(_root_.get("task_name", "train")))
    if what == "name":
        return f"{cell},seed={_root_.get(SEED)}"
    if what == "group":
        return _shorten(f"{sweep}/{cell}", MAX_GROUP)
    if what == "tags":
        tags = [str(tag) for tag in (_root_.get("tags") or [])]
        return [_shorten(tag, MAX_TAG) for tag in (*tags, f"sweep={sweep}", *axes)]
    raise ValueError(f"run_label: expected name, group or tags, got {what!r}")
