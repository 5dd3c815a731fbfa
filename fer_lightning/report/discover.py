"""Find run folders under the given paths and read what each one holds.

A run folder is any folder with a ``config.yaml``, a ``.hydra/`` folder or a
``results.json`` (what ``python -m fer_lightning`` writes, whether it came from a single
run, a Hydra multirun, a W&B sweep agent or a submitit job). The output folders of
``eval``, ``predict`` and ``export`` look alike; they are recognised (``other_command``)
and only counted. A training run is *complete* when its ``results.json`` holds final
metrics that are finite numbers in [0, 1]; otherwise it gets a reason (``why``) and is
listed as incomplete, never dropped. Every file is read as untrusted data: a damaged or
hand-edited file makes its run incomplete, never the report fail.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fer_lightning.errors import ReportError  # noqa: F401  (re-exported)
from fer_lightning.runlog import CRASH_PREFIX

#: Sub-folders of a run (or of a multirun) that never hold runs.
NOT_RUNS = {"checkpoints", "csv", "tensorboard", "wandb", ".submitit", ".hydra"}
#: Epoch-level training metrics: a row with one of them closes a training epoch.
EPOCH_END = ("train/acc", "train/loss_epoch")
#: A run without results.json written to this recently may still be training.
RECENT_S = 15 * 60
ERROR_LINE = re.compile(r"(Traceback|Error|Exception)\b")
#: Log lines that say how a run ended without a crash line: a SIGTERM stop, Ctrl-C.
STOP_LINE = re.compile(r"Stopped by SIGTERM|Detected KeyboardInterrupt")
TRAIN_LOG = "train.log"
#: The metrics every compared split must hold (fractions in [0, 1]).
METRICS = ("acc", "mean_class_acc", "macro_f1")
SPLITS = ("test", "val")
#: Counts and durations of results.json: a number >= 0 or null.
COUNT_FIELDS = ("num_parameters", "wall_time_s", "epochs", "global_step")
#: Commands whose output folders look like run folders but hold no training run.
OTHER_COMMANDS = ("eval", "predict", "export")
#: results.json keys that only eval writes (beside the training layout).
EVAL_RESULTS_KEYS = frozenset({"split", "tta"})
PREDICT_FILES = ("predictions.csv", "predictions.jsonl")


# ``ReportError`` lives on the ground floor (fer_lightning.errors); imported from here too.


@dataclass
class Run:
    """One run folder: its resolved config, Hydra's record of how it was launched, and
    its results (None with ``why`` set when the run is incomplete, or ``command`` set when
    the folder is the output of eval / predict / export)."""

    path: Path
    config: dict[str, Any] | None = None
    choices: dict[str, Any] | None = None
    overrides: list[str] = field(default_factory=list)
    results: dict[str, Any] | None = None
    why: str | None = None
    command: str | None = None      # eval / predict / export: not a training run

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


# ------------------------------------------------------------------ reading files --

def _kind(value: Any) -> str:
    """What a JSON / YAML value is, in words ("a list", "a string", ...)."""
    if value is None:
        return "null"
    for types, word in ((bool, "a boolean"), (dict, "a mapping"), (list, "a list"),
                        (str, "a string"), (int | float, "a number")):
        if isinstance(value, types):
            return word
    return f"a {type(value).__name__}"


def _mapping(value: Any) -> dict[str, Any]:
    """``value`` when it is a mapping, else an empty one (a config node of another shape)."""
    return value if isinstance(value, dict) else {}


def _read_text(folder: Path, name: str, problems: list[str]) -> str | None:
    path = folder / name
    if not path.is_file():
        return None
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        problems.append(f"{name} cannot be read ({error})")
        return None


def _read_yaml_mapping(folder: Path, name: str, problems: list[str]) -> dict[str, Any] | None:
    """The mapping in ``folder/name`` (None when there is no such file); a file that is not
    valid YAML, or holds something else than a mapping, adds a problem and gives None."""
    text = _read_text(folder, name, problems)
    if text is None:
        return None
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:
        problems.append(_yaml_problem(name, error))
        return None
    if value is None:
        problems.append(f"{name} is empty")
    elif not isinstance(value, dict):
        problems.append(f"{name} holds {_kind(value)}, expected a mapping of settings")
    return value if isinstance(value, dict) else None


def _yaml_problem(name: str, error: yaml.YAMLError) -> str:
    """``<name> is not valid YAML (<problem> at line L, column C)``."""
    mark = getattr(error, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(error, "problem", None) or str(error).replace("\n", " ")
    return f"{name} is not valid YAML ({problem}{where})"


def _read_results(folder: Path, problems: list[str]) -> dict[str, Any] | None:
    """``results.json`` as an object (None when absent); not JSON or not an object adds a
    problem. NaN / Infinity tokens are read, so that the check can name the key."""
    text = _read_text(folder, "results.json", problems)
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        problems.append(f"results.json is not valid JSON ({error})")
        return None
    if not isinstance(value, dict):
        problems.append(f"results.json holds {_kind(value)}, expected an object with val / "
                        f"test metrics")
        return None
    return value


def _hydra_record(hydra_yaml: dict[str, Any] | None, problems: list[str]
                  ) -> tuple[dict[str, Any] | None, list[str] | None]:
    """(the group options chosen, the command-line overrides) of ``.hydra/hydra.yaml``."""
    if hydra_yaml is None:
        return None, None
    hydra_node = hydra_yaml.get("hydra")
    choices = _mapping(hydra_node).get("runtime")
    choices = _mapping(choices).get("choices") or {}
    overrides = _mapping(_mapping(hydra_node).get("overrides")).get("task") or []
    if not isinstance(hydra_node, dict) or not isinstance(choices, dict) \
            or not isinstance(overrides, list):
        problems.append(".hydra/hydra.yaml does not hold Hydra's record (hydra.runtime.choices "
                        "as a mapping, hydra.overrides.task as a list)")
        return None, None
    return dict(choices), [str(line) for line in overrides]


def _overrides_file(folder: Path, problems: list[str]) -> list[str] | None:
    """``.hydra/overrides.yaml`` (a list of overrides) when there is no hydra.yaml."""
    text = _read_text(folder, ".hydra/overrides.yaml", problems)
    if text is None:
        return None
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:
        problems.append(_yaml_problem(".hydra/overrides.yaml", error))
        return None
    if not isinstance(value, list | None):
        problems.append(f".hydra/overrides.yaml holds {_kind(value)}, expected a list")
        return None
    return [str(line) for line in value or []]


# --------------------------------------------------------------- other commands --

def other_command(folder: Path, hydra_yaml: dict[str, Any] | None,
                  results: dict[str, Any] | None) -> str | None:
    """``eval``, ``predict`` or ``export`` when ``folder`` is that command's output folder
    (its Hydra job, the layout of eval's results.json, predict's predictions files, or a
    ``<command>.log`` without a ``train.log``); None for a training run."""
    job = _mapping(_mapping(_mapping(hydra_yaml).get("hydra")).get("job"))
    for key in ("config_name", "name"):
        if job.get(key) in OTHER_COMMANDS:
            return str(job[key])
    if job.get("config_name") is None and results is not None and \
            EVAL_RESULTS_KEYS <= set(results):
        return "eval"
    if any((folder / name).is_file() for name in PREDICT_FILES):
        return "predict"
    if not (folder / TRAIN_LOG).is_file():
        for command in OTHER_COMMANDS:
            if (folder / f"{command}.log").is_file():
                return command
    return None


# ---------------------------------------------------------------- checking results --

def proportion_problem(value: Any, key: str) -> str | None:
    """Why ``value`` (at ``key`` of results.json) is not a metric in [0, 1], or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"results.json {key} is {_kind(value)} ({value!r}), expected a number in [0, 1]"
    if not math.isfinite(value):
        return f"results.json {key} is {value}, expected a finite number in [0, 1]"
    if not 0.0 <= value <= 1.0:
        return f"results.json {key} is {value:g}, outside [0, 1]"
    return None


def _confusion_problem(matrix: Any, key: str) -> str | None:
    if matrix is None or matrix == []:
        return None
    rows = matrix if isinstance(matrix, list) else None
    if not rows or not all(isinstance(row, list) and len(row) == len(rows) for row in rows) or \
            not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                    for row in rows for n in row):
        return f"results.json {key} is not a square matrix of counts (one row per true class)"
    return None


def _stage_problem(stage: Any, split: str) -> str | None:
    """Why the ``val`` / ``test`` entry of results.json cannot be compared, or None."""
    if not isinstance(stage, dict) or not isinstance(stage.get("metrics"), dict):
        return f"results.json {split} holds {_kind(stage)} without a metrics mapping"
    metrics = stage["metrics"]
    for name in METRICS:
        if name not in metrics:
            return f"results.json {split}.metrics has no {name!r} (it has " \
                   f"{', '.join(map(str, metrics)) or 'nothing'})"
        problem = proportion_problem(metrics[name], f"{split}.metrics.{name}")
        if problem:
            return problem
    per_class = stage.get("per_class_acc")
    if per_class is not None and not isinstance(per_class, dict):
        return f"results.json {split}.per_class_acc holds {_kind(per_class)}, expected a " \
               f"mapping of class to accuracy"
    for name, value in (per_class or {}).items():
        problem = proportion_problem(value, f"{split}.per_class_acc.{name}")
        if problem:
            return problem
    return _confusion_problem(stage.get("confusion_matrix"), f"{split}.confusion_matrix")


def results_problem(results: dict[str, Any]) -> str | None:
    """Why a training run's results.json cannot be compared (a missing, non-finite or
    out-of-range metric, a field of the wrong kind), or None when it can."""
    splits = [split for split in SPLITS if split in results]
    if not splits:
        return "results.json has no val or test metrics (run with test=false?)"
    for split in splits:
        problem = _stage_problem(results[split], split)
        if problem:
            return problem
    names = results.get("class_names")
    if names is not None and not (isinstance(names, list)
                                  and all(isinstance(name, str) for name in names)):
        return f"results.json class_names holds {_kind(names)}, expected a list of names"
    for split in splits:
        matrix = results[split].get("confusion_matrix") or []
        if names is not None and matrix and len(matrix) != len(names):
            return f"results.json {split}.confusion_matrix has {len(matrix)} rows for " \
                   f"{len(names)} class_names"
    for key in COUNT_FIELDS:
        value = results.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or not math.isfinite(value) or value < 0):
            return f"results.json {key} is {value!r}, expected a number >= 0 or null"
    return None


# ------------------------------------------------------------ runs without results --

def logged_epochs(run_folder: Path) -> int | None:
    """How many training epochs ``csv/metrics.csv`` shows as finished (None without it)."""
    rows = _metrics_rows(run_folder)
    return None if rows is None else _finished_epochs(rows)


def _metrics_rows(run_folder: Path) -> list[dict[str, str]] | None:
    metrics = run_folder / "csv" / "metrics.csv"
    if not metrics.is_file():
        return None
    try:
        with metrics.open(newline="", errors="replace") as handle:
            return list(csv.DictReader(handle))
    except (OSError, csv.Error):
        return []


def _number(text: str | None) -> float | None:
    """A finite number from a metrics.csv field, else None (empty, text, NaN, inf)."""
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _finished_epochs(rows: list[dict[str, str]]) -> int:
    """How many epochs the rows of a ``metrics.csv`` show as finished."""
    epochs = [int(epoch) for row in rows if (epoch := _number(row.get("epoch"))) is not None
              and any(row.get(key) for key in EPOCH_END)]
    return max(epochs) + 1 if epochs else 0


def _log_lines(run_folder: Path) -> list[str]:
    """The lines of the run's log: ``train.log``, else every top-level ``*.log``."""
    files = [run_folder / TRAIN_LOG] if (run_folder / TRAIN_LOG).is_file() else \
        sorted(run_folder.glob("*.log"))
    lines: list[str] = []
    for path in files:
        try:
            lines += path.read_text(errors="replace").splitlines()
        except OSError:
            continue
    return lines


def last_error(run_folder: Path) -> str | None:
    """What the log says ended the run: the last crash line (``Crashed with <Type>:
    <message>``, written by the training command), SIGTERM stop or Ctrl-C; else the last
    line that reads like an error; None without a log or such a line."""
    lines = _log_lines(run_folder)
    telling = [line.split(CRASH_PREFIX, 1)[1] if CRASH_PREFIX in line else line
               for line in lines if CRASH_PREFIX in line or STOP_LINE.search(line)]
    errors = telling or [line for line in lines if ERROR_LINE.search(line)]
    return errors[-1].strip()[:200] if errors else None


def _newest_write(run_folder: Path) -> float:
    return max((p.stat().st_mtime for p in run_folder.rglob("*") if p.is_file()),
               default=run_folder.stat().st_mtime)


def why_no_results(run: Run, now: float | None = None) -> str:
    """Why a run folder has no results.json: failed before training, crashed, stopped,
    interrupted, or maybe still running; with the progress it logged and how to resume."""
    folder = run.path
    error = last_error(folder)
    if run.config is None:
        reason = "failed before training (no config.yaml: rejected config or a crash " \
                 "while building data or model)"
        return f"{reason}: {error}" if error else reason
    epochs = logged_epochs(folder)
    max_epochs = _mapping(run.config.get("trainer")).get("max_epochs")
    progress = f"{epochs} of {max_epochs} epochs logged" if epochs is not None else \
        "no csv/metrics.csv"
    if error and "Stopped by SIGTERM" in error:
        return f"stopped by SIGTERM ({progress}): {error}"
    if error and "KeyboardInterrupt" in error:
        return f"interrupted by Ctrl-C ({progress}): {error}"
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
    """Read one run folder (config, Hydra choices and overrides, results). A folder of
    another command gets ``command``; a training run that cannot be compared gets ``why``
    (the first problem found); a file that cannot be read never raises."""
    run = Run(path=folder)
    problems: list[str] = []
    run.config = _read_yaml_mapping(folder, "config.yaml", problems)
    hydra_yaml = _read_yaml_mapping(folder, ".hydra/hydra.yaml", problems)
    run.choices, overrides = _hydra_record(hydra_yaml, problems)
    if hydra_yaml is None and overrides is None:
        overrides = _overrides_file(folder, problems)
    run.overrides = overrides or []
    results = _read_results(folder, problems)
    run.command = other_command(folder, hydra_yaml, results)
    if run.command is not None:
        return run
    if problems:
        run.why = "; ".join(problems)
    elif results is None:
        run.why = why_no_results(run)
    elif (problem := results_problem(results)) is not None:
        run.why = problem
    elif run.config is None:
        run.why = "results.json without config.yaml: the run's settings are unknown"
    else:
        run.results = results
    return run


def discover(paths: list[str | Path]) -> tuple[list[Run], dict[str, int]]:
    """Every training run under ``paths`` and how many output folders of each other
    command (eval, predict, export) were found there; a clear error when there is no
    training run."""
    folders = find_run_folders(paths)
    loaded = [load_run(folder) for folder in folders]
    runs = [run for run in loaded if run.command is None]
    others = dict(sorted(Counter(run.command for run in loaded if run.command).items()))
    if not runs:
        shown = ", ".join(str(p) for p in paths)
        if others:
            counted = ", ".join(f"{command} {n}" for command, n in others.items())
            raise ReportError(f"no training runs under {shown}, only output folders of other "
                              f"commands ({counted}); the report compares the runs of "
                              f"`python -m fer_lightning`")
        raise ReportError(f"no run folders under {shown} (a run folder holds config.yaml, "
                          f".hydra/ or results.json, as `python -m fer_lightning` writes)")
    return runs, others


def read_curve(run_folder: Path, metric: str) -> list[tuple[int, float]]:
    """(epoch, value) of ``metric`` (e.g. ``val/acc``) logged during training, one per
    epoch; the validation of the best checkpoint after training is left out, and so are
    values that are not finite numbers (a NaN logged in a diverged epoch)."""
    rows = _metrics_rows(run_folder) or []
    trained = _finished_epochs(rows)
    curve: dict[int, float] = {}
    for row in rows:
        value, epoch = _number(row.get(metric)), _number(row.get("epoch"))
        if value is not None and epoch is not None and int(epoch) < trained:
            curve.setdefault(int(epoch), value)
    return sorted(curve.items())
