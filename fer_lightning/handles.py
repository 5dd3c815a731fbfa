"""``ckpt_path=`` of eval, predict and export: a file, a run folder, ``best`` or ``last``.

Training names its best checkpoint ``best-epochNNN.ckpt`` (the number changes per run), so
a handle that does not need the number is what a person can type:

- a checkpoint file (``.ckpt``; predict also takes an ``.onnx``): that file;
- a run folder, also one job of a multirun (``logs/train/runs/<time>``,
  ``logs/grid/multiruns/<time>/3``): its best checkpoint (the one its ``results.json``
  names, else its only ``best-*.ckpt``);
- ``best`` / ``last``: the best checkpoint / ``last.ckpt`` of the newest training run
  under ``paths.log_dir`` (the run whose checkpoint was written last).

A multirun folder itself is refused with the jobs it holds: which one is meant is the
user's choice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fer_lightning.errors import ConfigError

#: Where a run keeps its checkpoints, relative to its folder.
CHECKPOINTS = "checkpoints"
LAST = "last.ckpt"
#: Handles that name the newest training run.
NEWEST = ("best", "last")
#: How many job folders a refused multirun folder lists.
SHOWN_JOBS = 4


def is_run_folder(folder: Path) -> bool:
    """A training run's folder (or a multirun job's): it has a ``checkpoints/`` folder."""
    return (folder / CHECKPOINTS).is_dir()


def best_checkpoint(run: Path, handle: str) -> Path:
    """The best checkpoint of a run folder: the one ``results.json`` names, else its only
    ``best-*.ckpt``; a ConfigError saying what the folder holds otherwise."""
    results = run / "results.json"
    if results.is_file():
        try:
            named = json.loads(results.read_text()).get("checkpoint")
        except (OSError, ValueError, AttributeError):
            named = None
        if isinstance(named, str) and Path(named).is_file():
            return Path(named)
    best = sorted((run / CHECKPOINTS).glob("best*.ckpt"))
    if len(best) == 1:
        return best[0]
    if len(best) > 1:
        listed = ", ".join(path.name for path in best)
        raise ConfigError(f"ckpt_path={handle}: {run / CHECKPOINTS} holds several best "
                          f"checkpoints ({listed}) and no results.json names one; give the "
                          f"file, e.g. ckpt_path={best[-1]}")
    last = run / CHECKPOINTS / LAST
    if last.is_file():
        raise ConfigError(f"ckpt_path={handle}: {run} has no best checkpoint yet (no epoch "
                          f"validated, or the run is still in its first epoch); its latest "
                          f"state is ckpt_path={last}")
    raise ConfigError(f"ckpt_path={handle}: {run / CHECKPOINTS} holds no checkpoint")


def newest_run(log_dir: Path, handle: str) -> Path:
    """The training run under ``log_dir`` whose checkpoint was written last."""
    checkpoints = [path for path in log_dir.glob(f"**/{CHECKPOINTS}/*.ckpt") if path.is_file()]
    if not checkpoints:
        raise ConfigError(f"ckpt_path={handle}: no training run with checkpoints under "
                          f"{log_dir}; train one first (python -m fer_lightning) or give a "
                          f"checkpoint file or run folder")
    newest = max(checkpoints, key=lambda path: path.stat().st_mtime)
    return newest.parent.parent


def _refuse_multirun(folder: Path, handle: str) -> None:
    jobs = sorted((path for path in folder.iterdir() if is_run_folder(path)),
                  key=lambda path: (len(path.name), path.name))
    if jobs:
        shown = ", ".join(f"ckpt_path={job}" for job in jobs[:SHOWN_JOBS])
        more = f" (and {len(jobs) - SHOWN_JOBS} more)" if len(jobs) > SHOWN_JOBS else ""
        raise ConfigError(f"ckpt_path={handle}: {folder} is a multirun folder of {len(jobs)} "
                          f"jobs; name one job's folder: {shown}{more}")


def resolve_checkpoint(handle: object, log_dir: str | Path,
                       suffixes: tuple[str, ...] = (".ckpt",)) -> Path:
    """The checkpoint file ``ckpt_path=handle`` means (see the module docstring); a
    ConfigError naming the handle and what to give instead when there is none."""
    text = str(handle)
    if text in NEWEST:
        run = newest_run(Path(log_dir), text)
        return run / CHECKPOINTS / LAST if text == "last" and \
            (run / CHECKPOINTS / LAST).is_file() else best_checkpoint(run, text)
    path = Path(text).expanduser()
    if path.is_file():
        if path.suffix not in suffixes:
            raise ConfigError(f"ckpt_path={text}: expected a {' or '.join(suffixes)} file")
        return path
    if path.is_dir():
        if is_run_folder(path):
            return best_checkpoint(path, text)
        _refuse_multirun(path, text)
        raise ConfigError(f"ckpt_path={text}: not a run folder (it has no {CHECKPOINTS}/ "
                          f"folder); give a checkpoint file, a run folder such as "
                          f"logs/train/runs/<time>, best or last")
    raise ConfigError(f"ckpt_path={text}: no such file or folder; give a checkpoint file, a "
                      f"run folder (logs/train/runs/<time>), best or last (the newest "
                      f"training run under {log_dir})")


def next_steps(output_dir: str | Path, best: str | None) -> list[str]:
    """What training prints last: its checkpoints and the commands that use them."""
    run = Path(output_dir)
    last = run / CHECKPOINTS / LAST
    lines = []
    if best:
        lines.append(f"best checkpoint: {best}")
    if last.is_file():
        lines.append(f"last checkpoint: {last}")
    if best:
        lines += [f"evaluate it:     python -m fer_lightning.eval ckpt_path={run}",
                  f"predict with it: python -m fer_lightning.predict ckpt_path={run} "
                  f"input=<image, folder or video>"]
    return lines


#: How to get a model for real photos, said with the synthetic-checkpoint warning.
REAL_MODEL_HINT = ("for a real model run `make weights` (the published FER2013 mini_XCEPTION, "
                   "which predict then uses without ckpt_path), or train on a real dataset, "
                   "e.g. python -m fer_lightning data=fer2013 data.root=/path/to/fer2013 "
                   "(README \"Real datasets\")")


def trained_on_synthetic(config: Mapping[str, Any] | None,
                         choices: Mapping[str, Any] | None = None) -> bool:
    """Whether a checkpoint's run config (and Hydra choices) say it trained on the
    embedded synthetic faces."""
    if choices and choices.get("data") == "synthetic":
        return True
    data = (config or {}).get("data") or {}
    target = str((data.get("source") or {}).get("_target_", "")) if isinstance(data, Mapping) \
        else ""
    return "synthetic" in target.lower()


def synthetic_warning(checkpoint: str | Path) -> str:
    """The one-line warning predict and eval give for a checkpoint trained on synthetic
    faces."""
    return (f"{checkpoint} was trained on synthetic faces (data=synthetic): a pipeline "
            f"demo, not an emotion model for photos; {REAL_MODEL_HINT}")
