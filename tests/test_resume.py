"""Checkpoints a run resumes from: last.ckpt every epoch / N steps / on SIGTERM, atomic
writes, which run ``ckpt_path`` picks, and resuming after a kill mid-epoch."""

from __future__ import annotations

import csv
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf

import fer_lightning.build as build_module
from fer_lightning.config import ConfigError
from fer_lightning.resume import AtomicCheckpointIO, resolve_ckpt_path
from fer_lightning.train import train
from tests.conftest import SMALL_NET

# The training tests use SMALL_NET: what they check (checkpoints, steps, resumed losses)
# does not depend on the network.
# Tiny runs: 2 optimizer steps per epoch, 1 validation batch.
SHORT = ("trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
         "trainer.limit_test_batches=1")
# A monitored value that never improves after epoch 0: best stays best-epoch000.
NEVER_IMPROVES = ("callbacks.model_checkpoint.monitor=epoch",
                  "callbacks.model_checkpoint.mode=min")


def checkpoint_state(path: Path) -> tuple[int, int]:
    """(epoch, global_step) saved in a checkpoint file."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    return state["epoch"], state["global_step"]


def metrics_rows(run: Path) -> list[dict[str, str]]:
    with (run / "csv/metrics.csv").open() as file:
        return list(csv.DictReader(file))


def trained_epochs(run: Path) -> set[int]:
    return {int(float(row["epoch"])) for row in metrics_rows(run) if row.get("train/loss_epoch")}


def test_last_checkpoint_reaches_the_final_epoch_when_the_metric_stops_improving(
        make_cfg, tmp_path, caplog):
    first = tmp_path / "first"
    with caplog.at_level(logging.INFO, logger="fer_lightning.epochs"):
        results = train(make_cfg("trainer.max_epochs=3", *SMALL_NET, *SHORT, *NEVER_IMPROVES,
                                 output_dir=first))
    assert checkpoint_state(first / "checkpoints/last.ckpt") == (2, 6)
    assert Path(results["checkpoint"]).name == "best-epoch000.ckpt"
    # one line per epoch, with the epoch's metrics and its duration
    lines = [r.getMessage() for r in caplog.records if r.name == "fer_lightning.epochs"]
    assert [line.split(",")[0] for line in lines] == ["epoch 0 (1/3)", "epoch 1 (2/3)",
                                                      "epoch 2 (3/3)"]
    assert "train/loss " in lines[-1] and "val/acc " in lines[-1] and lines[-1].endswith(" s")
    # the final evaluation of best-epoch000 is logged at that epoch, not at a fake epoch 3
    rows = metrics_rows(first)
    assert max(int(float(row["epoch"])) for row in rows) == 2
    [test_row] = [row for row in rows if row.get("test/acc")]
    assert (int(float(test_row["epoch"])), int(test_row["step"])) == (0, 2)

    # resuming that run for one more epoch trains epoch 3 only, and best-epoch000 (from
    # before the resume) is still the best checkpoint
    second = tmp_path / "second"
    results = train(make_cfg("trainer.max_epochs=4", *SMALL_NET, *SHORT, *NEVER_IMPROVES,
                             f"ckpt_path={first}", output_dir=second))
    assert trained_epochs(second) == {3}
    assert checkpoint_state(second / "checkpoints/last.ckpt") == (3, 8)
    assert results["checkpoint"] == str(second / "checkpoints/best-epoch000.ckpt")
    assert (first / "checkpoints/best-epoch000.ckpt").is_file(), "the resumed run was modified"


def test_sigterm_mid_epoch_saves_that_step_and_the_run_resumes_in_its_folder(
        make_cfg, tmp_path, monkeypatch):
    """What SLURM does on preemption or at the time limit; a requeued job re-enters its
    run folder, where ckpt_path=auto (the default) continues from checkpoints/last.ckpt."""

    class SigtermAtStep3(L.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 3:
                os.kill(os.getpid(), signal.SIGTERM)

    build = build_module.build_callbacks
    monkeypatch.setattr(build_module, "build_callbacks",
                        lambda cfg: [*build(cfg), SigtermAtStep3()])
    run = tmp_path / "run"
    with pytest.raises(SystemExit):
        train(make_cfg("trainer.max_epochs=1", "trainer.log_every_n_steps=1", "logger=none",
                       *SMALL_NET, output_dir=run))
    assert checkpoint_state(run / "checkpoints/last.ckpt") == (0, 3)  # mid-epoch (4 steps)
    assert not (run / "results.json").exists()

    monkeypatch.setattr(build_module, "build_callbacks", build)
    train(make_cfg("trainer.max_epochs=1", "trainer.log_every_n_steps=1", "test=false",
                   *SMALL_NET, output_dir=run))
    assert checkpoint_state(run / "checkpoints/last.ckpt") == (0, 4)
    assert [int(row["step"]) for row in metrics_rows(run) if row.get("train/loss_step")] == [3], \
        "the resumed run must continue at step 3"


def test_requeue_signal_saves_at_the_batch_end_then_runs_the_requeue_handler(
        make_cfg, tmp_path, monkeypatch):
    """submitit requeues on SIGUSR2 and exits at once; last.ckpt is written first."""
    calls = []

    def submitit_like(signum, frame):
        calls.append(checkpoint_state(tmp_path / "run/checkpoints/last.ckpt"))
        raise SystemExit(-1)

    class Usr2AtStep2(L.Callback):
        def on_train_batch_start(self, trainer, *args):
            if trainer.global_step == 2:
                os.kill(os.getpid(), signal.SIGUSR2)

    build = build_module.build_callbacks
    monkeypatch.setattr(build_module, "build_callbacks", lambda cfg: [*build(cfg), Usr2AtStep2()])
    previous = signal.signal(signal.SIGUSR2, submitit_like)
    try:
        with pytest.raises(SystemExit):
            train(make_cfg("trainer.max_epochs=1", "logger=none", *SMALL_NET))
        assert signal.getsignal(signal.SIGUSR2) is submitit_like, "handler not given back"
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert calls == [(0, 3)], "the batch running when the signal came is finished and saved"


@pytest.mark.slow
def test_killed_mid_epoch_resumes_from_the_last_saved_step(make_cfg, tmp_path):
    """SIGKILL (no chance to save) after a step checkpoint; the resumed run reaches the
    same epoch and step as an uninterrupted one would (1 epoch x 8 steps)."""
    run = tmp_path / "run"
    overrides = ["data.source.train_size=64", "data.source.val_size=16",
                 "data.source.test_size=16", "data.batch_size=8", "trainer=cpu",
                 "trainer.max_epochs=1", "callbacks.last_checkpoint.every_n_train_steps=2",
                 "callbacks.progress_bar=null", "callbacks.model_summary=null", "logger=none",
                 "test=false"]
    process = subprocess.Popen(
        [sys.executable, "-m", "fer_lightning", *overrides, f"hydra.run.dir={run}"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    last = run / "checkpoints/last.ckpt"
    deadline = time.monotonic() + 240
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.kill()
    _, stderr = process.communicate()
    assert last.exists(), stderr[-2000:]
    epoch, step = checkpoint_state(last)
    assert epoch == 0 and step in (2, 4, 6), "killed mid-epoch after a step checkpoint"

    train(make_cfg(*overrides, output_dir=run, tiny=False))  # ckpt_path=auto: its own folder
    assert checkpoint_state(last) == (0, 8)


def test_under_slurm_only_the_launcher_requeues(make_cfg, monkeypatch):
    from lightning.fabric.plugins.environments import SLURMEnvironment

    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_JOB_NAME", "fer")
    plugins = build_module.build_plugins(make_cfg().trainer)
    [slurm] = [plugin for plugin in plugins if isinstance(plugin, SLURMEnvironment)]
    assert not slurm.auto_requeue
    assert any(isinstance(plugin, AtomicCheckpointIO) for plugin in plugins)


def test_atomic_writes_keep_the_previous_checkpoint_when_a_write_dies(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints/last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"epoch": 1}, path)

    def dies_mid_write(obj, file, *args, **kwargs):
        file.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_mid_write)
    with pytest.raises(KeyboardInterrupt):
        AtomicCheckpointIO().save_checkpoint({"epoch": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"epoch": 1}
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]


def fake_run(folder: Path, cfg) -> Path:
    """A finished run folder: its resolved config.yaml and a last.ckpt."""
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints/last.ckpt").write_bytes(b"ckpt")
    (folder / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    return folder


def test_ckpt_path_last_takes_the_newest_run_with_the_same_config(make_cfg, tmp_path):
    logs = tmp_path / "logs"
    jobs = logs / "train/multiruns/2026-01-01"
    gap = fake_run(jobs / "0", make_cfg("head=gap", output_dir=jobs / "0"))
    fc = fake_run(jobs / "1", make_cfg("head=fc", output_dir=jobs / "1"))
    os.utime(gap / "checkpoints/last.ckpt", (1000, 1000))  # fc is the newest
    cfg = make_cfg("head=gap", "ckpt_path=last", "trainer.max_epochs=20",
                   f"paths.log_dir={logs}", output_dir=logs / "train/runs/now")
    assert resolve_ckpt_path(cfg) == str(gap / "checkpoints/last.ckpt")

    other = make_cfg("head=gap", "loss=focal", "ckpt_path=last", f"paths.log_dir={logs}",
                     output_dir=logs / "train/runs/now")
    with pytest.raises(ConfigError) as error:
        resolve_ckpt_path(other)
    message = str(error.value)
    assert f"the newest, {fc}, differs in " in message
    assert "head.name: 'fc' there, 'gap' here" in message
    assert "loss._target_: " in message and "ckpt_path=<run folder>" in message


def test_ckpt_path_names_a_run_folder_and_refuses_another_config(make_cfg, tmp_path):
    run = fake_run(tmp_path / "runs/a", make_cfg("head=fc", output_dir=tmp_path / "runs/a"))
    assert resolve_ckpt_path(make_cfg("head=fc", f"ckpt_path={run}")) \
        == str(run / "checkpoints/last.ckpt")
    with pytest.raises(ConfigError, match=f"ckpt_path={run}: {run} was trained with a "
                                          f"different config .*head.name: 'fc' there, 'gap'"):
        resolve_ckpt_path(make_cfg("head=gap", f"ckpt_path={run}"))
    with pytest.raises(ConfigError, match="no such checkpoint file or run folder"):
        resolve_ckpt_path(make_cfg(f"ckpt_path={tmp_path}/nothing"))


def test_a_run_resumes_only_its_own_folder_implicitly(make_cfg, tmp_path):
    own = tmp_path / "run"
    assert resolve_ckpt_path(make_cfg(output_dir=own)) is None  # fresh folder: from scratch
    fake_run(own, make_cfg(output_dir=own))
    assert resolve_ckpt_path(make_cfg(output_dir=own)) == str(own / "checkpoints/last.ckpt")
    with pytest.raises(ConfigError, match="ckpt_path=null starts from scratch, but this run "
                                          "folder already holds"):
        resolve_ckpt_path(make_cfg("ckpt_path=null", output_dir=own))
    with pytest.raises(ConfigError, match="head.name: 'gap' there, 'fc' here"):
        resolve_ckpt_path(make_cfg("head=fc", output_dir=own))
    with pytest.raises(ConfigError, match="train=false evaluates a trained model"):
        resolve_ckpt_path(make_cfg("train=false", output_dir=tmp_path / "new"))


def test_test_only_runs_need_the_same_network_not_the_same_data(make_cfg, tmp_path):
    run = fake_run(tmp_path / "runs/a", make_cfg("head=fc", output_dir=tmp_path / "runs/a"))
    checkpoint = run / "checkpoints/last.ckpt"
    other_data = make_cfg("head=fc", "train=false", f"ckpt_path={checkpoint}",
                          "loss=focal", "data.source.test_size=48")
    assert resolve_ckpt_path(other_data) == str(checkpoint)  # testing elsewhere is allowed
    with pytest.raises(ConfigError, match=r"trained another network \(.*head.name: 'fc' "
                                          r"there, 'gap' here.*fer_lightning.eval"):
        resolve_ckpt_path(make_cfg("head=gap", "train=false", f"ckpt_path={checkpoint}"))


def losses(run: Path, key: str) -> dict[int, float]:
    """{epoch or step: value} of ``key`` in a run's metrics.csv."""
    by = "step" if key.endswith("_step") else "epoch"
    return {int(float(row[by])): float(row[key]) for row in metrics_rows(run) if row.get(key)}


def test_resume_at_an_epoch_boundary_reproduces_the_uninterrupted_run(make_cfg, tmp_path):
    """2 epochs, then resumed to 4, give the 4-epoch run's per-epoch losses (epoch-seeded
    batches; augmentation and dropout seeded per batch)."""
    whole, first, second = tmp_path / "whole", tmp_path / "first", tmp_path / "second"
    train(make_cfg("trainer.max_epochs=4", "test=false", *SMALL_NET, output_dir=whole))
    train(make_cfg("trainer.max_epochs=2", "test=false", *SMALL_NET, output_dir=first))
    train(make_cfg("trainer.max_epochs=4", "test=false", *SMALL_NET, f"ckpt_path={first}",
                   output_dir=second))
    expected = losses(whole, "train/loss_epoch")
    resumed = {**losses(first, "train/loss_epoch"), **losses(second, "train/loss_epoch")}
    assert sorted(resumed) == [0, 1, 2, 3]
    for epoch in range(4):
        assert resumed[epoch] == pytest.approx(expected[epoch], abs=1e-6), epoch
    for epoch, value in losses(second, "val/loss").items():
        assert value == pytest.approx(losses(whole, "val/loss")[epoch], abs=1e-6)


def test_resume_mid_epoch_continues_with_the_batches_the_epoch_had_left(
        make_cfg, tmp_path, monkeypatch):
    """SIGTERM at step 3 of a 4-step epoch; the resumed run's steps 3..7 have the losses
    of the uninterrupted run's."""

    class SigtermAtStep3(L.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 3:
                os.kill(os.getpid(), signal.SIGTERM)

    overrides = ("trainer.max_epochs=2", "trainer.log_every_n_steps=1", "test=false", *SMALL_NET)
    whole, run = tmp_path / "whole", tmp_path / "run"
    train(make_cfg(*overrides, output_dir=whole))
    build = build_module.build_callbacks
    monkeypatch.setattr(build_module, "build_callbacks",
                        lambda cfg: [*build(cfg), SigtermAtStep3()])
    with pytest.raises(SystemExit):
        train(make_cfg(*overrides, output_dir=run))
    monkeypatch.setattr(build_module, "build_callbacks", build)
    train(make_cfg(*overrides, output_dir=run))
    expected, resumed = losses(whole, "train/loss_step"), losses(run, "train/loss_step")
    assert sorted(resumed)[-5:] == [3, 4, 5, 6, 7]
    for step in range(3, 8):
        assert resumed[step] == pytest.approx(expected[step], abs=1e-6), step
