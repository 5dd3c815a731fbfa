"""ckpt_path= handles of eval, predict and export: file, run folder, multirun job, best, last."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fer_lightning.config import ConfigError
from fer_lightning.handles import next_steps, resolve_checkpoint


def make_run(folder: Path, best: str = "best-epoch008.ckpt", mtime: float = 1e9,
             results: bool = True) -> Path:
    checkpoints = folder / "checkpoints"
    checkpoints.mkdir(parents=True)
    for name in (best, "last.ckpt"):
        (checkpoints / name).write_bytes(b"x")
        os.utime(checkpoints / name, (mtime, mtime))
    if results:
        (folder / "results.json").write_text(json.dumps({"checkpoint": str(checkpoints / best)}))
    return folder


@pytest.fixture
def logs(tmp_path) -> Path:
    make_run(tmp_path / "train/runs/2026-12-01_10-00-00-000000", "best-epoch003.ckpt", 1e9)
    make_run(tmp_path / "grid/multiruns/2026-12-02_10-00-00-000000/0", "best-epoch001.ckpt", 2e9)
    make_run(tmp_path / "grid/multiruns/2026-12-02_10-00-00-000000/1", "best-epoch004.ckpt", 3e9)
    return tmp_path


def test_a_run_folder_means_its_best_checkpoint(logs):
    run = logs / "train/runs/2026-12-01_10-00-00-000000"
    assert resolve_checkpoint(run, logs) == run / "checkpoints/best-epoch003.ckpt"
    job = logs / "grid/multiruns/2026-12-02_10-00-00-000000/0"
    assert resolve_checkpoint(str(job), logs) == job / "checkpoints/best-epoch001.ckpt"


def test_best_and_last_are_the_newest_training_run(logs):
    job = logs / "grid/multiruns/2026-12-02_10-00-00-000000/1"
    assert resolve_checkpoint("best", logs) == job / "checkpoints/best-epoch004.ckpt"
    assert resolve_checkpoint("last", logs) == job / "checkpoints/last.ckpt"


def test_a_file_is_itself_and_its_suffix_is_checked(logs):
    ckpt = logs / "train/runs/2026-12-01_10-00-00-000000/checkpoints/last.ckpt"
    assert resolve_checkpoint(ckpt, logs) == ckpt
    (logs / "model.onnx").write_bytes(b"x")
    assert resolve_checkpoint(logs / "model.onnx", logs, (".ckpt", ".onnx")) == logs / "model.onnx"
    with pytest.raises(ConfigError, match=r"model.onnx: expected a .ckpt file"):
        resolve_checkpoint(logs / "model.onnx", logs)


def test_without_results_json_the_only_best_file_counts(tmp_path):
    run = make_run(tmp_path / "run", results=False)
    assert resolve_checkpoint(run, tmp_path) == run / "checkpoints/best-epoch008.ckpt"
    (run / "checkpoints/best-epoch009.ckpt").write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"several best checkpoints \(best-epoch008.ckpt, "
                                          r"best-epoch009.ckpt\)"):
        resolve_checkpoint(run, tmp_path)


def test_refusals_say_what_to_give_instead(logs, tmp_path):
    sweep = logs / "grid/multiruns/2026-12-02_10-00-00-000000"
    with pytest.raises(ConfigError) as error:
        resolve_checkpoint(sweep, logs)
    assert str(error.value) == (f"ckpt_path={sweep}: {sweep} is a multirun folder of 2 jobs; "
                                f"name one job's folder: ckpt_path={sweep}/0, "
                                f"ckpt_path={sweep}/1")
    with pytest.raises(ConfigError, match=r"ckpt_path=best.ckpt: no such file or folder; give "
                                          r"a checkpoint file, a run folder"):
        resolve_checkpoint("best.ckpt", logs)
    with pytest.raises(ConfigError, match=r"ckpt_path=best: no training run with checkpoints"):
        resolve_checkpoint("best", tmp_path / "empty")
    only_last = tmp_path / "young"
    (only_last / "checkpoints").mkdir(parents=True)
    (only_last / "checkpoints/last.ckpt").write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"has no best checkpoint yet .* its latest state is "
                                          r"ckpt_path=.*young/checkpoints/last.ckpt"):
        resolve_checkpoint(only_last, tmp_path)


def test_training_ends_with_its_checkpoints_and_the_commands_for_them(logs):
    run = logs / "train/runs/2026-12-01_10-00-00-000000"
    best = str(run / "checkpoints/best-epoch003.ckpt")
    assert next_steps(run, best) == [
        f"best checkpoint: {best}",
        f"last checkpoint: {run}/checkpoints/last.ckpt",
        f"evaluate it:     python -m fer_lightning.eval ckpt_path={run}",
        f"predict with it: python -m fer_lightning.predict ckpt_path={run} "
        f"input=<image, folder or video>"]


def test_a_checkpoint_trained_on_synthetic_faces_is_recognised():
    from fer_lightning.handles import synthetic_warning, trained_on_synthetic

    synthetic = {"data": {"source": {"_target_": "fer_lightning.data.sources.SyntheticFaces"}}}
    real = {"data": {"source": {"_target_": "fer_lightning.data.sources.FER2013"}}}
    assert trained_on_synthetic(synthetic) and not trained_on_synthetic(real)
    assert trained_on_synthetic(real, {"data": "synthetic"})
    assert not trained_on_synthetic(None) and not trained_on_synthetic({"data": None})
    assert synthetic_warning("x.ckpt").startswith(
        "x.ckpt was trained on synthetic faces (data=synthetic): a pipeline demo, not an "
        "emotion model for photos; for a real model")


@pytest.mark.parametrize("module", ["fer_lightning.predict", "fer_lightning.export",
                                    "fer_lightning.eval"])
def test_each_command_composes_and_names_a_bad_handle(module, tmp_path):
    from tests.test_cli import run_cli

    # predict and export import no config module: their resolvers (launch_dir, task_dir,
    # quiet_level) must be registered by the command itself
    done = run_cli(["ckpt_path=best.ckpt", f"input={tmp_path}"][:2 if "predict" in module else 1],
                   cwd=tmp_path, module=module)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "ckpt_path=best.ckpt: no such file or folder" in done.stderr
    assert "Traceback" not in done.stderr
