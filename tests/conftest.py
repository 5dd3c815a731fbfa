"""Shared fixtures: compose the real Hydra config the way `python -m fer_lightning` does."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig

from fer_lightning.config import compose_config
from fer_lightning.launch import available_cpus

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
# The config checks' signature cache (fer_lightning.signatures) of this test session, not
# the user's (subprocesses the tests start inherit it).
os.environ.setdefault("FER_LIGHTNING_CACHE_DIR", tempfile.mkdtemp(prefix="fer-signatures-"))
# Under pytest-xdist (`make test` runs one worker per core) each worker and the processes
# its tests start get their share of the cores: two workers each running torch on every
# core would oversubscribe them. Set before torch is imported here.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _share = max(1, available_cpus() // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ.setdefault("OMP_NUM_THREADS", str(_share))

# Tiny synthetic splits: enough batches for every stage, seconds per run. No confusion-matrix
# PNGs (about 0.5 s of matplotlib per validation epoch); tests of those files compose
# TINY_WITH_FIGURES instead (make_cfg(*TINY_WITH_FIGURES, ..., tiny=False)).
TINY_WITH_FIGURES = (
    "data.source.train_size=64",
    "data.source.val_size=32",
    "data.source.test_size=32",
    "data.batch_size=16",
    "trainer=cpu",
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
)
TINY = (*TINY_WITH_FIGURES, "callbacks.confusion_matrix=null")
# The smallest mini_xception (1 residual module, 32x32 inputs): for tests whose assertions
# are about plumbing (checkpoints, steps, logs, results) rather than the network.
SMALL_NET = ("model.num_modules=1", "data.image_size=32")


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """``make_cfg(*overrides, tiny=True)``: a composed config writing under tmp_path."""

    def _make(*overrides: str, tiny: bool = True, output_dir: Path | None = None) -> DictConfig:
        return compose_config([*(TINY if tiny else ()), *overrides],
                                    output_dir or tmp_path / "run")

    return _make
