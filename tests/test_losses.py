"""Losses against hand computations."""

import math

import pytest
import torch

from fer_lightning.losses import (
    CrossEntropy,
    FocalLoss,
    WeightedCrossEntropy,
    inverse_frequency_weights,
)

LOGITS = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 3.0]])
TARGET = torch.tensor([0, 1])


def _log_softmax_by_hand(row: list[float]) -> list[float]:
    norm = math.log(sum(math.exp(v) for v in row))
    return [v - norm for v in row]


LOG_P = [_log_softmax_by_hand(r) for r in LOGITS.tolist()]
LOG_PT = [LOG_P[0][0], LOG_P[1][1]]  # log p of the true class per sample


def test_cross_entropy_matches_hand_computation():
    expected = -(LOG_PT[0] + LOG_PT[1]) / 2
    assert CrossEntropy()(LOGITS, TARGET).item() == pytest.approx(expected, rel=1e-6)


def test_label_smoothing_matches_hand_computation():
    eps, k = 0.1, 3
    per_sample = [-((1 - eps) * LOG_PT[i] + eps / k * sum(LOG_P[i])) for i in range(2)]
    got = CrossEntropy(label_smoothing=eps)(LOGITS, TARGET).item()
    assert got == pytest.approx(sum(per_sample) / 2, rel=1e-6)


def test_inverse_frequency_weights_follow_eq5():
    # N = 10, K = 3: w_c = 10 / (3 * N_c)
    weights = inverse_frequency_weights([5, 4, 1])
    assert weights.tolist() == pytest.approx([10 / 15, 10 / 12, 10 / 3])


def test_inverse_frequency_weights_reject_empty_class():
    with pytest.raises(ValueError, match=r"classes \[1\] have no training samples"):
        inverse_frequency_weights([3, 0, 2])


def test_weighted_ce_matches_hand_computation():
    w = [10 / 15, 10 / 12, 10 / 3]
    # torch's weighted mean: sum(w_y * nll) / sum(w_y)
    expected = -(w[0] * LOG_PT[0] + w[1] * LOG_PT[1]) / (w[0] + w[1])
    got = WeightedCrossEntropy(class_counts=[5, 4, 1])(LOGITS, TARGET).item()
    assert got == pytest.approx(expected, rel=1e-6)


def test_focal_matches_hand_computation():
    gamma = 2.0
    per_sample = [-((1 - math.exp(lp)) ** gamma) * lp for lp in LOG_PT]
    got = FocalLoss(gamma=gamma)(LOGITS, TARGET).item()
    assert got == pytest.approx(sum(per_sample) / 2, rel=1e-6)


def test_focal_with_alpha_matches_hand_computation():
    alpha = [0.25, 0.5, 1.0]
    per_sample = [-alpha[t] * (1 - math.exp(lp)) ** 2 * lp
                  for t, lp in zip([0, 1], LOG_PT, strict=True)]
    got = FocalLoss(gamma=2.0, alpha=alpha)(LOGITS, TARGET).item()
    assert got == pytest.approx(sum(per_sample) / 2, rel=1e-6)


def test_focal_with_gamma_zero_is_cross_entropy():
    logits = torch.randn(16, 7, generator=torch.Generator().manual_seed(0))
    target = torch.randint(0, 7, (16,), generator=torch.Generator().manual_seed(1))
    assert FocalLoss(gamma=0.0)(logits, target).item() == pytest.approx(
        CrossEntropy()(logits, target).item(), rel=1e-6)


def test_focal_down_weights_easy_samples():
    easy = torch.tensor([[5.0, 0.0, 0.0]])
    target = torch.tensor([0])
    assert FocalLoss(gamma=2.0)(easy, target) < 0.01 * CrossEntropy()(easy, target)


@pytest.mark.parametrize("kwargs, message", [
    ({"gamma": -1.0}, "loss.gamma"),
    ({"label_smoothing": 1.0}, "loss.label_smoothing"),
])
def test_focal_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FocalLoss(**kwargs)


def test_focal_alpha_length_must_match_classes():
    with pytest.raises(ValueError, match="one per class"):
        FocalLoss(alpha=[1.0, 1.0])(LOGITS, TARGET)


def test_loss_label_modes_are_ferplus_label_modes():
    """losses.py owns the names (no import of a data source); they must stay FER+'s."""
    from fer_lightning import losses
    from fer_lightning.data.sources import ferplus

    assert losses.LABEL_MODES == ferplus.LABEL_MODES
