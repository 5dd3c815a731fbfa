"""Find run folders under the given paths and read what each one holds.

A run folder is any folder with a ``config.yaml``, a ``.hydra/`` folder or a
``results.json`` (what ``python -m fer_lightning`` writes, whether it came from a single
run, a Hydra multirun, a W&B sweep agent or a submitit job). A run is *complete* when its
``results.json`` holds final metrics; otherwise it gets a reason (``why``) and is listed
as incomplete, never dropped.
"""

from __future__ import annotations

import csv
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

#: Sub-folders of a run (or of a multirun) that never hold runs.
NOT_RUNS = {"checkpoints", "csv", "tensorboard", "wandb", ".submitit", ".hydra"}
#: Epoch-level training metrics: a row with one of them closes a training epoch.
EPOCH_END = ("train/acc", "train/loss_epoch")
#: A run without results.json written to this recently may still be training.
RECENT_S = 15 * 60
ERROR_LINE = re.compile(r"(Traceback|Error|Exception)\b|Stopped by SIGTERM")


class ReportError(ValueError):
    """A report cannot be made (no such path, no runs); the CLI prints it and exits 1."""


@dataclass
class Run:
    """One run folder: its resolved config, Hydra's record of how it was launched, and
    its results (None with ``why`` set when the run is incomplete)."""

    path: Path
    config: dict[str, Any] | None = None
    choices: dict[str, Any] | None = None
    overrides: list[str] = field(default_factory=list)
    results: dict[str, Any] | None = None
    why: str | None = None

    @property
    def seed(self) -> Any:
        """The run's seed (results.json, else config)."""
        if self.results and "seed" in self.results:
            return self.results["seed"]
        return (self.config or {}).get("seed")

    @property
    def finished(self) -> str:
        """Sort key of when the run finished (results.json's time, else its mtime)."""
        if self.results and self.results.get("finished_at"):
            return str(self.results["finished_at"])
        results = self.path / "results.json"
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(results.stat().st_mtime)) \
            if results.is_file() else ""


def is_run_folder(folder: Path) -> bool:
    """True when ``folder`` looks like one run's output folder."""
    return any((folder / name).exists() for name in ("config.yaml", ".hydra", "results.json"))


def find_run_folders(paths: list[str | Path]) -> list[Path]:
    """Every run folder at or below ``paths`` (not below a run folder), sorted, unique."""
    found: set[Path] = set()
    for given in paths:
        root = Path(given)
        if not root.exists():
            raise ReportError(f"{root}: no such file or folder")
        if root.is_file():
            root = root.parent
        for folder, subfolders, _ in os.walk(root):
            here = Path(folder)
            if is_run_folder(here):
                found.add(here.resolve())
                subfolders[:] = []
            else:
                subfolders[:] = sorted(name for name in subfolders if name not in NOT_RUNS)
    return sorted(found)


def _load_yaml(path: Path) -> Any:
    with path.open() as handle:
        return yaml.safe_load(handle)


def logged_epochs(run_folder: Path) -> int | None:
    """How many training epochs ``csv/metrics.csv`` shows as finished (None without it)."""
    metrics = run_folder / "csv" / "metrics.csv"
    if not metrics.is_file():
        return None
    with metrics.open() as handle:
        return _finished_epochs(list(csv.DictReader(handle)))


def _finished_epochs(rows: list[dict[str, str]]) -> int:
    """How many epochs the rows of a ``metrics.csv`` show as finished."""
    epochs = [int(float(row["epoch"])) for row in rows
              if row.get("epoch") and any(row.get(key) for key in EPOCH_END)]
    return max(epochs) + 1 if epochs else 0


def _last_error_line(run_folder: Path) -> str | None:
    log_file = run_folder / "train.log"
    if not log_file.is_file():
        return None
    errors = [line.strip() for line in log_file.read_text(errors="replace").splitlines()
              if ERROR_LINE.search(line)]
    return errors[-1][:200] if errors else None


def _newest_write(run_folder: Path) -> float:
    return max((p.stat().st_mtime for p in run_folder.rglob("*") if p.is_file()),
               default=run_folder.stat().st_mtime)


def why_no_results(run: Run, now: float | None = None) -> str:
    """Why a run folder has no results.json: failed before training, crashed, stopped,
    or maybe still running; with the progress it logged and how to resume it."""
    folder = run.path
    error = _last_error_line(folder)
    if run.config is None:
        reason = "failed before training (no config.yaml: rejected config or a crash " \
                 "while building data or model)"
        return f"{reason}: {error}" if error else reason
    epochs = logged_epochs(folder)
    max_epochs = (run.config.get("trainer") or {}).get("max_epochs")
    progress = f"{epochs} of {max_epochs} epochs logged" if epochs is not None else \
        "no csv/metrics.csv"
    if error and "Stopped by SIGTERM" in error:
        return f"stopped by SIGTERM ({progress}): {error}"
    if error:
        return f"crashed ({progress}): {error}"
    age = (now or time.time()) - _newest_write(folder)
    if age < RECENT_S:
        return f"no results.json yet: still running? ({progress}, last write {age / 60:.0f} " \
               f"min ago)"
    last = folder / "checkpoints" / "last.ckpt"
    resume = f"; resume with ckpt_path={last}" if last.is_file() else ""
    return f"no results.json: stopped, crashed or killed ({progress}){resume}"


def load_run(folder: Path) -> Run:
    """Read one run folder (config, Hydra choices and overrides, results)."""
    run = Run(path=folder)
    config_file = folder / "config.yaml"
    if config_file.is_file():
        run.config = _load_yaml(config_file)
    hydra_file = folder / ".hydra" / "hydra.yaml"
    if hydra_file.is_file():
        hydra_cfg = (_load_yaml(hydra_file) or {}).get("hydra", {})
        run.choices = dict(hydra_cfg.get("runtime", {}).get("choices") or {})
        run.overrides = [str(line) for line in hydra_cfg.get("overrides", {}).get("task") or []]
    elif (folder / ".hydra" / "overrides.yaml").is_file():
        run.overrides = [str(line) for line in _load_yaml(folder / ".hydra" / "overrides.yaml")
                         or []]
    results_file = folder / "results.json"
    if not results_file.is_file():
        run.why = why_no_results(run)
        return run
    try:
        results = json.loads(results_file.read_text())
    except json.JSONDecodeError as error:
        run.why = f"results.json is not valid JSON ({error})"
        return run
    if not any(split in results for split in ("test", "val")):
        run.why = "results.json has no val or test metrics (run with test=false?)"
    elif run.config is None:
        run.why = "results.json without config.yaml: the run's settings are unknown"
    else:
        run.results = results
    return run


def discover(paths: list[str | Path]) -> list[Run]:
    """Every run under ``paths``; a clear error when there is none."""
    folders = find_run_folders(paths)
    if not folders:
        shown = ", ".join(str(p) for p in paths)
        raise ReportError(f"no run folders under {shown} (a run folder holds config.yaml, "
                          f".hydra/ or results.json, as `python -m fer_lightning` writes)")
    return [load_run(folder) for folder in folders]


def read_curve(run_folder: Path, metric: str) -> list[tuple[int, float]]:
    """(epoch, value) of ``metric`` (e.g. ``val/acc``) logged during training, one per
    epoch; the validation of the best checkpoint after training is left out."""
    metrics = run_folder / "csv" / "metrics.csv"
    if not metrics.is_file():
        return []
    with metrics.open() as handle:
        rows = list(csv.DictReader(handle))
    trained = _finished_epochs(rows)
    curve: dict[int, float] = {}
    for row in rows:
        value, epoch = row.get(metric), row.get("epoch")
        if value and epoch and int(float(epoch)) < trained:
            curve.setdefault(int(float(epoch)), float(value))
    return sorted(curve.items())
