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
