"""The classifier head, one module for every family: the `head=gap|fc` ablation axis.

- ``pool="gap"`` with no hidden layers: a k x k conv to ``num_classes`` maps, then global
  average pooling (Arriaga's mini_XCEPTION; key-point mini-Xception, Selvam et al.,
  Fig. 4a, "about 0.2 Million parameters").
- ``pool="gap"`` with hidden layers: GAP, then an MLP (VGG16-CBAM, Ghimire et al.,
  Methodology 3: GAP -> dropout -> FC 512 -> dropout -> FC 512 -> classifier).
- ``pool="flatten"``: flatten the feature map, then an MLP (key-point mini-Xception,
  Fig. 4b, the "fully connected" model of about 8 M parameters).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fer_lightning.checks import check_choice

POOLS = ("gap", "flatten")


def mlp(in_features: int, hidden: Sequence[int], num_classes: int, dropout: float,
        final_dropout: bool = True) -> nn.Sequential:
    """[Dropout -> Linear -> ReLU] per hidden width, then (Dropout ->) Linear to the classes.

    ``final_dropout=False`` drops the last Dropout: VGG16-CBAM's head (Ghimire et al.,
    Methodology 3: "drop out of 0.5 was kept before both of the hidden layers") is GAP,
    dropout, FC 512, dropout, FC 512, classifier, with no dropout right before the
    classifier."""
    layers: list[nn.Module] = []
    for width in hidden:
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [nn.Linear(in_features, width), nn.ReLU(inplace=True)]
        in_features = width
    if dropout > 0 and final_dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(in_features, num_classes))
    return nn.Sequential(*layers)


class ClassifierHead(nn.Module):
    """Feature map (B, C, H, W) -> logits (B, num_classes), pooled by GAP or flattened."""

    def __init__(self, in_channels: int, num_classes: int, feature_size: tuple[int, int],
                 pool: str = "gap", hidden: Sequence[int] = (), dropout: float = 0.0,
                 conv_kernel: int = 3, final_dropout: bool = True) -> None:
        super().__init__()
        check_choice("head.pool", pool, POOLS)
        hidden = list(hidden)
        if pool == "gap" and not hidden:
            self.body: nn.Module = nn.Sequential(
                nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
                nn.Conv2d(in_channels, num_classes, conv_kernel, padding=conv_kernel // 2),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
            )
        elif pool == "gap":
            self.body = nn.Sequential(
                nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                mlp(in_channels, hidden, num_classes, dropout, final_dropout),
            )
        else:
            height, width = feature_size
            self.body = nn.Sequential(
                nn.Flatten(),
                mlp(in_channels * height * width, hidden, num_classes, dropout, final_dropout),
            )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.body(features)
