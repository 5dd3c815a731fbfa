"""What only a CUDA GPU can show: the batched data path placed on the device, batches that
cross from pinned memory, a training epoch without host syncs, the speed switches and the
augmentation's numbers on the device. Skipped where torch sees no GPU; ``make gpu-check``
runs this file and ``python -m benchmarks.gpu`` on the first machine that has one."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from fer_lightning.config import compose_config
from fer_lightning.data.datamodule import FERDataModule
from fer_lightning.data.sources.synthetic import SyntheticFaces
from fer_lightning.data.transforms import LandmarkAugment
from fer_lightning.losses import CrossEntropy
from fer_lightning.metrics import ConfusionMetrics
from fer_lightning.modules.classifier import FERClassifier
from fer_lightning.nets.factory import build_net
from fer_lightning.train import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU (make gpu-check on a machine with one)")

CUDA = torch.device("cuda")


def faces_module(tmp_path: Path, **kwargs) -> FERDataModule:
    """The synthetic faces through the decode cache, placed as a Trainer on the GPU would."""
    source = SyntheticFaces(train_size=256, val_size=64, test_size=64)
    module = FERDataModule(source, batch_size=32, cache_dir=str(tmp_path / "cache"), seed=0,
                           **kwargs)
    module.placement_device = CUDA
    module.setup("fit")
    return module


def test_a_split_within_its_share_of_free_memory_is_gathered_on_the_gpu(tmp_path):
    module = faces_module(tmp_path)
    batch = next(iter(module.train_dataloader()))
    assert module.placed_split("train").device.type == "cuda"
    assert batch["image"].device.type == "cuda" and batch["image"].dtype == torch.uint8
    floats = module.batch_transform(batch, training=True)["image"]
    assert floats.device.type == "cuda" and floats.dtype == torch.float32
    assert -1.0 <= floats.min() and floats.max() <= 1.0


def test_a_split_kept_off_the_gpu_is_pinned_and_gathers_into_pinned_memory(tmp_path):
    module = faces_module(tmp_path, on_device="false")
    placed = module.placed_split("train")
    assert placed.pinned and placed.device.type == "cpu"
    indices = torch.tensor([5, 0, 17])
    batch = placed.gather(indices)
    assert all(tensor.is_pinned() for tensor in batch.values())
    assert torch.equal(batch["image"], module.arrays["train"].tensors["image"][indices])


class NoHostSync(L.Callback):
    """Makes any synchronising CUDA call raise during the training batches of the second
    epoch (the first warms up cudnn and the allocator)."""

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == 1:
            torch.cuda.set_sync_debug_mode("error")

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        torch.cuda.set_sync_debug_mode("default")


def test_a_training_epoch_on_the_batched_path_never_waits_for_the_gpu(tmp_path):
    """Gather, transfer, augmentation, forward, backward, Adam and the loss log of every
    step are queued without the host waiting for the device: no .item(), no blocking copy.
    Log rows (log_every_n_steps) and epoch ends may sync; neither falls in the window."""
    datamodule = faces_module(tmp_path)
    net = build_net(compose_config(["model.num_modules=2"], tmp_path / "run"), num_classes=7)
    module = FERClassifier(net, CrossEntropy(), datamodule.class_names,
                           optimizer={"_target_": "torch.optim.Adam", "lr": 1e-3})
    trainer = L.Trainer(accelerator="gpu", devices=1, max_epochs=2, limit_val_batches=0,
                        log_every_n_steps=1000, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[NoHostSync()])
    try:
        trainer.fit(module, datamodule=datamodule)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert trainer.current_epoch == 2


@pytest.mark.parametrize("switches", [
    ("trainer.precision=32",),
    ("trainer.precision=bf16-mixed", "trainer.channels_last=true",
     "trainer.fused_optimizer=true", "trainer.benchmark=true"),
])
def test_a_run_trains_and_tests_on_the_gpu_with_the_speed_switches(tmp_path, switches):
    cfg = compose_config(["trainer=gpu", "data.source.train_size=128", "data.source.val_size=64",
                          "data.source.test_size=64", "trainer.max_epochs=1",
                          "callbacks.progress_bar=null", "callbacks.confusion_matrix=null",
                          *switches], tmp_path)
    results = train(cfg)
    assert 0.0 <= results["test"]["metrics"]["acc"] <= 1.0
    assert sum(map(sum, results["test"]["confusion_matrix"])) == 64


def test_the_augmentation_draws_and_warps_on_the_gpu_as_on_the_cpu():
    augment = LandmarkAugment()
    params = augment.draw(16, "cpu", torch.Generator().manual_seed(0))
    image = torch.rand(16, 1, 48, 48, generator=torch.Generator().manual_seed(1))
    points = torch.rand(16, 68, 2, generator=torch.Generator().manual_seed(2)) * 0.6 + 0.2
    on_cpu = augment(image, points, params=params)[:2]
    on_gpu = augment(image.to(CUDA), points.to(CUDA),
                     params={key: value.to(CUDA) for key, value in params.items()})[:2]
    for cpu, gpu in zip(on_cpu, on_gpu, strict=True):
        torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)
    drawn = augment.draw(100_000, CUDA)
    assert drawn["flip"].device.type == "cuda"
    assert abs(drawn["flip"].float().mean().item() - augment.hflip) < 0.01
    assert drawn["angle"].abs().max().item() <= augment.rotate


def test_the_confusion_metrics_on_the_gpu_equal_torchmetrics():
    from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(500, 7, generator=generator)
    target = torch.randint(0, 7, (500,), generator=generator)
    metric = ConfusionMetrics(7).to(CUDA)
    for chunk in range(0, 500, 100):
        metric.update(logits[chunk:chunk + 100].to(CUDA), target[chunk:chunk + 100].to(CUDA))
    values = metric.compute()
    expected = {"acc": MulticlassAccuracy(7, average="micro")(logits, target),
                "mean_class_acc": MulticlassAccuracy(7, average="macro")(logits, target),
                "macro_f1": MulticlassF1Score(7, average="macro")(logits, target)}
    for name, value in expected.items():
        torch.testing.assert_close(values[name].cpu(), value)
