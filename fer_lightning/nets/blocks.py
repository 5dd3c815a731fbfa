"""Small building blocks shared by the network families."""

from __future__ import annotations

import torch
from torch import nn


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, padding: int | str = 0) -> nn.Sequential:
    """Conv (no bias) -> BatchNorm -> ReLU, the unit both Xception papers repeat."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SeparableConv2d(nn.Sequential):
    """Depthwise k x k conv followed by a pointwise 1 x 1 conv, both without bias.

    Keras' ``SeparableConv2D(use_bias=False)`` as used by Arriaga et al.'s mini_XCEPTION.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__(
            nn.Conv2d(in_channels, in_channels, kernel_size, padding=kernel_size // 2,
                      groups=in_channels, bias=False),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
        )


class XceptionResidualModule(nn.Module):
    """One mini_XCEPTION residual module (Arriaga et al.; seed 001 Sec. 3.2.2).

    Main path: SepConv 3x3 -> BN -> ReLU -> SepConv 3x3 -> BN -> MaxPool 3x3 stride 2;
    shortcut: Conv 1x1 stride 2 -> BN; the two are added. Halves the spatial size
    (rounding up, Keras "same" padding). ``final_relu=True`` adds a ReLU after the second
    SepConv's BN, for designs with BN + ReLU after every SepConv (seed 000 Sec. II).
    """

    def __init__(self, in_channels: int, out_channels: int, final_relu: bool = False) -> None:
        super().__init__()
        self.shortcut = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride=2, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.main = nn.Sequential(
            SeparableConv2d(in_channels, out_channels),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            SeparableConv2d(out_channels, out_channels),
            nn.BatchNorm2d(out_channels),
            *([nn.ReLU(inplace=True)] if final_relu else []),
            nn.MaxPool2d(3, stride=2, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x) + self.shortcut(x)
