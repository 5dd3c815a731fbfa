"""Fabricated run folders, as `python -m fer_lightning` writes them, with chosen numbers.

The configs are the package's real composed configs (so every key a real run has is
there), resolved and re-pointed at each fabricated folder; results.json, Hydra's record
and csv/metrics.csv carry the metrics the test asks for.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from lightning import Callback
from omegaconf import OmegaConf

from fer_lightning.config import compose_config

CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
PLACEHOLDER = "/PLACEHOLDER_RUN_DIR"
DEFAULT_CHOICES = {"data": "synthetic", "landmarks": "none", "model": "mini_xception",
                   "head": "gap", "loss": "ce", "optimizer": "adam", "scheduler": "step",
                   "trainer": "cpu", "logger": "csv", "callbacks": "default",
                   "paths": "default", "hydra": "default", "hydra/launcher": "basic"}


@cache
def _composed(overrides: tuple[str, ...]) -> str:
    cfg = compose_config(["trainer=cpu", *overrides], PLACEHOLDER)
    return yaml.safe_dump(OmegaConf.to_container(cfg, resolve=True), sort_keys=False)


def _repoint(node: Any, run_dir: Path) -> Any:
    if isinstance(node, dict):
        return {key: _repoint(value, run_dir) for key, value in node.items()}
    if isinstance(node, list):
        return [_repoint(value, run_dir) for value in node]
    if isinstance(node, str) and PLACEHOLDER in node:
        return node.replace(PLACEHOLDER, str(run_dir))
    return node


def config_for(run_dir: Path, overrides: tuple[str, ...], seed: int) -> dict[str, Any]:
    """The resolved config of ``python -m fer_lightning <overrides> seed=<seed>`` in run_dir."""
    config = yaml.safe_load(_composed(tuple(sorted(overrides))))
    # the data root is where the runs were launched from, the same for all of them
    config = {key: value if key == "data" else _repoint(value, run_dir)
              for key, value in config.items()}
    config["seed"] = seed
    return config


def stage(acc: float, per_class: dict[str, float] | None = None,
          confusion: list[list[int]] | None = None, mean_class: float | None = None
          ) -> dict[str, Any]:
    """A results.json stage: acc, mean-class acc = acc - 0.005 (or ``mean_class``),
    macro-F1 = acc - 0.01, the confusion matrix (rows: true class) or []."""
    classes = {name: acc for name in CLASSES}
    classes.update(per_class or {})
    mean_class = max(acc - 0.005, 0.0) if mean_class is None else mean_class
    return {"metrics": {"acc": acc, "mean_class_acc": mean_class,
                        "macro_f1": max(acc - 0.01, 0.0)},
            "per_class_acc": classes, "confusion_matrix": confusion or []}


def make_run(run_dir: Path, overrides: dict[str, Any], seed: int, *, test: float | None,
             val: float | None = None, per_class: dict[str, float] | None = None,
             hydra: bool = True, results: bool = True, commit: str = "abc123",
             extra_overrides: tuple[str, ...] = (), curve: list[float] | None = None,
             confusion: list[list[int]] | None = None, mean_class: float | None = None
             ) -> Path:
    """A run folder: group options and keys in ``overrides`` (e.g. {"landmarks":
    "groundtruth"}), test / val accuracies, per-class accuracies, the confusion matrix and
    mean-class accuracy of both splits; ``hydra=False`` leaves out .hydra/ (a run launched
    elsewhere), ``results=False`` leaves out results.json."""
    lines = tuple(f"{key}={value}" for key, value in overrides.items()) + extra_overrides
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config_for(run_dir, lines, seed)))
    if hydra:
        choices = {**DEFAULT_CHOICES, **{k: v for k, v in overrides.items() if "." not in k}}
        hydra_yaml = {"hydra": {"runtime": {"choices": choices},
                                "overrides": {"task": [*lines, f"seed={seed}"]}}}
        (run_dir / ".hydra").mkdir()
        (run_dir / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra_yaml))
    curve = curve or [0.3, 0.5]
    (run_dir / "csv").mkdir()
    rows = ["epoch,step,train/acc,val/acc"]
    rows += [f"{epoch},{epoch * 10},0.5,{value}" for epoch, value in enumerate(curve)]
    rows.append(f"{len(curve)},{len(curve) * 10},,{max(curve)}")  # the best checkpoint's val
    (run_dir / "csv" / "metrics.csv").write_text("\n".join(rows) + "\n")
    if results:
        content: dict[str, Any] = {
            "task_name": "train", "output_dir": str(run_dir), "class_names": CLASSES,
            "num_parameters": 201_079, "seed": seed, "epochs": len(curve), "global_step": 10,
            "wall_time_s": 60.0 + seed, "package_version": "0.1.0", "git_commit": commit,
            "git_dirty": False, "started_at": "2026-11-29T10:00:00+00:00",
            "finished_at": f"2026-11-29T10:0{seed % 10}:00+00:00",
            "val": stage(val if val is not None else (test or 0.5) + 0.01, per_class,
                         confusion, mean_class)}
        if test is not None:
            content["test"] = stage(test, per_class, confusion, mean_class)
        (run_dir / "results.json").write_text(json.dumps(content))
    return run_dir


def make_command_folder(folder: Path, command: str, checkpoint: Path) -> Path:
    """The output folder of ``python -m fer_lightning.<command> ckpt_path=<checkpoint>``
    (eval, predict or export) as those commands write it: Hydra's record in .hydra/ (its
    job named after the command), ``<command>.log``, and eval's results.json (the training
    layout plus split, tta, dataset and label mapping) or predict's predictions files."""
    folder.mkdir(parents=True)
    overrides = [f"ckpt_path={checkpoint}"] + (["input=photos"] if command == "predict" else [])
    hydra_yaml = {"hydra": {
        "run": {"dir": str(folder)}, "mode": "RUN",
        "job": {"name": command, "chdir": False, "override_dirname": ",".join(overrides),
                "config_name": command},
        "runtime": {"output_dir": str(folder),
                    "choices": {"paths": "default", "hydra": "default"} if command != "eval"
                    else dict(DEFAULT_CHOICES)},
        "overrides": {"hydra": [], "task": overrides}}}
    (folder / ".hydra").mkdir()
    (folder / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra_yaml))
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(
        {"task_name": command, "ckpt_path": str(checkpoint)}))
    (folder / f"{command}.log").write_text("")
    if command == "eval":
        results = {"task_name": "eval", "output_dir": str(folder), "checkpoint": str(checkpoint),
                   "class_names": CLASSES, "num_parameters": 6199, "split": "test",
                   "tta": "none", "dataset": {"source": "fer_lightning.data.sources.Synthetic",
                                              "root": None, "class_names": CLASSES},
                   "label_mapping": None, "test": stage(0.3)}
        (folder / "results.json").write_text(json.dumps(results, indent=2))
    if command == "predict":
        (folder / "predictions.csv").write_text("file,frame,time,status,label\n")
        (folder / "predictions.jsonl").write_text("")
    return folder


class CrashAfterFirstEpoch(Callback):
    """A training callback that raises at the end of the first epoch (a crash in training,
    after config.yaml and the epoch's metrics are written)."""

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        raise RuntimeError("injected crash after epoch 0")
