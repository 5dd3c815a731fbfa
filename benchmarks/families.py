"""VGG16-CBAM (Ghimire et al.) family throughput and the Lightning overhead, as markdown
table rows for make bench.

    python -m benchmarks.families

``rows()``: training images / s (forward + backward + Adam step, every parameter trainable,
batch 32, fp32, CPU) of ``+experiment=vgg_cbam`` and the timm baselines at the paper's input
size, 224x224x3. ``overhead_rows()``: one Lightning training epoch (FERClassifier, its
metrics and logging) over the time of a bare PyTorch loop over the same net and batches,
mini_xception at 48x48.
"""

from __future__ import annotations

import time

import lightning as L
import torch
from torch.utils.data import DataLoader

from fer_lightning.losses import CrossEntropy
from fer_lightning.modules.classifier import FERClassifier

from .common import configured_net, train_step_rate

#: label -> overrides building the nets of the VGG16-CBAM paper's table at its input size.
FAMILIES: dict[str, tuple[str, ...]] = {
    "vgg_cbam (VGG16 + CBAM + GAP)": ("+experiment=vgg_cbam",),
    "timm resnet50 + GAP": ("+experiment=baseline_resnet50_imagenet",),
    "timm inception_v3 + GAP": ("+experiment=baseline_inceptionv3_gap",),
}
CLASSES = 7


def rows(steps: int = 2) -> list[str]:
    """Markdown rows: | what | value | for each VGG16-CBAM-paper family at 224x224x3."""
    lines = []
    for label, overrides in FAMILIES.items():
        rate, params = train_step_rate([*overrides, "data=synthetic"], size=224, channels=3,
                                       repeats=steps, warmup=1)
        lines.append(f"| {label} ({params:,} params) train images / s, 224x224x3, batch 32, "
                     f"fp32, all layers trainable | {rate:.1f} |")
    return lines


def batches(count: int, batch: int, size: int) -> list[dict[str, torch.Tensor]]:
    """``count`` fixed random batches of grey images and labels."""
    generator = torch.Generator().manual_seed(0)
    return [{"image": torch.randn(batch, 1, size, size, generator=generator),
             "label": torch.randint(0, CLASSES, (batch,), generator=generator)}
            for _ in range(count)]


def bare_epoch(net: torch.nn.Module, data: list[dict[str, torch.Tensor]]) -> float:
    """Seconds of a plain PyTorch training loop over ``data``."""
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    loss_fn = CrossEntropy()
    net.train()
    start = time.perf_counter()
    for batch in data:
        optimizer.zero_grad()
        loss_fn(net(batch["image"]), batch["label"]).backward()
        optimizer.step()
    return time.perf_counter() - start


def lightning_epoch(net: torch.nn.Module, data: list[dict[str, torch.Tensor]]) -> float:
    """Seconds of ``Trainer.fit`` for one epoch of FERClassifier over ``data``."""
    module = FERClassifier(net, CrossEntropy(), [str(i) for i in range(CLASSES)],
                           optimizer={"_target_": "torch.optim.Adam", "lr": 1e-3})
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0)
    start = time.perf_counter()
    trainer.fit(module, train_dataloaders=DataLoader(data, batch_size=None))
    return time.perf_counter() - start


def overhead_rows(steps: int = 30, batch: int = 32, size: int = 48) -> list[str]:
    """Markdown row: Lightning epoch time / bare loop time, mini_xception at 48x48."""
    net = configured_net(["model=mini_xception", f"data.image_size={size}"])
    data = batches(steps, batch, size)
    bare_epoch(net, data[:3])  # warm-up
    bare, framework = float("inf"), float("inf")
    for _ in range(2):  # interleaved, so load from other processes hits both alike
        bare = min(bare, bare_epoch(net, data))
        framework = min(framework, lightning_epoch(net, data))
    return [f"| Lightning epoch / bare PyTorch loop, mini_xception 48x48, {steps} batches of "
            f"{batch}, fp32 CPU | {framework / bare:.2f} ({framework:.2f} s / {bare:.2f} s) |"]


def main() -> None:
    """Print both sets of rows."""
    print("| what | value |\n|---|---|")
    print("\n".join(rows() + overhead_rows()))


if __name__ == "__main__":
    main()
