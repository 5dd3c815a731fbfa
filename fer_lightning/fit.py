"""One checked training config run to its end: built through ``fer_lightning.build``
(datamodule, net, loss, module, loggers, callbacks, trainer), fitted, the best checkpoint
validated and tested, the results written through ``fer_lightning.results``.

``fer_lightning.train`` (the command) calls :func:`fit_and_test` after the checks that need
nothing imported, so this module is where torch and Lightning are first imported: a
config error or ``--help`` never waits for them.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from fer_lightning.build import (
    build_datamodule_or_hint,
    build_loggers,
    build_loss,
    build_module,
    build_net,
    build_plugins,
    build_trainer,
)
from fer_lightning.callbacks import LastCheckpoint
from fer_lightning.checkpoint import check_checkpoint_classes
from fer_lightning.config import check_config
from fer_lightning.nets.pretrained import reconcile_classes
from fer_lightning.results import print_results, run_record, save_resolved_config, write_json
from fer_lightning.resume import (
    LAST_CHECKPOINT,
    adopt_best_checkpoints,
    resolve_ckpt_path,
    source_run,
)
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


def fit_and_test(cfg: DictConfig, started_at: str, start_time: float) -> dict[str, Any]:
    """Check ``cfg`` fully (the hardware is the command's check, ``fer_lightning.train``),
    then train, validate and test it; returns the results also
    written to ``results.json``. ``started_at`` (UTC) and ``start_time``
    (``time.perf_counter``) are when the command started, for the run record."""
    check_config(cfg)
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
