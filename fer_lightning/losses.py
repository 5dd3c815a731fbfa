"""Classification losses, each a module ``loss(logits, target) -> scalar``.

``target`` is a (B,) long tensor of class indices, except for losses declaring
``uses_soft_target = True``, which get the batch's (B, K) soft ``target`` instead. The
ablation axis is the ``loss`` config group: ``ce`` | ``weighted_ce`` | ``focal`` | ``soft_ce``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

#: The label modes of vote-distribution datasets a loss understands (FER+'s, Barsoum et al.
#: 2016); the losses own the names so they need no data source. tests/test_losses.py pins
#: them equal to ``data.sources.ferplus.LABEL_MODES``.
LABEL_MODES = ("majority", "probability", "crossentropy", "multi_target")


def inverse_frequency_weights(class_counts: Sequence[int]) -> torch.Tensor:
    """Class weights w_c = N / (K * N_c) (VGG16-CBAM, Ghimire et al., Eq. 5).

    A class absent from the training split has no defined weight: that is an error,
    not a silent zero or infinity.
    """
    counts = torch.as_tensor(list(class_counts), dtype=torch.float64)
    if counts.ndim != 1 or len(counts) == 0:
        raise ValueError("class_counts must be a non-empty 1-D sequence")
    empty = torch.nonzero(counts <= 0).flatten().tolist()
    if empty:
        raise ValueError(f"class weights are undefined: classes {empty} have no training samples")
    return (counts.sum() / (len(counts) * counts)).float()


class CrossEntropy(nn.Module):
    """Categorical cross-entropy with optional label smoothing and per-class weights."""

    def __init__(self, label_smoothing: float = 0.0, weight: Sequence[float] | None = None) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"loss.label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight).float())

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), target, weight=self.weight,
                               label_smoothing=self.label_smoothing)


class WeightedCrossEntropy(CrossEntropy):
    """Cross-entropy weighted by inverse class frequency of the training split (VGG16-CBAM,
    Ghimire et al., Eq. 5)."""

    def __init__(self, class_counts: Sequence[int], label_smoothing: float = 0.0) -> None:
        super().__init__(label_smoothing, inverse_frequency_weights(class_counts).tolist())


class FocalLoss(nn.Module):
    """Focal cross-entropy -(alpha_t) (1 - p_t)^gamma log p_t, averaged over the batch.

    The multi-class form (Lin et al. 2017) of the focal cross-entropy MS-FPN (Zhang et al.,
    Sec. 3.2) writes for its anchors' binary target / background term; ``+experiment=ms_fpn``
    also uses it for the emotion classifier (our choice). ``gamma = 0`` with no alpha is
    exactly cross-entropy. ``alpha`` is an optional per-class weight list. With label
    smoothing, the log-probability term is taken against the smoothed distribution while
    the modulating factor keeps using the true-class probability p_t.
    """

    def __init__(self, gamma: float = 2.0, alpha: Sequence[float] | None = None,
                 label_smoothing: float = 0.0) -> None:
        super().__init__()
        if gamma < 0:
            raise ValueError(f"loss.gamma must be >= 0, got {gamma}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"loss.label_smoothing must be in [0, 1), got {label_smoothing}")
        self.gamma = gamma
        self.label_smoothing = label_smoothing
        self.register_buffer("alpha", None if alpha is None else torch.as_tensor(alpha).float())

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_probs = F.log_softmax(logits.float(), dim=-1)
        log_pt = log_probs.gather(1, target[:, None]).squeeze(1)
        if self.label_smoothing > 0:
            num_classes = logits.shape[-1]
            smooth = self.label_smoothing
            ce = -((1 - smooth) * log_pt + smooth / num_classes * log_probs.sum(-1))
        else:
            ce = -log_pt
        loss = (1 - log_pt.exp()).pow(self.gamma) * ce
        if self.alpha is not None:
            if len(self.alpha) != logits.shape[-1]:
                raise ValueError(f"loss.alpha has {len(self.alpha)} entries, "
                                 f"expected one per class ({logits.shape[-1]})")
            loss = loss * self.alpha[target]
        return loss.mean()


class SoftTargetCrossEntropy(nn.Module):
    """Losses against a (B, K) target distribution: the FER+ training modes.

    Follows the FER+ reference training (microsoft/FERPlus ``src/train.py`` ``cost_func``
    and ``ferplus.py`` ``_process_target``; Barsoum et al. 2016, Sec. 3):

    - ``majority`` / ``crossentropy``: -sum_k t_k log p_k (one-hot t gives plain CE);
    - ``probability``: each step draws one class per sample from t and takes CE with it;
    - ``multi_target``: t' = (1 - eps) [t > 0] + eps, loss -log max_k t'_k p_k, so any
      emotion most taggers saw counts as right.
    """

    uses_soft_target = True

    def __init__(self, mode: str = "crossentropy", epsilon: float = 0.001) -> None:
        super().__init__()
        if mode not in LABEL_MODES:
            raise ValueError(f"loss.mode={mode!r}; allowed values: {list(LABEL_MODES)}")
        if not 0.0 < epsilon < 1.0:
            raise ValueError(f"loss.epsilon must be in (0, 1), got {epsilon}")
        self.mode = mode
        self.epsilon = epsilon

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.shape != logits.shape:
            raise ValueError(f"soft_ce: target of shape {tuple(target.shape)} does not match "
                             f"logits {tuple(logits.shape)}; expected (batch, classes)")
        log_probs = F.log_softmax(logits.float(), dim=-1)
        target = target.float()
        if self.mode == "probability":
            drawn = torch.multinomial(target, 1).squeeze(1)
            return F.nll_loss(log_probs, drawn)
        if self.mode == "multi_target":
            weights = (1 - self.epsilon) * (target > 0).float() + self.epsilon
            return -(weights.log() + log_probs).max(dim=-1).values.mean()
        return -(target * log_probs).sum(dim=-1).mean()
