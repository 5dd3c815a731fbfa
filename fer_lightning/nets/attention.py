"""Attention gates that rescale a feature map: output = input * sigmoid(conv(statistics)).

MBA (Colaco & Han, Sec. II) defines both gates of its network:

- spatial attention (SA): "the mean and standard deviation of input are calculated, fed
  to the convolution layer to generate attention weights and multiplied with input";
  we take the statistics over channels at every position and a conv to one map;
- channel attention (CA): "the global average pool of the input is calculated. This is
  fed to the convolution layer to get attention weights and multiplied with input".

The sigmoid that turns each conv output into weights in [0, 1] is our choice (as in
CBAM); the paper does not name the squashing function.

Both are written generically (which channel statistics, kernel size, an optional
bottleneck) so other families can reuse what fits; each exposes ``attention(x)`` (the
map in [0, 1]) next to ``forward(x)`` (the rescaled input) so tests and visualisations
can read the maps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

# Keeps sqrt differentiable where every channel is equal (common after ReLU: all zero).
STD_EPS = 1e-5


def _channel_mean(x: torch.Tensor) -> torch.Tensor:
    return x.mean(1, keepdim=True)


def _channel_std(x: torch.Tensor) -> torch.Tensor:
    return (x.var(1, keepdim=True, unbiased=False) + STD_EPS).sqrt()


def _channel_max(x: torch.Tensor) -> torch.Tensor:
    return x.amax(1, keepdim=True)


CHANNEL_STATS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "mean": _channel_mean,
    "std": _channel_std,
    "max": _channel_max,
}


class SpatialAttention(nn.Module):
    """Per-position gate: channel statistics (B, S, H, W) -> conv k x k -> sigmoid (B, 1, H, W).

    ``stats=("mean", "std")`` is MBA's SA; ``("max", "mean")`` is CBAM's channel pool.
    The standard deviation is the population one with a small epsilon inside the square
    root (``STD_EPS``), so positions where all channels agree still have finite gradients.
    The kernel size is not given by MBA; the default 7 is CBAM's spatial gate.
    """

    def __init__(self, kernel_size: int = 7, stats: Sequence[str] = ("mean", "std"),
                 bias: bool = True) -> None:
        super().__init__()
        unknown = [name for name in stats if name not in CHANNEL_STATS]
        if unknown or not stats:
            raise ValueError(f"SpatialAttention stats must be a non-empty subset of "
                             f"{list(CHANNEL_STATS)}, got {list(stats)}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"SpatialAttention kernel_size must be odd and >= 1, "
                             f"got {kernel_size}")
        self.stats = tuple(stats)
        self.conv = nn.Conv2d(len(self.stats), 1, kernel_size, padding=kernel_size // 2,
                              bias=bias)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The spatial attention map (B, 1, H, W), values in [0, 1]."""
        pooled = torch.cat([CHANNEL_STATS[name](x) for name in self.stats], 1)
        return torch.sigmoid(self.conv(pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x)


class ChannelAttention(nn.Module):
    """Per-channel gate: global average pool (B, C, 1, 1) -> conv -> sigmoid -> multiply.

    ``reduction=None`` is our reading of MBA's CA: one 1x1 conv from C to C channels (the
    paper says only "the convolution layer"). An integer
    ``reduction`` r gives the squeeze-and-excitation bottleneck instead
    (1x1 conv C -> C/r, ReLU, 1x1 conv C/r -> C).
    """

    def __init__(self, channels: int, reduction: int | None = None) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"ChannelAttention channels must be >= 1, got {channels}")
        if reduction is None:
            self.gate: nn.Module = nn.Conv2d(channels, channels, 1)
        elif reduction < 1:
            raise ValueError(f"ChannelAttention reduction must be >= 1 or None, got {reduction}")
        else:
            hidden = max(1, channels // reduction)
            self.gate = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True),
                                      nn.Conv2d(hidden, channels, 1))

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The channel attention weights (B, C, 1, 1), values in [0, 1]."""
        return torch.sigmoid(self.gate(x.mean((2, 3), keepdim=True)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x)


class SpatialChannelAttention(nn.Sequential):
    """MBA's attention unit (Colaco & Han, Sec. II): spatial attention, then channel
    attention (the order is our choice; the paper lists SA and CA "in end-to-end design")."""

    def __init__(self, channels: int, kernel_size: int = 7,
                 reduction: int | None = None) -> None:
        super().__init__(SpatialAttention(kernel_size), ChannelAttention(channels, reduction))
