"""Small building blocks shared by the network families."""

from __future__ import annotations

import torch
from torch import nn


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, padding: int | str = 0) -> nn.Sequential:
    """Conv (no bias) -> BatchNorm -> ReLU, the unit both Xception-based papers repeat."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SeparableConv2d(nn.Sequential):
    """Depthwise k x k conv, then (``pointwise=True``) a 1 x 1 conv, both without bias.

    ``pointwise=True`` is a depthwise separable convolution, Keras'
    ``SeparableConv2D(use_bias=False)`` as in Arriaga et al.'s mini_XCEPTION.
    ``pointwise=False`` keeps the depthwise conv alone; it then maps ``in_channels`` to
    ``out_channels`` with ``out_channels / in_channels`` filters per input channel (a
    depth multiplier), which needs ``out_channels`` to be a multiple of ``in_channels``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 pointwise: bool = True) -> None:
        if not pointwise and out_channels % in_channels:
            raise ValueError(f"a depthwise conv without pointwise conv maps {in_channels} "
                             f"channels to a multiple of them, not {out_channels}")
        depthwise_out = in_channels if pointwise else out_channels
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, depthwise_out, kernel_size, padding=kernel_size // 2,
                      groups=in_channels, bias=False)]
        if pointwise:
            layers.append(nn.Conv2d(in_channels, out_channels, 1, bias=False))
        super().__init__(*layers)


class XceptionResidualModule(nn.Module):
    """One mini_XCEPTION residual module (Arriaga et al.).

    Main path: SepConv 3x3 -> BN -> ReLU -> SepConv 3x3 -> BN -> MaxPool 3x3 stride 2;
    shortcut: Conv 1x1 stride 2 -> BN; the two are added. Halves the spatial size
    (rounding up, Keras "same" padding). ``final_relu=True`` adds a ReLU after the second
    SepConv's BN, for designs with BN + ReLU after every SepConv (MBA, Colaco & Han,
    Sec. II); ``pointwise=False`` drops the 1x1 conv of both SepConvs (``SeparableConv2d``).
    """

    def __init__(self, in_channels: int, out_channels: int, final_relu: bool = False,
                 pointwise: bool = True) -> None:
        super().__init__()
        self.shortcut = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride=2, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.main = nn.Sequential(
            SeparableConv2d(in_channels, out_channels, pointwise=pointwise),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            SeparableConv2d(out_channels, out_channels, pointwise=pointwise),
            nn.BatchNorm2d(out_channels),
            *([nn.ReLU(inplace=True)] if final_relu else []),
            nn.MaxPool2d(3, stride=2, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x) + self.shortcut(x)
