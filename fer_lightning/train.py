"""`python -m fer_lightning [overrides]`: train, validate and test the best checkpoint.

The command only: ``train(cfg)`` checks the config, builds the run through
``fer_lightning.build`` (datamodule, net, loss, module, loggers, callbacks, trainer), fits,
tests the best checkpoint and writes the results through ``fer_lightning.results``;
``main`` is the Hydra entry point, its errors mapped by ``fer_lightning.cli``. The
builders stay importable from here (``from fer_lightning.train import build_module``).
"""

from __future__ import annotations

import logging
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from fer_lightning.build import (  # noqa: F401  (build_* also importable from here)
    build_callbacks,
    build_datamodule,
    build_datamodule_or_hint,
    build_loggers,
    build_loss,
    build_module,
    build_net,
    build_plugins,
    build_trainer,
    synthetic_hint,
)
from fer_lightning.callbacks import LastCheckpoint
from fer_lightning.checkpoint import check_checkpoint_classes
from fer_lightning.cli import run_command
from fer_lightning.config import check_config, check_hardware
from fer_lightning.errors import ConfigError
from fer_lightning.launch import apply_thread_budget
from fer_lightning.nets.pretrained import reconcile_classes
from fer_lightning.results import (  # noqa: F401  (also importable from here)
    print_results,
    run_record,
    save_resolved_config,
    utc_now,
    write_json,
)
from fer_lightning.resume import (
    LAST_CHECKPOINT,
    adopt_best_checkpoints,
    resolve_ckpt_path,
    source_run,
)
from fer_lightning.runlog import configure_run_logging, log_crash
from fer_lightning.speed import SpeedSwitches, apply_speed_switches

log = logging.getLogger(__name__)

# Lightning 2.6 calls a torch pytree API that torch 2.14 deprecates, once per loop; the
# warning is about Lightning's internals and says nothing about the run.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
# A resumed run writes into a checkpoint folder that already holds checkpoints, by design
# (fer_lightning.resume refuses to start from scratch in such a folder).
warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")


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


def check_hardware_and_data(cfg: DictConfig) -> list[str]:
    """``check_hardware``; when the hardware is missing and so is the dataset (a paper's GPU
    command on a laptop), one error names both problems and the command that runs here, so
    a fix for the first does not only reveal the second."""
    try:
        return check_hardware(cfg)
    except ConfigError as hardware:
        root = cfg.data.get("root")
        if root is None or Path(str(root)).exists():
            raise
        try:
            build_datamodule_or_hint(cfg)  # the root is missing: fails at once, with its hint
        except ConfigError as data:
            fix = "" if "trainer=cpu" in str(data) else \
                "\nOn synthetic faces and this machine's CPU: add data=synthetic trainer=cpu"
            raise ConfigError(f"2 problems stop this run:\n1. {hardware}\n2. {data}{fix}") \
                from None
        raise


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one experiment; returns the results also written to ``results.json``."""
    started_at, start_time = utc_now(), time.perf_counter()
    check_config(cfg)
    for warning in check_hardware_and_data(cfg):
        log.warning(warning)
    ckpt_path = resolve_ckpt_path(cfg)
    L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)

    datamodule = build_datamodule_or_hint(cfg)
    datamodule.check(fit=bool(cfg.train))  # the summary's problems, before any net is built
    class_names = datamodule.class_names
    if ckpt_path:
        check_checkpoint_classes(ckpt_path, class_names)  # safe load; same classes, same order
    net = build_net(cfg, len(class_names))
    reconcile_classes(net, cfg.model.get("pretrained_path"), class_names)
    loss = build_loss(cfg.loss, datamodule.class_counts("train"))
    model = apply_speed_switches(build_module(cfg, net, loss, class_names),
                                 SpeedSwitches.from_trainer_config(cfg.trainer))
    loggers = build_loggers(cfg.get("logger"), verbose=bool(cfg.get("verbose")))
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


def train_sharing_cores(cfg: DictConfig) -> dict[str, Any]:
    """``train`` with torch's threads set to ``FER_THREADS`` first, where set (this job's
    share of a machine that runs several; fer_lightning.launch)."""
    apply_thread_budget()
    return train(cfg)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point of ``python -m fer_lightning``; a config or dataset error ends the
    run with its message alone (no traceback) and exit status 1, SIGTERM with status 143
    after writing last.ckpt."""
    configure_run_logging(verbose=bool(cfg.get("verbose")))

    def user_error(error: Exception) -> None:
        log_crash(error, traceback=False)
        remove_unused_run_dir(Path(HydraConfig.get().runtime.output_dir).resolve(),
                              Path(cfg.paths.log_dir).resolve())

    try:
        return run_command(lambda: optimized_value(cfg, train_sharing_cores(cfg)),
                           on_user_error=user_error)
    except (Exception, KeyboardInterrupt) as error:
        log_crash(error)  # train.log says why the run stopped; Hydra prints the traceback
        raise
