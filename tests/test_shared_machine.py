"""Shared machines: jobs started at once share the cores (threads per job), and a long
CPU run says so once, from its first steps, with the ways to a shorter one."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

import fer_lightning.budget as budget
import fer_lightning.launch as launch
import hydra_plugins.fer_lightning_launcher.local_launcher as plugin
from fer_lightning.budget import CPUTimeProjection, format_duration
from fer_lightning.config import ConfigError


@pytest.mark.parametrize("jobs, cpus, setting, expected", [
    (2, 2, "auto", 1), (3, 16, "auto", 5), (20, 8, "auto", 1), (1, 8, "auto", 8), (4, 2, 3, 3),
])
def test_threads_per_job_is_the_jobs_share_of_the_cores(jobs, cpus, setting, expected):
    assert launch.threads_per_job(jobs, cpus, setting) == expected


def test_a_bad_threads_setting_is_named():
    with pytest.raises(ValueError, match="hydra.launcher.threads_per_job must be 'auto' or a "
                                         "positive integer, got 0"):
        launch.threads_per_job(2, 8, 0)


def test_local_launcher_hands_its_jobs_their_share(monkeypatch):
    seen = {}

    def fake_launch(self, job_overrides, initial_job_idx):
        seen["threads"] = os.environ.get(launch.THREADS_ENV)
        return []

    monkeypatch.delenv(launch.THREADS_ENV, raising=False)
    monkeypatch.setattr(plugin.SubmititLocalLauncher, "launch", fake_launch)
    monkeypatch.setattr(plugin, "available_cpus", lambda: 8)
    launcher = plugin.LocalLauncher(submitit_folder="x")
    launcher.launch([["seed=1"], ["seed=2"], ["seed=3"]], 0)
    assert seen["threads"] == "2"  # 8 cores // 3 jobs
    assert launch.THREADS_ENV not in os.environ  # restored for the launching process
    plugin.LocalLauncher(threads_per_job=3, submitit_folder="x").launch([["seed=1"]], 0)
    assert seen["threads"] == "3"


def test_thread_budget_sets_torch_threads(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setenv(launch.THREADS_ENV, "1")
    try:
        assert launch.apply_thread_budget() == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    monkeypatch.setenv(launch.THREADS_ENV, "two")
    with pytest.raises(ConfigError, match="FER_THREADS='two'; expected a positive number"):
        launch.apply_thread_budget()
    monkeypatch.delenv(launch.THREADS_ENV)
    assert launch.apply_thread_budget() is None


def fake_trainer(device: str = "cpu", batches: int = 1000):
    return SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)),
                           estimated_stepping_batches=batches, accumulate_grad_batches=1)


def run_batches(callback, trainer, count: int, seconds_each: float, monkeypatch) -> None:
    now = [0.0]
    monkeypatch.setattr(budget.time, "perf_counter", lambda: now[0])
    for index in range(count):
        now[0] += seconds_each  # each batch takes seconds_each
        callback.on_train_batch_end(trainer, None, None, None, index)


def test_long_cpu_run_logs_its_projection_once(monkeypatch, caplog):
    callback = CPUTimeProjection(warn_hours=0.1, warmup_batches=2, measure_batches=5)
    with caplog.at_level(logging.WARNING, logger="fer_lightning.budget"):
        run_batches(callback, fake_trainer(batches=1000), 50, 1.0, monkeypatch)
    [record] = caplog.records
    assert record.getMessage().startswith(
        "Projected CPU training time: about 17 min (1.00 s per batch over 1000 training "
        "batches to go, timed on 5; validation comes on top). On a machine with a GPU add "
        "trainer=gpu; for a quick run on this CPU shrink the budget")


def test_short_or_gpu_runs_log_nothing(monkeypatch, caplog):
    with caplog.at_level(logging.WARNING, logger="fer_lightning.budget"):
        run_batches(CPUTimeProjection(warn_hours=1.0), fake_trainer(batches=1000), 20, 1.0,
                    monkeypatch)
        run_batches(CPUTimeProjection(warn_hours=0.01), fake_trainer("meta"), 20, 1.0,
                    monkeypatch)
    assert caplog.records == []


def test_durations_read_naturally():
    assert [format_duration(s) for s in (42, 720, 3.4 * 3600, 2.1 * 86400)] == [
        "42 s", "12 min", "3.4 h", "2.1 days"]


@pytest.mark.slow
def test_local_grid_jobs_log_their_thread_share(tmp_path):
    sweep = tmp_path / "multirun"
    env = {**os.environ, "WANDB_MODE": "offline"}
    env.pop(launch.THREADS_ENV, None)
    done = subprocess.run([
        sys.executable, "-m", "fer_lightning", "-m", "hydra/launcher=local",
        "hydra.launcher.threads_per_job=1", f"hydra.sweep.dir={sweep}", "seed=1,2",
        "data.source.train_size=32", "data.source.val_size=16", "data.source.test_size=16",
        "data.batch_size=16", "trainer=cpu", "trainer.max_epochs=1", "logger=none",
        "callbacks.progress_bar=null", "callbacks.model_summary=null",
        "callbacks.confusion_matrix=null", "model.num_modules=1", "data.image_size=32"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    logs = sorted(sweep.glob("*/train.log"))
    assert len(logs) == 2
    assert all("torch compute threads: 1 (FER_THREADS)" in log.read_text() for log in logs)
