"""Which checkpoint a run continues from, and checkpoint files a killed job cannot corrupt.

A run folder (``logs/<task_name>/runs/<time>`` or a multirun job folder) holds the resolved
``config.yaml`` and ``checkpoints/last.ckpt``. ``ckpt_path`` chooses where training starts:

- ``auto`` (default): from this run folder's own ``checkpoints/last.ckpt`` when there is one
  (a requeued cluster job re-enters its folder), else from scratch. Never another run's.
- ``null``: from scratch; refused if this run folder already holds a checkpoint.
- ``last``: the newest ``last.ckpt`` among earlier runs of this ``task_name`` whose config
  matches this one (:data:`RESUME_IGNORED` may differ, e.g. ``trainer.max_epochs`` to extend).
- a run folder: that folder's ``checkpoints/last.ckpt``, if its config matches.
- a checkpoint file: that file (checked against its run folder's config when it has one).
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf

from fer_lightning.errors import ConfigError
from fer_lightning.keys import NET_KEYS, RESUME_IGNORED

log = logging.getLogger(__name__)

#: Where every run keeps the checkpoint it resumes from, relative to its run folder.
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"

#: How many differing keys a refusal lists.
SHOWN_DIFFERENCES = 8


def run_config(run_dir: Path) -> dict[str, Any] | None:
    """The resolved ``config.yaml`` a run folder was started with, as plain data."""
    path = run_dir / "config.yaml"
    return OmegaConf.to_container(OmegaConf.load(path)) if path.is_file() else None


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: node}


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys to values, without the ignored keys and with the run's own folders
    replaced by placeholders (a checkpoint ``dirpath`` differs in every run folder)."""
    paths = config.get("paths") or {}
    folders = [(str(paths[key]), f"<{key}>") for key in ("output_dir", "root_dir")
               if paths.get(key)]

    def normalise(value: Any) -> Any:
        if isinstance(value, str):
            for folder, placeholder in folders:
                value = value.replace(folder, placeholder)
        return value

    return {key: normalise(value) for key, value in _flatten(config).items()
            if not any(key == ignored or key.startswith(f"{ignored}.")
                       for ignored in RESUME_IGNORED)}


def config_differences(theirs: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    """``key: 'value there' -> 'value here'`` for every key that matters and differs."""
    old, new = _comparable(theirs), _comparable(ours)
    missing = "<absent>"
    return [f"{key}: {old.get(key, missing)!r} there, {new.get(key, missing)!r} here"
            for key in sorted(old.keys() | new.keys())
            if old.get(key, missing) != new.get(key, missing)]


def _describe_differences(differences: list[str]) -> str:
    shown = "; ".join(differences[:SHOWN_DIFFERENCES])
    more = len(differences) - SHOWN_DIFFERENCES
    return shown + (f"; and {more} more" if more > 0 else "")


def check_same_run(cfg: DictConfig, run_dir: Path, requested: str) -> None:
    """Raise ConfigError unless ``run_dir`` was started with this run's config (up to
    :data:`RESUME_IGNORED`); a checkpoint of another model would fail deep inside Lightning
    with a raw state_dict error, and one of other data or optimiser settings would quietly
    train a different experiment. A test-only run (``train=false``) needs only the same
    network (:data:`NET_KEYS`)."""
    theirs = run_config(run_dir)
    if theirs is None:
        raise ConfigError(f"ckpt_path={requested}: {run_dir} has no config.yaml, so it cannot "
                          f"be checked against this run; give the checkpoint file instead")
    differences = config_differences(theirs, OmegaConf.to_container(cfg, resolve=True))
    if not cfg.train:
        differences = [line for line in differences
                       if any(line == key or line.startswith((f"{key}.", f"{key}:"))
                              for key in NET_KEYS)]
        if differences:
            raise ConfigError(f"ckpt_path={requested}: {run_dir} trained another network "
                              f"({_describe_differences(differences)}). Testing needs the same "
                              f"model, head and input; python -m fer_lightning.eval "
                              f"ckpt_path=... takes them from the checkpoint itself")
        return
    if differences:
        raise ConfigError(f"ckpt_path={requested}: {run_dir} was trained with a different "
                          f"config ({_describe_differences(differences)}). Resuming continues "
                          f"the same config; only paths, epochs/steps, hardware and logging "
                          f"may change")


def candidate_runs(log_dir: str | Path, task_name: str) -> list[Path]:
    """Run folders of ``task_name`` that hold a ``last.ckpt``, newest checkpoint first."""
    task_dir = Path(log_dir) / task_name
    checkpoints = sorted(task_dir.glob(f"**/{LAST_CHECKPOINT}"),
                         key=lambda path: path.stat().st_mtime, reverse=True)
    return [checkpoint.parent.parent for checkpoint in checkpoints]


def find_matching_run(cfg: DictConfig) -> Path:
    """The newest earlier run of this task whose config matches (``ckpt_path=last``)."""
    task_dir = Path(cfg.paths.log_dir) / cfg.task_name
    runs = [run for run in candidate_runs(cfg.paths.log_dir, cfg.task_name)
            if run.resolve() != Path(cfg.paths.output_dir).resolve()]
    if not runs:
        raise ConfigError(f"ckpt_path=last: no {LAST_CHECKPOINT} under {task_dir} "
                          f"(runs of task_name={cfg.task_name!r})")
    ours = OmegaConf.to_container(cfg, resolve=True)
    for run in runs:
        theirs = run_config(run)
        if theirs is not None and not config_differences(theirs, ours):
            return run
    newest = runs[0]
    theirs = run_config(newest)
    why = ("has no config.yaml" if theirs is None else
           f"differs in {_describe_differences(config_differences(theirs, ours))}")
    raise ConfigError(f"ckpt_path=last: none of the {len(runs)} earlier run(s) of "
                      f"task_name={cfg.task_name!r} under {task_dir} has this config; the "
                      f"newest, {newest}, {why}. Use the same overrides as that run, or name "
                      f"a run folder: ckpt_path=<run folder>")


def resolve_ckpt_path(cfg: DictConfig) -> str | None:
    """The checkpoint this run starts from (see the module docstring), or None for a fresh
    start; every refusal is a ConfigError naming the folder and what differs."""
    requested = cfg.get("ckpt_path")
    own = Path(cfg.paths.output_dir) / LAST_CHECKPOINT
    if cfg.train and own.is_file():
        if requested is None:
            raise ConfigError(f"ckpt_path=null starts from scratch, but this run folder "
                              f"already holds {own}: resume it with ckpt_path=auto or choose "
                              f"another run folder")
        check_same_run(cfg, own.parent.parent, "auto")
        log.info("Resuming this run from its own %s", own)
        return str(own)
    if requested in (None, "auto"):
        if not cfg.train:
            raise ConfigError("train=false evaluates a trained model: set ckpt_path=<checkpoint "
                              "file>, ckpt_path=<run folder> or ckpt_path=last")
        return None
    if requested == "last":
        run = find_matching_run(cfg)
        log.info("ckpt_path=last: resuming %s", run / LAST_CHECKPOINT)
        return str(run / LAST_CHECKPOINT)
    path = Path(str(requested))
    if path.is_dir():
        if not (path / LAST_CHECKPOINT).is_file():
            raise ConfigError(f"ckpt_path={requested}: no {LAST_CHECKPOINT} in that folder")
        check_same_run(cfg, path, str(requested))
        return str(path / LAST_CHECKPOINT)
    if not path.is_file():
        raise ConfigError(f"ckpt_path={requested!r}: no such checkpoint file or run folder")
    run = source_run(str(path))
    if run is not None and (run / "config.yaml").is_file():
        check_same_run(cfg, run, str(requested))
    return str(path)


def source_run(ckpt_path: str | None) -> Path | None:
    """The run folder a checkpoint path lies in (``<run>/checkpoints/x.ckpt``), if any."""
    if ckpt_path is None:
        return None
    path = Path(ckpt_path)
    return path.parent.parent if path.parent.name == LAST_CHECKPOINT.parent.name else None


def adopt_best_checkpoints(source: Path, checkpoint_dir: Path) -> list[Path]:
    """Hard-link (or copy) a resumed run's ``best-*`` checkpoints into this run's folder, so
    the best epoch found before the resume still counts and the other run's files are never
    deleted when a better one replaces them here."""
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    adopted = []
    for best in sorted((source / LAST_CHECKPOINT.parent).glob("*.ckpt")):
        if best.name == LAST_CHECKPOINT.name or (checkpoint_dir / best.name).exists():
            continue
        try:
            os.link(best, checkpoint_dir / best.name)
        except OSError:  # another filesystem
            shutil.copy2(best, checkpoint_dir / best.name)
        adopted.append(checkpoint_dir / best.name)
    return adopted


#: errno values of a write that failed for want of space (a full disk, a spent quota).
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def _disk_full(error: BaseException) -> OSError | None:
    """The one error to raise for a checkpoint write that ran out of space (torch.save
    wraps the OSError in RuntimeErrors, three chained tracebacks naming no file), or None
    when ``error`` is something else."""
    link: BaseException | None = error
    while link is not None:
        if isinstance(link, OSError) and link.errno in _NO_SPACE or \
                "No space left on device" in str(link):
            return link
        link = link.__cause__ or link.__context__
    return None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file beside it, flushes it to disk and renames
    it over the old one (``os.replace``), so a job killed mid-write leaves the previous
    checkpoint whole. Lightning's own writer stages the file in the system temp folder and
    moves it, which degrades to a plain copy when that folder is on another filesystem, as
    it usually is on cluster nodes. Remote paths (``s3://...``) go to Lightning's writer."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path,
                        storage_options: Any | None = None) -> None:
        if storage_options is not None or not _is_local_file_protocol(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
        try:
            with partial.open("wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(partial, path)
        except (OSError, RuntimeError) as error:
            disk_full = _disk_full(error)
            if disk_full is None:
                raise
            raise OSError(errno.ENOSPC, f"no space left on the device of {path.parent} while "
                          f"writing checkpoint {path.name} ({disk_full}); the previous "
                          f"{path.name}, if any, is kept whole. Free space there or point "
                          f"paths.log_dir at another disk") from None
        finally:
            partial.unlink(missing_ok=True)
