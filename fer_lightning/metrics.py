"""Classification metrics, derived from one confusion matrix, and its figure.

``acc`` is overall accuracy; ``mean_class_acc`` is the mean of per-class recall, the
RAF-DB convention (MS-FPN, Zhang et al., reports both); ``macro_f1``; ``per_class_acc``;
``confusion``. A step only adds its predictions into the confusion matrix (one
scatter-add on the device); every number is derived from the matrix at epoch end, with
torchmetrics' conventions (tested against ``MulticlassAccuracy`` / ``MulticlassF1Score``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torchmetrics import Metric

SCALAR_METRICS = ("acc", "mean_class_acc", "macro_f1")


class ConfusionMetrics(Metric):
    """A (C, C) confusion matrix (rows: true class) whose ``compute`` returns every
    metric a stage reports.

    ``update`` is a single ``scatter_add_``: torchmetrics' ``MulticlassConfusionMatrix``
    counts with ``torch.bincount`` and validates its inputs, both of which wait for the
    device on CUDA, once per step. The matrix is summed across DDP ranks.
    """

    full_state_update = False

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"ConfusionMetrics needs at least one class, got {num_classes}")
        self.num_classes = num_classes
        self.add_state("confusion", torch.zeros(num_classes * num_classes, dtype=torch.long),
                       dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``preds`` (B, C) scores (argmax taken) or (B,) class indices,
        ``target`` (B,) class indices."""
        if preds.ndim == 2:
            preds = preds.argmax(1)
        index = target.long() * self.num_classes + preds.long()
        self.confusion.scatter_add_(0, index, torch.ones_like(index))

    def compute(self) -> dict[str, torch.Tensor]:
        """``metrics_from_confusion`` of the accumulated matrix."""
        return metrics_from_confusion(self.confusion.view(self.num_classes, self.num_classes))


def metrics_from_confusion(confusion: torch.Tensor) -> dict[str, torch.Tensor]:
    """acc, mean_class_acc, macro_f1, per_class_acc and the matrix from (C, C) counts
    (rows true). As torchmetrics: 0/0 counts as 0, and the macro averages skip classes
    that never occur as a target or a prediction."""
    counts = confusion.double()
    true_positive = counts.diagonal()
    support, predicted = counts.sum(1), counts.sum(0)
    false_positive, false_negative = predicted - true_positive, support - true_positive
    present = (true_positive + false_positive + false_negative) > 0

    def divide(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
        return torch.where(denominator > 0, numerator / denominator.clamp_min(1),
                           torch.zeros_like(numerator))

    def macro(score: torch.Tensor) -> torch.Tensor:
        return divide((score * present).sum(), present.sum().double())

    recall = divide(true_positive, support)
    f1 = divide(2 * true_positive, 2 * true_positive + false_positive + false_negative)
    return {"acc": divide(true_positive.sum(), counts.sum()).float(),
            "mean_class_acc": macro(recall).float(), "macro_f1": macro(f1).float(),
            "per_class_acc": recall.float(), "confusion": confusion}


def classification_metrics(num_classes: int) -> ConfusionMetrics:
    """A fresh metric for one stage (see ``ConfusionMetrics``)."""
    return ConfusionMetrics(num_classes)


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
