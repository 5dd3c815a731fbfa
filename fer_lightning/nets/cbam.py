"""Convolutional Block Attention Module (Woo et al. 2018), as used by VGG16-CBAM (Ghimire
et al., Methodology 2, Eqs. 1-4): a channel gate, then a spatial gate. The official CBAM
(Jongchan/attention-module) differs in the defaults noted below.

- ``ChannelGate``: a shared MLP ``Linear(C, C/r) -> ReLU -> Linear(C/r, C)`` applied to the
  average- and the max-pooled channel descriptors; the two outputs are summed and squashed
  by a sigmoid (Eq. 3).
- ``SpatialGate``: the [max; mean] channel pools (official CBAM's ``ChannelPool`` order)
  -> a k x k conv to one map -> sigmoid (Eq. 4). The paper says k = 3 (Methodology 2b) and
  writes no batch norm; the official CBAM uses k = 7 followed by batch norm. Both are
  parameters.

Parameter count: with C = 512 (VGG16's last block) the default reduction r = 8 (the paper
gives none), kernel 3 and no batch norm add 66,130 parameters, the paper's "66K extra
parameters" (Results). The official defaults (r = 16, k = 7, batch norm) add 33,412.
"""

from __future__ import annotations

import torch
from torch import nn


class ChannelGate(nn.Module):
    """Channel attention map M_c(F) = sigmoid(MLP(avg(F)) + MLP(max(F))), times F."""

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        if reduction < 1 or channels // reduction < 1:
            raise ValueError(f"model.reduction must be in [1, {channels}] for {channels} "
                             f"channels, got {reduction}")
        hidden = channels // reduction
        self.mlp = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        average = self.mlp(features.mean(dim=(2, 3)))
        maximum = self.mlp(features.amax(dim=(2, 3)))
        return features * torch.sigmoid(average + maximum)[:, :, None, None]


class SpatialGate(nn.Module):
    """Spatial attention map M_s(F) = sigmoid(conv_kxk([max_c(F); mean_c(F)])), times F."""

    def __init__(self, kernel_size: int = 3, batch_norm: bool = False) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"model.spatial_kernel must be a positive odd integer, "
                             f"got {kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.norm = nn.BatchNorm2d(1) if batch_norm else nn.Identity()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([features.amax(dim=1, keepdim=True),
                            features.mean(dim=1, keepdim=True)], dim=1)
        return features * torch.sigmoid(self.norm(self.conv(pooled)))


class CBAM(nn.Module):
    """Channel gate followed by spatial gate: F'' = M_s(F') x F' with F' = M_c(F) x F."""

    def __init__(self, channels: int, reduction: int = 8, spatial_kernel: int = 3,
                 spatial_batch_norm: bool = False) -> None:
        super().__init__()
        self.channel = ChannelGate(channels, reduction)
        self.spatial = SpatialGate(spatial_kernel, spatial_batch_norm)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(features))
