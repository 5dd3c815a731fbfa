"""Small building blocks shared by the network families.

Keras-faithful options (the families that reproduce Keras designs, mini_xception and mba,
set them in their yaml):

- ``padding`` of the stride-2 'same' max pooling: ``tf`` pads the way TensorFlow does
  (total padding ``max((ceil(n / s) - 1) * s + k - n, 0)``, the odd pixel after: on an
  even-sized map a 3x3 stride-2 pool gets 0 before and 1 after), timm's
  ``create_pool2d(..., padding="same")``; ``symmetric`` is ``nn.MaxPool2d(3, 2,
  padding=1)``, which pads 1 on both sides, so on even maps every window sits one pixel
  off Keras's. Both give ``ceil(n / 2)`` outputs and have no parameters. Stride-1 convs
  with odd kernels and the 1x1 stride-2 shortcut pad the same way in both conventions.
- ``bn_eps`` / ``bn_momentum`` of every BatchNorm, in torch's convention (Keras's
  ``momentum=0.99`` is torch's ``0.01``: torch weights the new batch statistic by
  ``momentum``, Keras the running one).

The defaults here (``symmetric``, 1e-5, 0.1: torch's) are what nets were built with before
these options existed, so a checkpoint whose stored config lacks them rebuilds as trained.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.layers import create_pool2d
from torch import nn

POOL_PADDINGS = ("tf", "symmetric")


@dataclass(frozen=True)
class NormOptions:
    """BatchNorm and pooling conventions of a family (module docstring)."""

    bn_eps: float = 1e-5
    bn_momentum: float = 0.1
    padding: str = "symmetric"

    def __post_init__(self) -> None:
        if self.padding not in POOL_PADDINGS:
            raise ValueError(f"model.padding must be one of {list(POOL_PADDINGS)}, "
                             f"got {self.padding!r}")
        if not self.bn_eps > 0:
            raise ValueError(f"model.bn_eps must be > 0, got {self.bn_eps}")
        if not 0 <= self.bn_momentum <= 1:
            raise ValueError(f"model.bn_momentum must be in [0, 1] (torch's convention: "
                             f"Keras's 0.99 is 0.01), got {self.bn_momentum}")

    def batch_norm(self, channels: int) -> nn.BatchNorm2d:
        """A BatchNorm2d with this family's eps and momentum."""
        return nn.BatchNorm2d(channels, eps=self.bn_eps, momentum=self.bn_momentum)

    def max_pool(self, kernel_size: int = 3, stride: int = 2) -> nn.Module:
        """'same' max pooling, padded the TF way or symmetrically."""
        if self.padding == "tf":
            return create_pool2d("max", kernel_size, stride, padding="same")
        return nn.MaxPool2d(kernel_size, stride=stride, padding=kernel_size // 2)


TORCH_DEFAULTS = NormOptions()


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, padding: int | str = 0,
                 norm: NormOptions = TORCH_DEFAULTS) -> nn.Sequential:
    """Conv (no bias) -> BatchNorm -> ReLU, the unit both Xception-based papers repeat."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False),
        norm.batch_norm(out_channels),
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
    (rounding up, Keras "same" padding; ``norm.padding`` says where the pool pads).
    ``final_relu=True`` adds a ReLU after the second SepConv's BN, for designs with BN +
    ReLU after every SepConv (MBA, Colaco & Han, Sec. II); ``pointwise=False`` drops the
    1x1 conv of both SepConvs (``SeparableConv2d``).
    """

    def __init__(self, in_channels: int, out_channels: int, final_relu: bool = False,
                 pointwise: bool = True, norm: NormOptions = TORCH_DEFAULTS) -> None:
        super().__init__()
        self.shortcut = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride=2, bias=False),
            norm.batch_norm(out_channels),
        )
        self.main = nn.Sequential(
            SeparableConv2d(in_channels, out_channels, pointwise=pointwise),
            norm.batch_norm(out_channels),
            nn.ReLU(inplace=True),
            SeparableConv2d(out_channels, out_channels, pointwise=pointwise),
            norm.batch_norm(out_channels),
            *([nn.ReLU(inplace=True)] if final_relu else []),
            norm.max_pool(3, stride=2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x) + self.shortcut(x)
