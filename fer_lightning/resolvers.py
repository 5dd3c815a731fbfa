"""Every OmegaConf resolver the configs use, registered on import.

Each command imports this module through ``fer_lightning.cli`` (and ``config`` does), so a
config composes the same from any entry point: ``predict`` and ``export`` import nothing
else that would register them, and their configs use ``${launch_dir:}`` and
``${task_dir:...}`` too. Only light modules are imported here.
"""

from __future__ import annotations

import os
import re
from typing import Any

from omegaconf import OmegaConf

from fer_lightning.cli_help import command_help
from fer_lightning.errors import ConfigError
from fer_lightning.labels import run_label
from fer_lightning.runlog import quiet_level
from fer_lightning.slurm import slurm_gpus, slurm_tasks

#: A task name becomes a folder under ``paths.log_dir``: letters, digits, ``_ . -`` only.
TASK_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
#: Folder Hydra creates for a run whose task_name is refused (removed again by the CLI).
INVALID_TASK_DIR = "_invalid_task_name"


def check_task_name(task_name: Any) -> str:
    """``task_name`` if it is a plain folder name; run folders live at
    ``<paths.log_dir>/<task_name>/...``, so a separator or ``..`` would write elsewhere."""
    if not isinstance(task_name, str) or not TASK_NAME.fullmatch(task_name) \
            or ".." in task_name:
        raise ConfigError(f"task_name must be a plain folder name (letters, digits, '_', '.', "
                          f"'-'; no '/' or '..'), got {task_name!r}")
    return task_name


def task_dir(task_name: Any) -> str:
    """``${task_dir:${task_name}}`` in the run / sweep directories. Hydra creates them
    before the run starts, so an unsafe name must not reach the path: it becomes
    :data:`INVALID_TASK_DIR` and the config check then names the problem."""
    try:
        return check_task_name(task_name)
    except ConfigError:
        return INVALID_TASK_DIR


# `${launch_dir:}`: the directory the command was started from (runs never chdir). Unlike
# `${hydra:runtime.cwd}` it also resolves while a multirun launcher computes its sweep
# directory, before Hydra's per-job state exists.
OmegaConf.register_new_resolver("launch_dir", os.getcwd, replace=True)
OmegaConf.register_new_resolver("task_dir", task_dir, replace=True)
# `${run_label:name|group|tags}`: W&B names, groups and tags from the run's ablation axes.
OmegaConf.register_new_resolver("run_label", run_label, replace=True)
# `${slurm_tasks:...}`, `${slurm_gpus:...}`: hydra/launcher=slurm's request from trainer.*.
OmegaConf.register_new_resolver("slurm_tasks", slurm_tasks, replace=True)
OmegaConf.register_new_resolver("slurm_gpus", slurm_gpus, replace=True)
# `${command_help:train}`: the --help page of a command (hydra/default.yaml).
OmegaConf.register_new_resolver("command_help", command_help, replace=True)
# `${quiet_level:${verbose}}`: the log level of chatty third-party loggers (hydra/default.yaml).
OmegaConf.register_new_resolver("quiet_level", quiet_level, replace=True)
