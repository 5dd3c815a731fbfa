"""StagedFineTuning (VGG16-CBAM, Ghimire et al.): stage boundaries, frozen layers, lr per
stage, resume."""

import logging

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from fer_lightning.finetune import StagedFineTuning
from fer_lightning.losses import CrossEntropy
from fer_lightning.modules.classifier import FERClassifier
from fer_lightning.nets.vgg_cbam import VGGCBAM

LAYERS = [4, "M", 4, 4, "M", 4]  # a 4-conv VGG-style base: quick, same code path as VGG16
HEAD = {"pool": "gap", "hidden": [8], "dropout": 0.0}
LR = 1e-3


def make_module(scheduler=None) -> FERClassifier:
    torch.manual_seed(0)
    net = VGGCBAM(3, 1, 8, HEAD, layers=LAYERS, reduction=2)
    return FERClassifier(net, CrossEntropy(), ["a", "b", "c"],
                         optimizer={"_target_": "torch.optim.Adam", "lr": LR},
                         scheduler=scheduler)


def loader() -> DataLoader:
    samples = [{"image": torch.rand(1, 8, 8), "label": torch.tensor(i % 3)} for i in range(8)]
    return DataLoader(samples, batch_size=4)


class Probe(L.Callback):
    """Records, at each epoch's first batch, what the fine-tuning callback set up."""

    def __init__(self) -> None:
        self.seen: dict[int, dict] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0:
            net = pl_module.net
            self.seen[trainer.current_epoch] = {
                "trainable": [c.weight.requires_grad for c in net.finetune_layers()],
                "lrs": {group["lr"] for group in trainer.optimizers[0].param_groups},
                "head": all(p.requires_grad for p in [*net.cbam.parameters(),
                                                      *net.head.parameters()]),
                "convs": [c.weight.detach().clone() for c in net.finetune_layers()],
            }


def fit(module, max_epochs, tmp_path, callback, ckpt_path=None) -> Probe:
    probe = Probe()
    trainer = L.Trainer(max_epochs=max_epochs, accelerator="cpu", logger=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path,
                        callbacks=[callback, probe,
                                   L.pytorch.callbacks.ModelCheckpoint(tmp_path, save_last=True)])
    trainer.fit(module, train_dataloaders=loader(), ckpt_path=ckpt_path)
    return probe


def test_stage_of_each_epoch():
    callback = StagedFineTuning([2, 1, 1, 1])
    assert [callback.stage_of(e) for e in range(7)] == [0, 0, 1, 2, 3, 3, 3]
    assert callback.total_epochs == 5


@pytest.mark.parametrize("kwargs, key", [({"stage_epochs": []}, "stage_epochs"),
                                         ({"stage_epochs": [1, 0]}, "stage_epochs"),
                                         ({"lr_factor": 0}, "lr_factor")])
def test_bad_settings_name_the_key(kwargs, key):
    with pytest.raises(ValueError, match=f"callbacks.staged_finetune.{key}"):
        StagedFineTuning(**kwargs)


def test_stages_unfreeze_last_convs_and_divide_lr_then_resume_mid_stage(tmp_path, caplog):
    module = make_module()
    initial = [c.weight.detach().clone() for c in module.net.finetune_layers()]
    with caplog.at_level(logging.INFO, logger="fer_lightning.finetune"):
        probe = fit(module, 3, tmp_path, StagedFineTuning([1, 1, 2, 1]))
    seen = probe.seen
    assert [seen[e]["trainable"] for e in range(3)] == [
        [False, False, False, False], [False, False, False, True], [False, False, True, True]]
    assert [seen[e]["lrs"] for e in range(3)] == [{LR}, {LR / 10}, {LR / 100}]
    assert all(seen[e]["head"] for e in range(3))
    # Frozen layers do not move; an unfrozen one does.
    assert all(torch.equal(a, b) for a, b in zip(initial, seen[1]["convs"], strict=True))
    assert torch.equal(initial[2], seen[2]["convs"][2])
    assert not torch.equal(seen[1]["convs"][3], seen[2]["convs"][3])
    assert "stage 1 starts at epoch 1" in caplog.text
    assert "stage 2 starts at epoch 2" in caplog.text

    # Resume from the checkpoint written in stage 2 (epoch 2) into epoch 3, still stage 2.
    callback = StagedFineTuning([1, 1, 2, 1])
    resumed = fit(make_module(), 4, tmp_path / "resumed", callback,
                  ckpt_path=tmp_path / "last.ckpt")
    assert list(resumed.seen) == [3]
    assert resumed.seen[3]["trainable"] == [False, False, True, True]
    assert resumed.seen[3]["lrs"] == {LR / 100}
    assert callback.stage == 2
    state = torch.load(tmp_path / "resumed" / "last.ckpt", weights_only=False)
    assert state["optimizer_states"][0]["param_groups"][0]["lr"] == LR / 100


def test_a_scheduler_is_refused(tmp_path):
    module = make_module(scheduler={"_target_": "torch.optim.lr_scheduler.StepLR",
                                    "step_size": 1})
    with pytest.raises(ValueError, match="scheduler=none"):
        fit(module, 1, tmp_path, StagedFineTuning([1, 1]))


def test_a_net_without_a_base_is_refused(make_cfg):
    from fer_lightning.train import train
    with pytest.raises(ValueError, match="finetune_base"):
        train(make_cfg("callbacks=staged_finetune", "scheduler=none",
                       "trainer.fast_dev_run=true", "logger=none"))
