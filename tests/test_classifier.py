"""FERClassifier's training loop: what it costs per step beyond the net."""

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from fer_lightning.losses import CrossEntropy
from fer_lightning.modules.classifier import FERClassifier
from fer_lightning.nets.vgg_cbam import VGGCBAM

HOST_READS = ("item", "tolist", "__float__", "__int__", "__bool__")


def host_reads_during_fit(monkeypatch: pytest.MonkeyPatch, steps: int) -> int:
    """Number of tensor -> Python reads (each a device sync on a GPU) while fitting
    ``steps`` training steps with the progress bar on and no validation."""
    torch.manual_seed(0)
    net = VGGCBAM(3, 1, 8, {"pool": "gap", "hidden": [8], "dropout": 0.0},
                  layers=[4, "M", 4], reduction=2)
    module = FERClassifier(net, CrossEntropy(), ["a", "b", "c"],
                           optimizer={"_target_": "torch.optim.SGD", "lr": 0.01})
    samples = [{"image": torch.rand(1, 8, 8), "label": torch.tensor(i % 3)}
               for i in range(4 * steps)]
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_model_summary=False, log_every_n_steps=1000,
                        limit_val_batches=0, accelerator="cpu")
    calls = {"n": 0}
    for name in HOST_READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            calls["n"] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    trainer.fit(module, DataLoader(samples, batch_size=4))
    monkeypatch.undo()
    return calls["n"]


def test_training_steps_read_nothing_back_from_the_device(monkeypatch):
    """Loss logging and metric updates stay on the device: tripling the number of steps
    adds no tensor reads (epoch-end metrics read a fixed number)."""
    few = host_reads_during_fit(monkeypatch, 3)
    many = host_reads_during_fit(monkeypatch, 9)
    assert many == few
