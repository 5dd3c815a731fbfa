"""Launching grids: sweep files, launcher presets, Optuna search, W&B run labels."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf
from omegaconf.errors import InterpolationResolutionError

from fer_lightning.report.labels import axis_overrides, run_label, sweep_label
from tests.test_cli import run_cli

REPO = Path(__file__).resolve().parents[1]
SWEEPS = sorted((REPO / "sweeps").glob("*.yaml"))


def compose_with_hydra(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="fer_lightning.conf", version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


@pytest.mark.parametrize("sweep", SWEEPS, ids=lambda path: path.stem)
def test_sweep_files_run_their_grid_over_seeds_as_hydra_overrides(sweep):
    spec = yaml.safe_load(sweep.read_text())
    assert spec["method"] == "grid" and spec["command"][-1] == "${args_no_hyphens}"
    parameters = spec["parameters"]
    assert len(parameters["seed"]["values"]) >= 3
    assert len(parameters) >= 2, "a question needs an axis besides seed"
    fixed = [arg for arg in spec["command"] if "=" in str(arg)]
    assert f"task_name={sweep.stem}" in fixed
    # the first value of every parameter, as the agent would pass them, composes
    first = [f"{key}={choice['values'][-1]}" for key, choice in parameters.items()]
    cfg = compose_with_hydra([*fixed, *first])
    assert cfg.seed == parameters["seed"]["values"][-1]


def test_sweeps_cover_the_three_questions_and_the_grid():
    assert {path.stem for path in SWEEPS} == {"landmarks", "head", "loss", "grid"}
    grid = yaml.safe_load((REPO / "sweeps" / "grid.yaml").read_text())["parameters"]
    assert set(grid) == {"landmarks", "head", "loss", "seed"}


def test_slurm_preset_asks_one_task_per_device_and_requeues():
    cfg = compose_with_hydra(["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4",
                              "hydra.launcher.partition=gpu"])
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert (launcher["tasks_per_node"], launcher["gpus_per_node"], launcher["nodes"]) == (4, 4, 1)
    assert launcher["partition"] == "gpu" and launcher["max_num_timeout"] > 0
    assert launcher["signal_delay_s"] == 120 and launcher["array_parallelism"] == 32
    for key in ("cpus_per_task", "mem_gb", "timeout_min"):
        assert launcher[key] > 0
    cpu = compose_with_hydra(["hydra/launcher=slurm", "trainer=cpu"])
    assert cpu.hydra.launcher.gpus_per_node is None and cpu.hydra.launcher.tasks_per_node == 1


def test_slurm_preset_refuses_all_visible_devices():
    cfg = compose_with_hydra(["hydra/launcher=slurm", "trainer=ddp"])  # devices: -1
    with pytest.raises(InterpolationResolutionError, match="set trainer.devices to the number"):
        OmegaConf.to_container(cfg.hydra.launcher, resolve=True)


def test_local_preset_is_submitits_local_executor():
    cfg = compose_with_hydra(["hydra/launcher=local"])
    assert cfg.hydra.launcher._target_.endswith("LocalLauncher")


def test_optuna_search_space_and_direction():
    cfg = compose_with_hydra(["hparams_search=optuna"])
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper")
    assert sweeper.direction == "maximize" and cfg.optimized_metric == "val/acc"
    assert set(sweeper.params) == {"optimizer.lr", "optimizer.weight_decay", "data.batch_size",
                                   "head.dropout"}
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"


def _hydra_node(tmp_path: Path, task: list[str], sweep_task: list[str] | None):
    sweep_dir = tmp_path / "2026-01-01_00-00-00"
    sweep_dir.mkdir()
    if sweep_task is not None:
        OmegaConf.save({"hydra": {"overrides": {"task": sweep_task}}}, sweep_dir / "multirun.yaml")
    return OmegaConf.create({"mode": "RunMode.MULTIRUN" if sweep_task is not None else None,
                             "sweep": {"dir": str(sweep_dir)},
                             "overrides": {"task": task}, "sweeper": {"params": None}})


def test_multirun_labels_hold_only_the_swept_overrides(tmp_path):
    hydra_cfg = _hydra_node(
        tmp_path, ["trainer.max_epochs=1", "landmarks=groundtruth", "seed=2", "logger=wandb",
                   "loss=focal"],
        ["trainer.max_epochs=1", "landmarks=none,groundtruth", "seed=1,2", "logger=wandb",
         "loss=ce,focal"])
    assert axis_overrides(hydra_cfg) == ["landmarks=groundtruth", "loss=focal"]
    assert sweep_label(hydra_cfg, "grid") == "grid/2026-01-01_00-00-00"


def test_single_run_labels_hold_every_treatment_override(tmp_path):
    hydra_cfg = _hydra_node(tmp_path, ["head=fc", "paths.log_dir=/x", "seed=3",
                                       "data.num_workers=4", "+loss.gamma=1"], None)
    assert axis_overrides(hydra_cfg) == ["head=fc", "loss.gamma=1"]


def test_wandb_run_carries_axes_in_name_group_and_tags(make_cfg, monkeypatch):
    """What the logger hands wandb.init (tests/test_train.py starts a real offline run)."""
    from fer_lightning.train import build_loggers

    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = make_cfg("logger=wandb", "landmarks=groundtruth", "seed=3", "tags=[paper]",
                   tiny=False)
    [logger] = build_loggers(cfg.logger)
    init = logger._wandb_init
    assert init["name"] == "landmarks=groundtruth,seed=3"
    assert init["group"] == "train/landmarks=groundtruth"
    assert list(init["tags"]) == ["paper", "sweep=train", "landmarks=groundtruth"]


def test_run_label_rejects_unknown_field(make_cfg):
    with pytest.raises(ValueError, match="expected name, group or tags"):
        run_label("colour", make_cfg())


def test_slurm_dry_run_prints_jobs_and_resources_and_submits_nothing(tmp_path):
    sweep_dir = tmp_path / "grid"
    done = run_cli(["-m", "hydra/launcher=slurm", "hydra.launcher.dry_run=true",
                    f"hydra.sweep.dir={sweep_dir}", "hydra.launcher.partition=gpu",
                    "trainer=ddp", "trainer.devices=4", "head=gap,fc", "seed=1,2"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0] == (f"dry run: hydra/launcher=slurm would start 4 jobs under {sweep_dir}; "
                        f"nothing is submitted")
    assert lines[1].startswith("each job: partition=gpu nodes=1 tasks_per_node=4 "
                               "gpus_per_node=4 cpus_per_task=8 mem_gb=32 timeout_min=240")
    assert lines[2:] == [f"#0 trainer=ddp trainer.devices=4 head=gap seed=1 -> {sweep_dir}/0",
                         f"#1 trainer=ddp trainer.devices=4 head=gap seed=2 -> {sweep_dir}/1",
                         f"#2 trainer=ddp trainer.devices=4 head=fc seed=1 -> {sweep_dir}/2",
                         f"#3 trainer=ddp trainer.devices=4 head=fc seed=2 -> {sweep_dir}/3"]
    assert not sweep_dir.exists() and not (tmp_path / "logs").exists()


def test_slurm_off_a_cluster_is_one_line(tmp_path):
    done = run_cli(["-m", "hydra/launcher=slurm", "head=gap,fc"], tmp_path,
                   env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"})
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("no SLURM here: `sbatch` is not on PATH")
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
