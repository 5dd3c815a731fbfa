"""ms_fpn rows for ``make bench``: training throughput (fp32, CPU) and parameter counts.

``rows()`` returns markdown table rows (``| what | value |``) for benchmarks/run.py:
ms_fpn training images / s at 96 and 224 px (batch 32; resnet18, and resnet50 at 224;
landmarks on: detection loss on pseudo-boxes + the three branches) and its parameter count
next to a plain timm ResNet classifier of the same depth.
"""

from __future__ import annotations

import warnings

import timm
import torch

from benchmarks.common import best_rate
from fer_lightning.losses import FocalLoss
from fer_lightning.nets.ms_fpn import MSFPN

BATCH = 32
CLASSES = 7
HEAD = {"pool": "gap", "hidden": [], "dropout": 0.5}


def face_boxes(size: int) -> torch.Tensor:
    """Five plausible region boxes (face, left eye, right eye, nose, mouth) at ``size`` px."""
    unit = torch.tensor([[0.08, 0.04, 0.92, 0.96], [0.58, 0.32, 0.80, 0.44],
                         [0.20, 0.32, 0.42, 0.44], [0.40, 0.40, 0.60, 0.62],
                         [0.30, 0.66, 0.70, 0.82]])
    return unit * size


def ms_fpn_net(backbone: str, size: int, use_landmarks: bool = True) -> MSFPN:
    """The net of ``model=ms_fpn`` (3 channels, RAF-DB's input) with random weights."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MSFPN(CLASSES, 3, size, HEAD, use_landmarks=use_landmarks, backbone=backbone)


def train_rate(backbone: str, size: int) -> float:
    """Training images / s of one full ms_fpn step (emotion + detection loss, Adam)."""
    net = ms_fpn_net(backbone, size).train()
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    loss_fn = FocalLoss()
    images = torch.randn(BATCH, 3, size, size)
    labels = torch.randint(0, CLASSES, (BATCH,))
    regions = face_boxes(size).expand(BATCH, -1, -1).contiguous()
    valid = torch.ones(BATCH, dtype=torch.bool)

    def step() -> int:
        optimizer.zero_grad()
        out = net.run(images, regions, valid, detection_loss=True, pseudo_boxes=True)
        (loss_fn(out.logits, labels) + sum(out.losses.values())).backward()
        optimizer.step()
        return BATCH

    return best_rate(step, repeats=3, warmup=1)


def parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def rows() -> list[str]:
    """Markdown rows: throughput at 96 / 224 px and parameters vs a plain ResNet."""
    lines = []
    for backbone in ("resnet18", "resnet50"):
        full = parameters(ms_fpn_net(backbone, 224))
        global_only = parameters(ms_fpn_net(backbone, 224, use_landmarks=False))
        plain = parameters(timm.create_model(backbone, in_chans=3, num_classes=CLASSES))
        lines.append(f"| ms_fpn {backbone} parameters: full / landmarks=none / plain timm "
                     f"{backbone} classifier | {full:,} / {global_only:,} / {plain:,} |")
    for backbone, size in (("resnet18", 96), ("resnet18", 224), ("resnet50", 224)):
        lines.append(f"| ms_fpn {backbone} train images / s, {size}x{size}, batch {BATCH}, "
                     f"fp32 | {train_rate(backbone, size):.1f} |")
    return lines


if __name__ == "__main__":
    print("\n".join(rows()))
