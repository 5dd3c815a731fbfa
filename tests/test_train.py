"""train(cfg) end to end on tiny synthetic data, in-process."""

import json
import logging
from itertools import product

import pytest
import torch

from fer_lightning.checkpoint import load_checkpoint
from fer_lightning.train import train
from tests.conftest import SMALL_NET, TINY_WITH_FIGURES

FAST = ("trainer.fast_dev_run=true", "logger=none")


@pytest.mark.parametrize("head, loss, landmarks",
                         list(product(["gap", "fc"], ["ce", "weighted_ce", "focal"],
                                      ["none", "groundtruth"])))
def test_fast_dev_run_every_head_loss_landmarks(make_cfg, head, loss, landmarks):
    results = train(make_cfg("model=mini_xception", f"head={head}", f"loss={loss}",
                              f"landmarks={landmarks}", *SMALL_NET, *FAST))
    assert set(results["test"]["metrics"]) == {"acc", "mean_class_acc", "macro_f1"}
    assert len(results["test"]["confusion_matrix"]) == 7


def test_run_directory_holds_every_artefact(make_cfg, tmp_path, monkeypatch):
    import fer_lightning.callbacks as callbacks

    titles = []
    plot = callbacks.plot_confusion_matrix
    monkeypatch.setattr(callbacks, "plot_confusion_matrix",
                        lambda *args: titles.append(args[-1]) or plot(*args))
    cfg = make_cfg(*TINY_WITH_FIGURES, *SMALL_NET, "trainer.max_epochs=2", tiny=False)
    results = train(cfg)
    run = tmp_path / "run"
    assert (run / "config.yaml").is_file()
    assert (run / "checkpoints/last.ckpt").is_file()
    best = list((run / "checkpoints").glob("best-epoch*.ckpt"))
    assert len(best) == 1 and results["checkpoint"] == str(best[0])
    metrics_csv = (run / "csv/metrics.csv").read_text()
    assert "val/acc" in metrics_csv and "train/loss_epoch" in metrics_csv
    assert (run / "confusion_val.png").is_file() and (run / "confusion_test.png").is_file()
    saved = json.loads((run / "results.json").read_text())
    assert saved["test"]["metrics"] == pytest.approx(results["test"]["metrics"])
    assert saved["class_names"] == ["angry", "disgust", "fear", "happy", "sad", "surprise",
                                    "neutral"]
    assert sum(map(sum, saved["test"]["confusion_matrix"])) == 32
    checkpoint = load_checkpoint(best[0])  # weights_only=True
    assert checkpoint["fer_lightning"]["class_names"] == saved["class_names"]
    # the final plots show the best checkpoint and say which epoch it is
    best_epoch = checkpoint["epoch"]
    assert titles == ["validation, epoch 0", "validation, epoch 1",
                      f"validation, checkpoint of epoch {best_epoch}",
                      f"test, checkpoint of epoch {best_epoch}"]
    assert checkpoint["hyper_parameters"]["class_names"] == saved["class_names"]


def test_resume_from_last_checkpoint_continues_the_epochs(make_cfg, tmp_path):
    logs = tmp_path / "logs"
    first = make_cfg("trainer.max_epochs=1", *SMALL_NET, f"paths.log_dir={logs}",
                     output_dir=logs / "train/runs/first")
    train(first)
    second = make_cfg("trainer.max_epochs=2", "ckpt_path=last", *SMALL_NET,
                      f"paths.log_dir={logs}",
                      output_dir=logs / "train/runs/second")
    train(second)
    lines = (logs / "train/runs/second/csv/metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    trained = {int(float(row.split(",")[header.index("epoch")])) for row in lines[1:]
               if row.split(",")[header.index("train/loss_epoch")]}
    assert trained == {1}, "resumed run must start at epoch 1"
    state = torch.load(logs / "train/runs/second/checkpoints/last.ckpt", weights_only=False)
    assert state["epoch"] == 1


def test_same_seed_gives_same_metrics(make_cfg, tmp_path):
    overrides = ("trainer.max_epochs=1", "logger=none", "landmarks=groundtruth", *SMALL_NET)
    a = train(make_cfg(*overrides, output_dir=tmp_path / "a"))
    b = train(make_cfg(*overrides, output_dir=tmp_path / "b"))
    assert a["test"] == b["test"] and a["val"] == b["val"]
    c = train(make_cfg(*overrides, "seed=7", output_dir=tmp_path / "c"))
    assert c["val"]["confusion_matrix"] != a["val"]["confusion_matrix"]


def test_bf16_mixed_step(make_cfg):
    results = train(make_cfg("trainer.precision=bf16-mixed", "data.batch_size=4", *SMALL_NET,
                             *FAST))
    assert results["test"]["metrics"]["acc"] >= 0


def test_wandb_runs_offline_without_key(make_cfg, tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("HOME", str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="fer_lightning.build"):
        train(make_cfg("logger=wandb", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                       *SMALL_NET))
    offline = [r for r in caplog.records if "logging offline" in r.getMessage()]
    assert len(offline) == 1
    assert list((tmp_path / "run/wandb").glob("offline-run-*")), "no offline W&B run written"


def test_tensorboard_logger_writes_events(make_cfg, tmp_path):
    train(make_cfg("logger=tensorboard", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                   *SMALL_NET))
    assert list((tmp_path / "run/tensorboard").glob("events.out.tfevents.*"))


def test_progress_bar_null_means_no_progress_bar(make_cfg):
    from fer_lightning.train import build_trainer

    cfg = make_cfg()  # TINY sets callbacks.progress_bar=null
    assert build_trainer(cfg.trainer, cfg.callbacks, logger=False).progress_bar_callback is None
    shown = make_cfg(tiny=False)
    assert build_trainer(shown.trainer, shown.callbacks,
                         logger=False).progress_bar_callback is not None
