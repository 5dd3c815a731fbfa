"""Shared fixtures: compose the real Hydra config the way `python -m fer_lightning` does."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

# Tiny synthetic splits: enough batches for every stage, seconds per run.
TINY = (
    "data.source.train_size=64",
    "data.source.val_size=32",
    "data.source.test_size=32",
    "data.batch_size=16",
    "trainer=cpu",
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
)


def compose_train_config(overrides: Sequence[str], output_dir: Path) -> DictConfig:
    """Compose conf/train.yaml with ``overrides``, paths pointed at ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="fer_lightning.conf", version_base="1.3"):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.runtime.cwd = str(output_dir)
        cfg.hydra.job.num = 0
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.root_dir = str(output_dir)
        cfg.paths.output_dir = str(output_dir)
        del cfg.hydra
    return cfg


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """``make_cfg(*overrides, tiny=True)``: a composed config writing under tmp_path."""

    def _make(*overrides: str, tiny: bool = True, output_dir: Path | None = None) -> DictConfig:
        return compose_train_config([*(TINY if tiny else ()), *overrides],
                                    output_dir or tmp_path / "run")

    return _make
