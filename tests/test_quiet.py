"""Third-party noise is filtered by default, and every filtered line is back with verbose=true."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from fer_lightning.config import compose_config
from fer_lightning.runlog import ConsoleFilter, DropNoise
from tests.conftest import SMALL_NET
from tests.test_cli import run_cli

RUN = ["+experiment=smoke", "data.source.train_size=48", "data.source.val_size=32",
       "data.source.test_size=32", "trainer.max_epochs=1", "trainer.log_every_n_steps=50",
       "callbacks.progress_bar=null", "callbacks.model_summary=null",
       "callbacks.confusion_matrix=null", *SMALL_NET]  # what it prints is not the net's
MESSAGES = {
    "litlogger tip": "Tip:",
    "log_every_n_steps": "is smaller than the logging interval Trainer(log_every_n_steps=50)",
}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[bool, str]:
    """What a small run prints, by default and with verbose=true."""
    printed = {}
    for verbose in (False, True):
        cwd = tmp_path_factory.mktemp(f"verbose-{verbose}")
        done = run_cli([*RUN, f"verbose={str(verbose).lower()}"], cwd=cwd)
        assert done.returncode == 0, done.stderr[-3000:]
        printed[verbose] = done.stdout + done.stderr
    return printed


@pytest.mark.parametrize("name", list(MESSAGES))
def test_third_party_line_is_filtered_and_back_with_verbose(outputs, name):
    assert MESSAGES[name] not in outputs[False]
    assert MESSAGES[name] in outputs[True]


# What wandb.init makes of the logger's init arguments (a real init takes many seconds).
WANDB = """
import sys, wandb
from fer_lightning.config import compose_config
from fer_lightning.train import build_loggers
cfg = compose_config(["logger=wandb", "logger.wandb.offline=true"], sys.argv[2])
[logger] = build_loggers(cfg.logger, verbose=sys.argv[1] == "true")
wandb.Settings(**{k: v for k, v in logger._wandb_init.items() if k == "anonymous"})
"""


@pytest.mark.parametrize("verbose", [False, True])
def test_wandb_anonymous_warning_only_with_verbose(verbose, tmp_path):
    done = subprocess.run([sys.executable, "-c", WANDB, str(verbose).lower(), str(tmp_path)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "WANDB_SILENT": "false"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert ("The anonymous setting has no effect" in done.stdout + done.stderr) is verbose


def test_filter_drops_only_the_noise():
    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("lightning", logging.INFO, __file__, 1, message, None, None)

    tip = record("💡 Tip: For seamless cloud logging ... litlogger")
    interval = record("/site-packages/lightning/x.py:433: PossibleUserWarning: The number of "
                      "training batches (3) is smaller than the logging interval "
                      "Trainer(log_every_n_steps=20). Set a lower value ...")
    real = record("The dataloader does not have many workers which may be a bottleneck.")
    assert [DropNoise().filter(r) for r in (tip, interval, real)] == [False, False, True]
    assert all(DropNoise(verbose=True).filter(r) for r in (tip, interval, real))
    hidden = record("a line the progress bar shows")
    hidden.console = False
    assert not ConsoleFilter(verbose=True).filter(hidden)


ALEMBIC = """
import logging.config, sys
from omegaconf import OmegaConf
from hydra import compose, initialize_config_module
import fer_lightning.config  # the resolvers
with initialize_config_module(config_module="fer_lightning.conf", version_base="1.3"):
    cfg = compose("train", overrides=sys.argv[1:], return_hydra_config=True)
logging.config.dictConfig(OmegaConf.to_container(cfg.hydra.hydra_logging, resolve=True))
from optuna.storages import RDBStorage  # loads alembic, which logs its plugins at INFO
"""


@pytest.mark.parametrize("verbose", [False, True])
def test_alembic_plugin_lines_before_an_optuna_search_only_with_verbose(verbose):
    done = subprocess.run([sys.executable, "-c", ALEMBIC, "hparams_search=optuna",
                           f"verbose={str(verbose).lower()}"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert ("setup plugin alembic" in done.stdout + done.stderr) is verbose


def test_verbose_is_false_by_default(tmp_path):
    assert compose_config([], tmp_path).verbose is False
