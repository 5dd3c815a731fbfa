"""`python -m fer_lightning` as users type it, in subprocesses from a temporary cwd."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
SMOKE = ["+experiment=smoke", "data.source.train_size=48", "data.source.val_size=32",
         "data.source.test_size=32", "trainer.max_epochs=1", "callbacks.progress_bar=null"]


def run_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None,
            module: str = "fer_lightning", timeout: int = 300) -> subprocess.CompletedProcess:
    environment = {**os.environ, "WANDB_MODE": "offline", **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=timeout)


def results_files(cwd: Path, task: str = "smoke") -> list[Path]:
    return sorted((cwd / "logs" / task).glob("runs/*/results.json"))


def test_experiment_runs_from_any_working_directory(tmp_path):
    done = run_cli(SMOKE, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    [results] = results_files(tmp_path)
    content = json.loads(results.read_text())
    assert 0.0 <= content["test"]["metrics"]["acc"] <= 1.0
    assert "mean_class_acc" in done.stdout, "the run must end by printing the metrics table"
    assert (results.parent / ".hydra/overrides.yaml").is_file()
    # train.log holds what the console shows, the per-epoch line included; with no
    # terminal (a cluster job's output file) that line is printed too
    log = (results.parent / "train.log").read_text()
    assert "Seed set to 42" in log and "epoch 0 (1/1), step 3: train/loss " in log
    assert "epoch 0 (1/1), step 3: train/loss " in done.stdout
    for noise in ("Tip:", "litlogger", "FLOPs"):
        assert noise not in done.stdout + done.stderr


def test_bad_override_fails_before_training_with_key_and_values(tmp_path):
    done = run_cli(["data.batch_size=-1"], cwd=tmp_path)
    assert done.returncode != 0
    assert "data.batch_size must be a positive integer, got -1" in done.stderr
    assert "Epoch" not in done.stdout + done.stderr
    assert list(tmp_path.rglob("*")) == [tmp_path / "logs"], "a run that never ran left a folder"
    # from <tmp>/logs, logs/../../escaped would be <tmp>/escaped
    done = run_cli(["task_name=../../escaped"], cwd=tmp_path / "logs")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip() == ("Config error: task_name must be a plain folder name "
                                   "(letters, digits, '_', '.', '-'; no '/' or '..'), got "
                                   "'../../escaped'")
    assert sorted(tmp_path.rglob("*")) == [tmp_path / "logs", tmp_path / "logs/logs"]
    done = run_cli(["model=resnet9000"], cwd=tmp_path)
    assert done.returncode != 0 and "mini_xception" in done.stderr


def test_ddp_two_cpu_processes_write_files_once(tmp_path):
    done = run_cli([*SMOKE, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
                    "trainer.sync_batchnorm=false"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    [results] = results_files(tmp_path)
    run = results.parent
    assert (run / "checkpoints/last.ckpt").is_file()
    assert len(list((tmp_path / "logs/smoke/runs").iterdir())) == 1, "rank 1 made its own run dir"
    content = json.loads(results.read_text())
    # 32 test samples split over 2 ranks are gathered back by torchmetrics: all 32 counted.
    assert sum(map(sum, content["test"]["confusion_matrix"])) == 32


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-w", str(out), str(REPO)], check=True, capture_output=True, timeout=300)
    return next(out.glob("fer_lightning-*.whl"))


def test_wheel_ships_the_config_tree(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for config in ("train.yaml", "model/mini_xception.yaml", "experiment/smoke.yaml",
                   "head/fc.yaml", "hydra/default.yaml"):
        assert f"fer_lightning/conf/{config}" in names


def test_installed_wheel_runs_from_a_temporary_cwd(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(site),
                    str(wheel)], check=True, capture_output=True, timeout=300)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    done = run_cli(SMOKE, cwd=cwd, env={"PYTHONPATH": str(site)})
    assert done.returncode == 0, done.stderr[-3000:]
    where = "import fer_lightning; print(fer_lightning.__file__)"
    probe = subprocess.run([sys.executable, "-c", where],
                           cwd=cwd, env={**os.environ, "PYTHONPATH": str(site)},
                           capture_output=True, text=True, check=True)
    assert probe.stdout.startswith(str(site)), "the test must exercise the installed wheel"
    assert results_files(cwd)


def test_multirun_grid_writes_one_run_per_combination(tmp_path):
    done = run_cli(["-m", *SMOKE, "trainer.fast_dev_run=true", "head=gap,fc"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = sorted((tmp_path / "logs/smoke").glob("multiruns/*/*/results.json"))
    heads = sorted(override for job in jobs
                   for override in OmegaConf.load(job.parent / ".hydra/overrides.yaml")
                   if override.startswith("head="))
    assert heads == ["head=fc", "head=gap"]


@pytest.mark.parametrize("module, args", [
    ("fer_lightning.predict", ["input=missing.png", "ckpt_path=missing.ckpt"]),
    ("fer_lightning.export", ["ckpt_path=missing.ckpt"]),
])
def test_inference_commands_compose_their_config(module, args, tmp_path):
    """predict and export resolve ${launch_dir:} (hydra.run.dir) and reach their own
    one-line error about the missing file."""
    result = run_cli(args, tmp_path, module=module, timeout=120)
    assert result.returncode != 0
    assert "UnsupportedInterpolationType" not in result.stderr
    assert "missing" in result.stderr.strip().splitlines()[-1]
