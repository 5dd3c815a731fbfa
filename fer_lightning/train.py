"""`python -m fer_lightning [overrides]`: train, validate and test the best checkpoint.

A thin ``train(cfg)`` wires the config groups into a datamodule, a net, a loss, the
FERClassifier, callbacks, loggers and a Trainer; ``main`` is the Hydra entry point.
"""

from __future__ import annotations

import inspect
import json
import logging
import netrc
import os
import shutil
import signal
import time
import warnings
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class, instantiate
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from fer_lightning.callbacks import LastCheckpoint
from fer_lightning.checkpoint import check_checkpoint_classes, run_config
from fer_lightning.config import (
    ConfigError,
    build_net,
    check_config,
    check_hardware,
    net_class,
    user_error_exit,
)
from fer_lightning.data.datamodule import FERDataModule
from fer_lightning.data.landmarks.config import LandmarksConfig
from fer_lightning.data.sources.base import DatasetError
from fer_lightning.metrics import SCALAR_METRICS
from fer_lightning.modules.classifier import FERClassifier, as_plain_dict
from fer_lightning.provenance import run_record, utc_now
from fer_lightning.resume import (
    LAST_CHECKPOINT,
    AtomicCheckpointIO,
    adopt_best_checkpoints,
    resolve_ckpt_path,
    source_run,
)
from fer_lightning.runlog import configure_run_logging, log_crash
from fer_lightning.speed import SpeedSwitches, apply_speed_switches, trainer_arguments

log = logging.getLogger(__name__)

# Lightning 2.6 calls a torch pytree API that torch 2.14 deprecates, once per loop; the
# warning is about Lightning's internals and says nothing about the run.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
# A resumed run writes into a checkpoint folder that already holds checkpoints, by design
# (fer_lightning.resume refuses to start from scratch in such a folder).
warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")


def build_datamodule(cfg: DictConfig) -> FERDataModule:
    """The DataModule of ``cfg.data``, given the validated landmark settings of
    ``cfg.landmarks`` and told which landmark encoding the net consumes."""
    landmarks = LandmarksConfig.from_mapping(cfg.landmarks)  # fails before data is read
    make = instantiate(cfg.data, _partial_=True)  # objects are passed as they are
    return make(landmarks=landmarks,
                landmark_encoding=net_class(cfg).landmark_encoding)


def build_datamodule_or_hint(cfg: DictConfig) -> FERDataModule:
    """``build_datamodule``; a dataset missing on disk ends the run at once with the
    source's message (path and expected layout) plus the experiment's ``hint_without_data``
    or, by default, the overrides that run the same configuration on synthetic faces."""
    try:
        return build_datamodule(cfg)
    except Exception as error:
        missing = error
        while missing is not None and not isinstance(missing, FileNotFoundError):
            missing = missing.__cause__
        if missing is None:
            raise
        hint = cfg.get("hint_without_data") or synthetic_hint(cfg)
        raise ConfigError(f"{missing}\n{hint}") from None


def synthetic_hint(cfg: DictConfig) -> str:
    """How to run the same configuration on the embedded synthetic faces."""
    overrides = ["data=synthetic"]
    if cfg.landmarks.enabled and cfg.landmarks.name != "groundtruth":
        overrides.append("landmarks=groundtruth")  # exact landmarks, nothing to extract
    return ("Point data.root at your copy (data.root=/path/to/dataset), or run the same "
            f"configuration on the embedded synthetic faces: add {' '.join(overrides)}")


def build_module(cfg: DictConfig, net: torch.nn.Module, loss: torch.nn.Module,
                 class_names: list[str]) -> FERClassifier:
    """The LightningModule named by ``model.module._target_`` (FERClassifier when absent),
    given the rest of ``model.module`` as keyword arguments (e.g. loss weights)."""
    module_cfg = as_plain_dict(cfg.model.get("module")) or {}
    target = module_cfg.pop("_target_", None)
    module_class = get_class(target) if target else FERClassifier
    module = module_class(net, loss, class_names, optimizer=as_plain_dict(cfg.optimizer),
                          scheduler=as_plain_dict(cfg.scheduler), **module_cfg)
    module.run_config, module.run_choices = run_config(cfg)  # saved into its checkpoints
    return module


def build_loss(loss_cfg: DictConfig, class_counts: list[int]) -> torch.nn.Module:
    """The loss of ``cfg.loss``; losses that take ``class_counts`` get the training split's."""
    parameters = inspect.signature(get_class(loss_cfg._target_)).parameters
    extra = {"class_counts": class_counts} if "class_counts" in parameters else {}
    return instantiate(loss_cfg, **extra)


def instantiable_nodes(group: DictConfig | None) -> list[DictConfig]:
    """The entries of a group of named objects (loggers, callbacks) that are switched on;
    an entry set to null (``callbacks.progress_bar=null``) is switched off."""
    return [node for node in (group or {}).values() if node is not None and "_target_" in node]


def wandb_key_available() -> bool:
    """True when W&B can authenticate: WANDB_API_KEY or a ``wandb login`` netrc entry."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def build_loggers(logger_cfg: DictConfig | None) -> list[Any]:
    """Instantiate every logger of ``cfg.logger``; W&B goes offline without an API key."""
    loggers = []
    for conf in instantiable_nodes(logger_cfg):
        if conf._target_.endswith("WandbLogger") and not conf.get("offline", False) \
                and os.environ.get("WANDB_MODE") != "offline" and not wandb_key_available():
            log.warning("No W&B API key found (WANDB_API_KEY or `wandb login`): logging "
                        "offline under %s; upload later with `wandb sync`.", conf.save_dir)
            conf = OmegaConf.merge(conf, {"offline": True})
        loggers.append(instantiate(conf))
    return loggers


def build_callbacks(callbacks_cfg: DictConfig | None) -> list[L.Callback]:
    """Instantiate every callback of ``cfg.callbacks``; ``last.ckpt`` writers go last, so
    the state they save includes this epoch's update of the best-checkpoint record."""
    callbacks = [instantiate(conf) for conf in instantiable_nodes(callbacks_cfg)]
    return sorted(callbacks, key=lambda callback: isinstance(callback, LastCheckpoint))


def build_trainer(trainer_cfg: DictConfig, callbacks_cfg: DictConfig | None,
                  **kwargs: Any) -> L.Trainer:
    """The Trainer of ``cfg.trainer`` with the callbacks of ``cfg.callbacks``; with
    ``callbacks.progress_bar=null`` no progress bar at all (Lightning would add its own)."""
    if callbacks_cfg is not None and "progress_bar" in callbacks_cfg \
            and callbacks_cfg.progress_bar is None:
        kwargs.setdefault("enable_progress_bar", False)
    return instantiate(trainer_arguments(trainer_cfg), callbacks=build_callbacks(callbacks_cfg),
                       **kwargs)


def build_plugins(trainer_cfg: DictConfig) -> list[Any]:
    """``trainer.plugins`` plus atomic checkpoint writes and, under SLURM, Lightning's SLURM
    environment with its own auto-requeue off: the job's launcher (submitit) requeues, and
    the requeued job resumes from its run folder's last.ckpt (``ckpt_path=auto``)."""
    plugins = list(instantiate(trainer_cfg.get("plugins")) or [])
    strategy = str(trainer_cfg.get("strategy", "auto"))
    if not any(word in strategy for word in ("fsdp", "deepspeed")):  # they write their own
        plugins.append(AtomicCheckpointIO())
    if SLURMEnvironment.detect():
        plugins.append(SLURMEnvironment(auto_requeue=False))
    return plugins


@rank_zero_only
def write_json(path: Path, content: dict[str, Any]) -> None:
    """Write ``content`` as indented JSON (rank 0 only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2))


@rank_zero_only
def save_resolved_config(cfg: DictConfig, output_dir: Path) -> None:
    """The config with every interpolation resolved, as it ran (rank 0 only)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))


@rank_zero_only
def print_results(results: dict[str, Any]) -> None:
    """A small table of the final val / test metrics."""
    table = Table(title=f"{results['task_name']}: best checkpoint")
    stages = [stage for stage in ("val", "test") if stage in results]
    table.add_column("metric")
    for stage in stages:
        table.add_column(stage, justify="right")
    for name in SCALAR_METRICS:
        table.add_row(name, *[f"{results[stage]['metrics'][name]:.4f}" for stage in stages])
    Console().print(table)
    Console().print(f"results: {results['output_dir']}/results.json")


def best_checkpoint(trainer: L.Trainer) -> str | None:
    """Path of the best checkpoint so far, or None (fast_dev_run, no best-k callback)."""
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and not isinstance(callback, LastCheckpoint):
            return callback.best_model_path or None
    return None


@rank_zero_only
def prepare_resume(ckpt_path: str | None, output_dir: Path) -> None:
    """When training continues another run's checkpoint, bring that run's best checkpoints
    into this run folder, so the best epoch found before the resume still counts (rank 0
    only, like every other file written into the run folder)."""
    source = source_run(ckpt_path)
    if source is None or source.resolve() == output_dir.resolve():
        return
    adopted = adopt_best_checkpoints(source, output_dir / LAST_CHECKPOINT.parent)
    if adopted:
        log.info("Continuing %s: its best checkpoints %s are linked into this run", source,
                 [path.name for path in adopted])


@rank_zero_only
def report_stop(trainer: L.Trainer, output_dir: Path) -> None:
    """Say where a run stopped by SIGTERM can be resumed from."""
    log.warning("Stopped by SIGTERM in epoch %d at step %d; %s holds that step. Resume with: "
                "python -m fer_lightning <same overrides> ckpt_path=%s",
                trainer.current_epoch, trainer.global_step, output_dir / LAST_CHECKPOINT,
                output_dir)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one experiment; returns the results also written to ``results.json``."""
    started_at, start_time = utc_now(), time.perf_counter()
    check_config(cfg)
    for warning in check_hardware(cfg):
        log.warning(warning)
    ckpt_path = resolve_ckpt_path(cfg)
    L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)

    datamodule = build_datamodule_or_hint(cfg)
    class_names = datamodule.class_names
    if ckpt_path:
        check_checkpoint_classes(ckpt_path, class_names)  # safe load; same classes, same order
    net = build_net(cfg, len(class_names))
    loss = build_loss(cfg.loss, datamodule.class_counts("train"))
    model = apply_speed_switches(build_module(cfg, net, loss, class_names),
                                 SpeedSwitches.from_trainer_config(cfg.trainer))
    loggers = build_loggers(cfg.get("logger"))
    trainer = build_trainer(cfg.trainer, cfg.get("callbacks"), logger=loggers or False,
                            plugins=build_plugins(cfg.trainer))
    save_resolved_config(cfg, output_dir)
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    if cfg.train:
        prepare_resume(ckpt_path, output_dir)
        try:
            trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        except SIGTERMException:
            report_stop(trainer, output_dir)
            raise
        ckpt_path = best_checkpoint(trainer)
    results: dict[str, Any] = {
        "task_name": cfg.task_name, "output_dir": str(output_dir), "checkpoint": ckpt_path,
        "class_names": class_names,
        "num_parameters": sum(p.numel() for p in net.parameters()),
    }
    if cfg.test:
        trainer.validate(model, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False,
                         weights_only=True)
        results["val"] = model.results["val"]
        if "test" in datamodule.available_splits:
            trainer.test(model, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False,
                         weights_only=True)
            results["test"] = model.results["test"]
        else:
            log.warning("No test metrics: %s", datamodule.unavailable_splits["test"])
        results.update(run_record(cfg.seed, trainer, started_at, start_time))
        write_json(output_dir / "results.json", results)
        print_results(results)
    return results


def optimized_value(cfg: DictConfig, results: dict[str, Any]) -> float | None:
    """The value of ``cfg.optimized_metric`` (e.g. ``val/acc``) for hyper-parameter sweepers."""
    stage, _, name = str(cfg.get("optimized_metric") or "").partition("/")
    return results.get(stage, {}).get("metrics", {}).get(name)


def remove_unused_run_dir(output_dir: Path, log_dir: Path) -> None:
    """Delete a run folder that holds only Hydra's bookkeeping and the log (a run that
    failed its config checks), and the folders above it up to ``log_dir`` left empty, so
    ``logs/`` lists only runs that ran."""
    bookkeeping = {".hydra", *(f"{name}.log" for name in ("train", HydraConfig.get().job.name))}
    if not output_dir.is_dir() or {path.name for path in output_dir.iterdir()} - bookkeeping:
        return
    shutil.rmtree(output_dir, ignore_errors=True)
    for parent in output_dir.parents:
        if parent == log_dir or log_dir not in parent.parents or any(parent.iterdir()):
            break
        parent.rmdir()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point of ``python -m fer_lightning``; a config or dataset error ends the
    run with its message alone (no traceback) and exit status 1, SIGTERM with status 143
    after writing last.ckpt."""
    configure_run_logging()
    try:
        return optimized_value(cfg, train(cfg))
    except (ConfigError, DatasetError) as error:
        log_crash(error, traceback=False)
        remove_unused_run_dir(Path(HydraConfig.get().runtime.output_dir).resolve(),
                              Path(cfg.paths.log_dir).resolve())
        raise user_error_exit(error) from None
    except SIGTERMException:
        raise SystemExit(128 + signal.SIGTERM) from None
    except (Exception, KeyboardInterrupt) as error:
        log_crash(error)  # train.log says why the run stopped; Hydra prints the traceback
        raise
