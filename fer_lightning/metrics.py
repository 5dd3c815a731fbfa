"""Classification metrics (torchmetrics) and the confusion-matrix figure.

``acc`` is overall accuracy; ``mean_class_acc`` is the mean of per-class recall, the
RAF-DB convention (MS-FPN, Zhang et al., reports both); ``macro_f1``; ``per_class_acc``;
``confusion``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
)

SCALAR_METRICS = ("acc", "mean_class_acc", "macro_f1")


def classification_metrics(num_classes: int) -> MetricCollection:
    """A fresh collection of every metric a stage reports."""
    return MetricCollection({
        "acc": MulticlassAccuracy(num_classes, average="micro"),
        "mean_class_acc": MulticlassAccuracy(num_classes, average="macro"),
        "macro_f1": MulticlassF1Score(num_classes, average="macro"),
        "per_class_acc": MulticlassAccuracy(num_classes, average=None),
        "confusion": MulticlassConfusionMatrix(num_classes),
    })


def split_results(computed: dict[str, torch.Tensor], class_names: Sequence[str]
                  ) -> tuple[dict[str, float], dict[str, float], list[list[int]]]:
    """(scalar metrics, per-class accuracy by class name, confusion matrix rows=true)."""
    scalars = {name: float(computed[name]) for name in SCALAR_METRICS}
    per_class = {name: float(value) for name, value in
                 zip(class_names, computed["per_class_acc"].tolist(), strict=True)}
    return scalars, per_class, computed["confusion"].long().tolist()


def plot_confusion_matrix(confusion: Sequence[Sequence[int]], class_names: Sequence[str],
                          path: str | Path, title: str) -> Path:
    """Write a row-normalised confusion matrix (true class per row) with counts as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = torch.as_tensor(confusion, dtype=torch.float64)
    recall = counts / counts.sum(1, keepdim=True).clamp(min=1)
    size = 1.2 + 0.7 * len(class_names)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    im = ax.imshow(recall.numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            color = "white" if recall[i, j] > 0.5 else "black"
            ax.text(j, i, f"{recall[i, j]:.2f}\n{int(counts[i, j])}", ha="center",
                    va="center", fontsize=7, color=color)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
