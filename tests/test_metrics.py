"""Metrics against hand computations; the confusion-matrix figure."""

import pytest
import torch
from PIL import Image

from fer_lightning.metrics import classification_metrics, plot_confusion_matrix, split_results


def test_metrics_match_hand_computation():
    # 3 classes; true counts 4 / 2 / 2; class 0: 3 right, class 1: 1 right, class 2: 2 right.
    target = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    preds = torch.tensor([0, 0, 0, 1, 1, 0, 2, 2])
    metrics = classification_metrics(3)
    metrics.update(torch.nn.functional.one_hot(preds, 3).float(), target)
    scalars, per_class, confusion = split_results(metrics.compute(), ["a", "b", "c"])
    assert scalars["acc"] == pytest.approx(6 / 8)
    recall = [3 / 4, 1 / 2, 2 / 2]
    assert scalars["mean_class_acc"] == pytest.approx(sum(recall) / 3)
    assert per_class == pytest.approx({"a": 3 / 4, "b": 1 / 2, "c": 1.0})
    precision = [3 / 4, 1 / 2, 1.0]
    f1 = [2 * p * r / (p + r) for p, r in zip(precision, recall, strict=True)]
    assert scalars["macro_f1"] == pytest.approx(sum(f1) / 3)
    assert confusion == [[3, 1, 0], [1, 1, 0], [0, 0, 2]]


def test_confusion_matrix_png(tmp_path):
    path = plot_confusion_matrix([[3, 1], [0, 2]], ["happy", "sad"], tmp_path / "cm.png", "t")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 100


@pytest.mark.parametrize("seed", range(6))
def test_confusion_derived_metrics_equal_torchmetrics_on_random_inputs(seed):
    """Random logits over several batches, some classes never a target or a prediction:
    every number derived from the confusion matrix equals torchmetrics' own."""
    from torchmetrics.classification import (
        MulticlassAccuracy,
        MulticlassConfusionMatrix,
        MulticlassF1Score,
    )

    generator = torch.Generator().manual_seed(seed)
    classes = 7
    reference = {"acc": MulticlassAccuracy(classes, average="micro"),
                 "mean_class_acc": MulticlassAccuracy(classes, average="macro"),
                 "macro_f1": MulticlassF1Score(classes, average="macro"),
                 "per_class_acc": MulticlassAccuracy(classes, average=None),
                 "confusion": MulticlassConfusionMatrix(classes)}
    metrics = classification_metrics(classes)
    used = torch.randperm(classes, generator=generator)[: 3 + seed % 4]  # some classes unused
    for _ in range(3):
        target = used[torch.randint(len(used), (13,), generator=generator)]
        logits = torch.randn(13, classes, generator=generator)
        logits[:, used] += 1.0 + seed % 2  # predictions mostly among the used classes
        metrics.update(logits, target)
        for metric in reference.values():
            metric.update(logits, target)
    ours = metrics.compute()
    for name, metric in reference.items():
        assert torch.allclose(ours[name].float(), metric.compute().float(), atol=1e-6), name
