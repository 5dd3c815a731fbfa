"""Real grids, launched as users do (subprocesses from a temporary cwd), then reported:
a 2x2 landmarks x loss multirun over 2 seeds, submitit's local launcher, an Optuna search."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import fer_lightning
from fer_lightning.report.build import build_report

pytestmark = pytest.mark.slow

#: Seconds per run: tiny synthetic splits, one epoch, no progress bar or figures, the
#: smallest mini_xception (the report's plumbing, not the accuracies, is under test).
TINY_RUN = ["data.source.train_size=48", "data.source.val_size=32", "data.source.test_size=32",
            "data.batch_size=16", "trainer=cpu", "trainer.max_epochs=1",
            "callbacks.progress_bar=null", "callbacks.model_summary=null",
            "callbacks.confusion_matrix=null", "model.num_modules=1", "data.image_size=32"]


def run_module(module: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    # One torch thread per process: tiny batches gain nothing from two, and on a busy
    # machine (or with submitit's parallel jobs) two threads per process thrash.
    env = {**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "1",
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def smoke_grid(tmp_path_factory) -> Path:
    """landmarks=none,groundtruth x loss=ce,focal x seed=1,2: 8 runs in one multirun."""
    cwd = tmp_path_factory.mktemp("grid")
    sweep_dir = cwd / "multirun"
    done = run_module("fer_lightning", [
        "-m", f"hydra.sweep.dir={sweep_dir}", "landmarks=none,groundtruth", "loss=ce,focal",
        "seed=1,2", *TINY_RUN], cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    return sweep_dir


def test_results_json_records_how_the_run_went(smoke_grid):
    results = json.loads((smoke_grid / "0" / "results.json").read_text())
    assert results["epochs"] == 1 and results["global_step"] == 3
    assert results["seed"] == 1 and results["wall_time_s"] > 0
    assert results["package_version"] == fer_lightning.__version__
    assert results["git_commit"] is None or len(results["git_commit"]) == 40
    assert results["started_at"] <= results["finished_at"]


def test_report_of_a_real_multirun(smoke_grid):
    report = build_report([smoke_grid])
    assert report["incomplete"] == []
    [block] = report["blocks"]
    assert block["axes"] == ["landmarks", "loss"] and block["n_runs"] == 8
    assert [cell["n"] for cell in block["cells"]] == [2, 2, 2, 2]
    for cell in block["cells"]:
        accs = [json.loads((Path(run) / "results.json").read_text())["test"]["metrics"]["acc"]
                for run in cell["runs"]]
        assert cell["seeds"] == [1, 2]
        assert cell["metrics"]["test/acc"]["mean"] == pytest.approx(np.mean(accs))
        assert cell["curve"]["epochs"] == [0] and cell["curve"]["n"] == [2]
    for axis, b in (("landmarks", "groundtruth"), ("loss", "focal")):
        [effect] = [e for e in block["effects"] if e["axis"] == axis
                    and e["metric"] == "test/acc"]
        assert effect["b"] == b and effect["n_pairs"] == 4 and effect["strata"] == 2
        if effect["ci_low"] is not None:
            assert effect["ci_low"] <= effect["diff_mean"] <= effect["ci_high"]


def test_report_cli_prints_json_and_writes_the_folder(smoke_grid):
    done = run_module("fer_lightning.report", ["--format", "json", str(smoke_grid)],
                      smoke_grid.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["blocks"][0]["axes"] == ["landmarks", "loss"]
    done = run_module("fer_lightning.report", [str(smoke_grid)], smoke_grid.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "landmarks=groundtruth vs none" in done.stdout
    assert (smoke_grid / "report" / "report.md").is_file()
    assert (smoke_grid / "report" / "block1-effects.png").is_file()


def test_submitit_local_launcher_runs_a_grid(tmp_path):
    sweep_dir = tmp_path / "multirun"
    done = run_module("fer_lightning", [
        "-m", "hydra/launcher=local", f"hydra.sweep.dir={sweep_dir}",
        "landmarks=none,groundtruth", "seed=7", *TINY_RUN], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.parent.name for p in sweep_dir.glob("*/results.json")) == ["0", "1"]
    assert list((sweep_dir / ".submitit").glob("*/*_log.out")), "no submitit job folders"
    [block] = build_report([sweep_dir])["blocks"]
    assert block["axes"] == ["landmarks"] and [c["n"] for c in block["cells"]] == [1, 1]
    # the jobs ran in other processes: their result lines are printed here at the end
    assert f"multirun done: 2 of 2 job folders in {sweep_dir}" in done.stdout
    for index, landmarks in enumerate(["none", "groundtruth"]):
        acc = json.loads((sweep_dir / f"{index}/results.json").read_text())["test"]
        assert f"#{index} landmarks={landmarks} seed=7" in done.stdout
        assert f"test acc {acc['metrics']['acc']:.4f}" in done.stdout
    assert f"compare them: python -m fer_lightning.report {sweep_dir}" in done.stdout


def test_optuna_search_three_trials(tmp_path):
    sweep_dir = tmp_path / "optuna"
    done = run_module("fer_lightning", [
        "hparams_search=optuna", "hydra.sweeper.n_trials=3", f"hydra.sweep.dir={sweep_dir}",
        *(arg for arg in TINY_RUN if not arg.startswith("data.batch_size"))], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    trials = sorted(sweep_dir.glob("*/results.json"))
    assert len(trials) == 3
    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    values = [json.loads(t.read_text())["val"]["metrics"]["acc"] for t in trials]
    assert best["best_value"] == pytest.approx(max(values))
    assert set(best["best_params"]) == {"optimizer.lr", "optimizer.weight_decay",
                                        "data.batch_size", "head.dropout"}
    report = build_report([sweep_dir])
    assert sum(block["n_runs"] for block in report["blocks"]) == 3
