"""``make bench`` rows for the data path, each a ratio measured side by side in one run:

- ceiling: the DataModule's training loader + batch transform (no model), samples / s,
  against a bare gather of the same uint8 array through the same transform (batch 512,
  one thread, without and with augmentation);
- epoch: one Lightning training epoch of the default run (mini_xception on the synthetic
  faces) against a bare PyTorch loop of the same net, optimiser and batch transform
  over as many images.

``python -m benchmarks.data_path`` prints the rows alone.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable

import lightning as L
import torch

from fer_lightning.config import compose_config

from .common import best_rate

BATCH = 512
CEILING_SIZE = 8192
EPOCH_SIZE = 2048
#: Timed epochs per side of the epoch row.
REPEATS = 3


def datamodule(overrides: Iterable[str], scratch: str):
    """The DataModule ``python -m fer_lightning <overrides>`` trains on, set up."""
    from hydra.utils import instantiate

    cfg = compose_config(list(overrides), scratch)
    module = instantiate(cfg.data)
    module.setup("fit")
    return cfg, module


def ceiling_row(scratch: str, augment: bool) -> str:
    """Loader + transform vs bare gather + transform of the same uint8 array."""
    overrides = [f"data.source.train_size={CEILING_SIZE}", f"data.batch_size={BATCH}"]
    _, module = datamodule([*overrides, *([] if augment else ["data.augment=null"])], scratch)
    images = module.split_arrays("train").tensors["image"]

    def through_loader() -> int:
        count = 0
        for batch in module.train_dataloader():
            count += len(module.batch_transform(batch, training=True)["image"])
        return count

    def bare_gather() -> int:
        order, count = torch.randperm(len(images)), 0
        for start in range(0, len(images), BATCH):
            batch = {"image": images[order[start:start + BATCH]]}  # uint8, as the loader's
            count += len(module.batch_transform(batch, training=True)["image"])
        return count

    loader_rate, bare_rate = (best_rate(through_loader, repeats=3, warmup=1),
                               best_rate(bare_gather, repeats=3, warmup=1))
    kind = "with augmentation" if augment else "no augmentation"
    return (f"| data path, training loader + transform / bare uint8 gather + transform, "
            f"batch {BATCH}, 1 thread, {kind} | {loader_rate:,.0f} / {bare_rate:,.0f} "
            f"samples / s = {loader_rate / bare_rate:.2f} |")


class _EpochTimer(L.Callback):
    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer, module) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, module) -> None:
        self.seconds.append(time.perf_counter() - self.start)


def epoch_row(scratch: str) -> str:
    """The fastest of REPEATS Lightning epochs of the default run (after one warm-up
    epoch) vs the fastest of REPEATS bare loops over as many images: the fastest, because
    load from other processes on a shared machine only ever adds time."""
    from fer_lightning.build import build_loss, build_module, build_net

    cfg, module = datamodule([f"data.source.train_size={EPOCH_SIZE}"], scratch)
    net = build_net(cfg, len(module.class_names))
    lightning_module = build_module(cfg, net, build_loss(cfg.loss, module.class_counts()),
                                    module.class_names)
    timer = _EpochTimer()
    trainer = L.Trainer(max_epochs=1 + REPEATS, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0,
                        num_sanity_val_steps=0, callbacks=[timer])
    trainer.fit(lightning_module, datamodule=module)
    lightning_s = min(timer.seconds[1:])  # the first epoch warms up

    bare_net = build_net(cfg, len(module.class_names))
    optimizer = torch.optim.Adam(bare_net.parameters(), cfg.optimizer.lr)
    images = module.split_arrays("train").tensors["image"]
    labels = module.split_arrays("train").tensors["label"]
    loss_fn = torch.nn.CrossEntropyLoss()
    batch_size = int(cfg.data.batch_size)

    def bare_epoch() -> float:
        start, order = time.perf_counter(), torch.randperm(len(images))
        bare_net.train()
        for first in range(0, len(images), batch_size):
            rows = order[first:first + batch_size]
            batch = module.batch_transform({"image": images[rows].float().div_(255.0)},
                                           training=True)
            optimizer.zero_grad(set_to_none=True)
            inputs = {key: batch[key] for key in bare_net.input_keys}
            loss_fn(bare_net(**inputs), labels[rows]).backward()
            optimizer.step()
        return time.perf_counter() - start

    bare_epoch()
    bare_s = min(bare_epoch() for _ in range(REPEATS))
    return (f"| default run epoch (mini_xception, {EPOCH_SIZE} synthetic images, batch "
            f"{batch_size}) Lightning / bare PyTorch loop, same net, optimiser and transform "
            f"| {lightning_s:.2f} s / {bare_s:.2f} s = {lightning_s / bare_s:.2f} |")


def rows() -> list[str]:
    """The data-path rows of ``make bench`` (one thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory() as scratch:
            return [ceiling_row(scratch, False), ceiling_row(scratch, True),
                    epoch_row(scratch)]
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    print("\n".join(rows()))
