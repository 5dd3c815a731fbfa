"""`python -m fer_lightning [overrides]`: train, validate and test the best checkpoint.

The command only: ``train(cfg)`` runs the checks that need nothing imported
(``config.preflight``, the hardware and a missing dataset), then
``fer_lightning.fit.fit_and_test`` checks the rest, builds, fits, tests and writes the
results; ``main`` is the Hydra entry point, its errors mapped by ``fer_lightning.cli``.
torch and Lightning are imported only once a run is going to start, so ``--help``, a
config error or a missing dataset answer within about a second. The builders and result
writers stay importable from here (``from fer_lightning.train import build_module``).
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from fer_lightning.cli import answers_help, run_command
from fer_lightning.config import check_hardware_and_data, preflight
from fer_lightning.launch import apply_thread_budget
from fer_lightning.lazy import exports_of, lazy_exports
from fer_lightning.provenance import utc_now
from fer_lightning.runlog import configure_run_logging, log_crash

log = logging.getLogger(__name__)

#: Names importable from here for earlier callers, imported when first asked for.
__getattr__ = lazy_exports(__name__, {
    **exports_of("fer_lightning.build", "build_callbacks", "build_datamodule",
                 "build_datamodule_or_hint", "build_loggers", "build_loss", "build_module",
                 "build_net", "build_plugins", "build_trainer"),
    **exports_of("fer_lightning.results", "print_results", "run_record",
                 "save_resolved_config", "write_json"),
    **exports_of("fer_lightning.fit", "best_checkpoint", "fit_and_test"),
    **exports_of("fer_lightning.config", "synthetic_hint"),
})


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one experiment; returns the results also written to ``results.json``."""
    started_at, start_time = utc_now(), time.perf_counter()
    preflight(cfg)
    hardware_warnings = check_hardware_and_data(cfg)
    from fer_lightning.fit import fit_and_test  # torch and Lightning from here on

    configure_run_logging(verbose=bool(cfg.get("verbose")))  # Lightning's own loggers, now
    for warning in hardware_warnings:
        log.warning(warning)
    return fit_and_test(cfg, started_at, start_time)


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


@answers_help("train")
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
