"""What a multirun says on the launching terminal: its plan, a clear stop, its results.

A Hydra callback (``hydra.callbacks.launch`` in ``conf/hydra/default.yaml``) around every
``-m`` launch:

- ``hydra.launcher.dry_run=true`` (the submitit launchers, ``hydra/launcher=slurm|local``)
  prints the jobs and the resources each would get, and submits nothing;
- ``hydra/launcher=slurm`` on a machine without SLURM ends with one line saying so
  (submitit would fail deep inside with "Could not detect srun");
- when the jobs have finished, one result line per job (the local and SLURM launchers run
  jobs in other processes, whose output goes to ``.submitit/`` logs, not here).
"""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from fer_lightning.report.discover import load_run

log = logging.getLogger(__name__)

#: Launcher keys shown as the resources of each job (those that are set).
RESOURCES = ("partition", "account", "qos", "constraint", "nodes", "tasks_per_node",
             "gpus_per_node", "cpus_per_task", "mem_gb", "timeout_min", "array_parallelism",
             "max_num_timeout", "signal_delay_s", "setup", "additional_parameters")


def launcher_kind(config: DictConfig) -> str:
    """``slurm``, ``local`` (submitit's), ``basic`` (Hydra's one-after-the-other) or the
    launcher's class name."""
    target = str(OmegaConf.select(config, "hydra.launcher._target_") or "")
    for kind, suffix in (("slurm", ".SlurmLauncher"), ("local", ".LocalLauncher"),
                         ("basic", ".BasicLauncher")):
        if target.endswith(suffix):
            return kind
    return target.rsplit(".", 1)[-1] or "unknown"


def planned_jobs(config: DictConfig) -> list[list[str]] | None:
    """The overrides of every job of a grid, as Hydra's basic sweeper expands them
    (``head=gap,fc seed=1,2`` -> 4 jobs); None for a sweeper that picks its trials as it
    goes (Optuna)."""
    if not str(OmegaConf.select(config, "hydra.sweeper._target_") or "").endswith(
            "BasicSweeper"):
        return None
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    task = OmegaConf.to_container(config.hydra.overrides.task, resolve=False)
    overrides = OverridesParser.create().parse_overrides(list(task))
    return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def shown_overrides(overrides: list[str]) -> str:
    """A job's overrides without the ones every job shares that only say where it goes."""
    kept = [o for o in overrides if not o.startswith(("hydra.", "hydra/"))]
    return " ".join(kept) or "(defaults)"


def resources_line(config: DictConfig) -> str:
    """``partition=gpu nodes=1 tasks_per_node=4 ...``: what each job asks the scheduler."""
    launcher = OmegaConf.to_container(config.hydra.launcher, resolve=True)
    shown = [f"{key}={launcher[key]}" for key in RESOURCES
             if launcher.get(key) not in (None, {}, [])]
    return " ".join(shown)


def dry_run_text(config: DictConfig) -> str:
    """The plan a dry run prints: launcher, resources per job, the jobs and their folders."""
    kind, sweep_dir = launcher_kind(config), Path(str(config.hydra.sweep.dir))
    jobs = planned_jobs(config)
    count = str(len(jobs)) if jobs is not None else "the sweeper's"
    lines = [f"dry run: hydra/launcher={kind} would start {count} jobs under {sweep_dir}; "
             f"nothing is submitted", f"each job: {resources_line(config)}"]
    if jobs is None:
        sweeper = str(config.hydra.sweeper._target_).rsplit(".", 1)[-1]
        trials = OmegaConf.select(config, "hydra.sweeper.n_trials")
        params = OmegaConf.select(config, "hydra.sweeper.params") or {}
        lines.append(f"{sweeper} picks its trials as it goes ({trials} trials over "
                     f"{', '.join(params) or 'its parameters'}); shared overrides: "
                     f"{shown_overrides(list(config.hydra.overrides.task))}")
    else:
        lines += [f"#{index} {shown_overrides(job)} -> {sweep_dir / str(index)}"
                  for index, job in enumerate(jobs)]
    return "\n".join(lines)


def job_result_line(index: str, folder: Path) -> str:
    """``#2 head=fc seed=1: test acc 0.512, val acc 0.498 -> <folder>`` or why it has none."""
    run = load_run(folder)
    label = f"#{index} {shown_overrides(run.overrides)}"
    if run.results is None:
        return f"{label}: no results: {run.why or 'not a training run'} -> {folder}"
    metrics = [f"{stage} acc {run.results[stage]['metrics']['acc']:.4f}"
               for stage in ("test", "val") if stage in run.results]
    return f"{label}: {', '.join(metrics) or 'no metrics'} -> {folder}"


def job_folders(sweep_dir: Path) -> list[Path]:
    """The job folders of a multirun folder, in job order."""
    if not sweep_dir.is_dir():
        return []
    folders = [path for path in sweep_dir.iterdir()
               if path.is_dir() and (path / ".hydra").is_dir()]
    return sorted(folders, key=lambda path: (not path.name.isdigit(),
                                             int(path.name) if path.name.isdigit() else 0,
                                             path.name))


class LaunchReport(Callback):
    """Dry run, the no-SLURM stop and one result line per job of a multirun (see the
    module docstring)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        dry_run = bool(OmegaConf.select(config, "hydra.launcher.dry_run", default=False))
        if "dry_run" in (OmegaConf.select(config, "hydra.launcher") or {}):
            with open_dict(config.hydra.launcher):  # submitit does not know the key
                del config.hydra.launcher["dry_run"]
        if dry_run:
            print(dry_run_text(config), flush=True)
            raise SystemExit(0)
        if launcher_kind(config) == "slurm" and shutil.which("sbatch") is None:
            print("no SLURM here: `sbatch` is not on PATH, so hydra/launcher=slurm cannot "
                  "submit from this machine; run it on the cluster's login node, try the "
                  "grid here with hydra/launcher=local (tiny runs), or see what would be "
                  "submitted with hydra.launcher.dry_run=true", file=sys.stderr, flush=True)
            raise SystemExit(1)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        folders = job_folders(sweep_dir)
        planned = planned_jobs(config)
        expected = f" of {len(planned)}" if planned is not None else ""
        lines = [f"multirun done: {len(folders)}{expected} job folders in {sweep_dir}"]
        lines += [job_result_line(folder.name, folder) for folder in folders]
        if planned is not None and len(folders) < len(planned):
            lines.append(f"{len(planned) - len(folders)} job(s) left no folder: they failed "
                         f"their config checks (the message is in the job's output"
                         f"{', .submitit/<job id>/' if launcher_kind(config) != 'basic' else ''})")
        lines.append(f"compare them: python -m fer_lightning.report {sweep_dir}")
        print("\n".join(lines), flush=True)
