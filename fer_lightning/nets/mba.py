"""MBA (Colaco & Han): scalable landmark + image network with multi-branch attention.

Sec. II of the paper, stage by stage (we work from its text: what only its Fig. 1 shows
is not available to us):

1. Two feature-learning subnetworks of the same mini-Xception design, one on the face
   image and one on the landmark image (our ``heatmap`` encoding, batch key
   ``landmark_map``; the paper says only "landmark input"). Our subnetwork is Arriaga et
   al.'s mini_XCEPTION (a two-conv stem, then residual modules of two SepConvs and a
   1x1-conv shortcut); the paper names "mini Xception modules ... with skip
   connections". BN + ReLU follow every conv and SepConv, including the second SepConv
   of each module (``final_relu``), as Sec. II says.
2. Spatial attention (mean and standard deviation over channels, a conv, sigmoid) and
   channel attention (global average pool, a conv, sigmoid) on each subnetwork's output
   (nets/attention.py).
3. The attended maps are concatenated.
4. Multi-branch attention: 1x1 / 3x3 / 5x5 conv branches, each followed by SA and CA,
   plus a residual 1x1 conv.
5. A fully connected layer to the classes (``head=fc`` with no hidden layer).

SepConv (``pointwise``): Sec. II calls the modules' convolutions "depthwise separable"
but also says "The mini Xception modules contain depthwise convolutions, which are not
followed by pointwise convolutions". ``pointwise=False`` (the default, and
``+experiment=mba``) follows that explicit sentence: each SepConv is a depthwise conv
alone, widening channels with a depth multiplier. ``pointwise=True`` is the depthwise
separable reading (Arriaga's SepConv with its 1x1 conv).

Compound scaling (Sec. II: "The width w and depth d of the whole network are scaled
uniformly"; Sec. III-B: "The depth and width values considered are 0.5"): ``width``
multiplies every channel count and ``depth`` the number of residual modules per
subnetwork. The rounding is our choice, EfficientNet's: channels to the nearest multiple
of ``divisor`` (8) but never below ``divisor`` nor more than 10 % below the exact product;
module counts rounded up. The unscaled network (w = d = 1) is mini_XCEPTION's: stem 8,
four modules of 16, 32, 64, 128 filters; w = d = 0.5 gives stem 8 and two modules of 8
and 16 filters per subnetwork.

Framework conventions (``padding``, ``bn_eps``, ``bn_momentum``, ``nets/blocks.py``):
the paper names no framework, and its subnetwork is mini_XCEPTION, whose reference
implementation (Arriaga et al.) is Keras; so ``conf/model/mba.yaml`` builds it the Keras way,
like ``mini_xception``: TF 'same' padding of the stride-2 pools, BN eps 1e-3 and momentum
0.99 (torch 0.01). One convention for both families also lets a mini_XCEPTION trained in
either (or imported) behave the same inside MBA. The constructor's defaults are torch's,
what checkpoints written before these options were trained with.

Not given by the paper, chosen here: the base network above, SA's kernel (7, as CBAM's
spatial gate), CA as one 1x1 conv C -> C, SA before CA, the branch width (the
concatenated input width), branches concatenated (not summed), BN + ReLU after each
branch conv, ReLU after the residual sum, one multi-branch block, and flattening the map
before the FC layer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from fer_lightning.nets.attention import SpatialChannelAttention
from fer_lightning.nets.base import FERNet
from fer_lightning.nets.blocks import (
    TORCH_DEFAULTS,
    NormOptions,
    XceptionResidualModule,
    conv_bn_relu,
)
from fer_lightning.nets.heads import ClassifierHead
from fer_lightning.nets.mini_xception import MiniXception

LANDMARK_CHANNELS = 1  # the heatmap encoding renders one channel


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """EfficientNet's channel rounding: ``channels * width`` to a multiple of ``divisor``,
    at least ``divisor`` and never more than 10 % below the exact product."""
    exact = channels * width
    rounded = max(divisor, int(exact + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * exact:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats: int, depth: float) -> int:
    """EfficientNet's depth rounding: ``repeats * depth`` rounded up (at least 1)."""
    return max(1, math.ceil(repeats * depth))


class XceptionSubnetwork(nn.Sequential):
    """Stem (two 3x3 convs, no padding, BN + ReLU) then residual separable modules.

    Maps (B, C, S, S) to (B, widths[-1], s, s) with s = ``MiniXception.feature_side(S, n)``.
    """

    def __init__(self, in_channels: int, stem_width: int, widths: Sequence[int],
                 pointwise: bool = False, norm: NormOptions = TORCH_DEFAULTS) -> None:
        super().__init__(
            conv_bn_relu(in_channels, stem_width, norm=norm),
            conv_bn_relu(stem_width, stem_width, norm=norm),
            *[XceptionResidualModule(c_in, c_out, final_relu=True, pointwise=pointwise,
                                     norm=norm)
              for c_in, c_out in zip([stem_width, *widths[:-1]], widths, strict=True)],
        )
        self.out_channels = widths[-1]


class MultiBranchAttention(nn.Module):
    """Parallel k x k conv branches (conv -> BN -> ReLU -> SA -> CA), concatenated, plus a
    residual 1x1 conv (-> BN) of the input; ReLU of the sum. Keeps the spatial size."""

    def __init__(self, in_channels: int, branch_channels: int,
                 kernels: Sequence[int] = (1, 3, 5), attention_kernel: int = 7,
                 norm: NormOptions = TORCH_DEFAULTS) -> None:
        super().__init__()
        self.branches = nn.ModuleList([
            nn.Sequential(conv_bn_relu(in_channels, branch_channels, k, padding=k // 2,
                                       norm=norm),
                          SpatialChannelAttention(branch_channels, attention_kernel))
            for k in kernels
        ])
        self.out_channels = branch_channels * len(kernels)
        self.residual = nn.Sequential(
            nn.Conv2d(in_channels, self.out_channels, 1, bias=False),
            norm.batch_norm(self.out_channels),
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = torch.cat([branch(x) for branch in self.branches], 1)
        return self.relu(branches + self.residual(x))


class MBANet(FERNet):
    """The MBA network (module docstring); ``use_landmarks=False`` drops the landmark
    subnetwork (the image-only ablation), so the multi-branch block sees only the image
    features."""

    landmark_encoding = "heatmap"
    supported_heads = ("gap", "flatten")

    def __init__(self, num_classes: int, in_channels: int, image_size: int,
                 head: Mapping[str, Any], use_landmarks: bool = False, width: float = 0.5,
                 depth: float = 0.5, base_modules: int = 4, base_width: int = 16,
                 stem_width: int = 8, branch_width: int | None = None,
                 branch_kernels: Sequence[int] = (1, 3, 5), attention_kernel: int = 7,
                 divisor: int = 8, pointwise: bool = False, padding: str = "symmetric",
                 bn_eps: float = 1e-5, bn_momentum: float = 0.1) -> None:
        super().__init__()
        norm = NormOptions(bn_eps=bn_eps, bn_momentum=bn_momentum, padding=padding)
        _check_arguments(width, depth, base_modules, base_width, stem_width, branch_width,
                         branch_kernels, attention_kernel, divisor)
        self.use_landmarks = use_landmarks
        self.num_modules = round_repeats(base_modules, depth)
        minimum = MiniXception.min_image_size(self.num_modules)
        if image_size < minimum:
            raise ValueError(
                f"data.image_size={image_size} is too small for mba with model.depth={depth} "
                f"({self.num_modules} residual modules): it needs data.image_size >= {minimum}"
            )
        stem = round_filters(stem_width, width, divisor)
        widths = [round_filters(base_width * 2**i, width, divisor)
                  for i in range(self.num_modules)]
        if not pointwise and any(c_out % c_in for c_in, c_out in
                                 zip([stem, *widths[:-1]], widths, strict=True)):
            raise ValueError(
                f"model.pointwise=false needs every module width to be a multiple of the one "
                f"before (a depthwise conv multiplies its channels); model.width={width} "
                f"gives {[stem, *widths]}: choose another model.width or model.pointwise=true")
        self.image_net = XceptionSubnetwork(in_channels, stem, widths, pointwise, norm)
        self.image_attention = SpatialChannelAttention(widths[-1], attention_kernel)
        fused = widths[-1]
        if use_landmarks:
            self.landmark_net = XceptionSubnetwork(LANDMARK_CHANNELS, stem, widths, pointwise,
                                                  norm)
            self.landmark_attention = SpatialChannelAttention(widths[-1], attention_kernel)
            fused += widths[-1]
        branch = fused if branch_width is None else round_filters(branch_width, width, divisor)
        self.mba = MultiBranchAttention(fused, branch, branch_kernels, attention_kernel, norm)
        side = MiniXception.feature_side(image_size, self.num_modules)
        self.head = ClassifierHead(self.mba.out_channels, num_classes, (side, side),
                                   **dict(head))

    @property
    def input_keys(self) -> tuple[str, ...]:
        """Batch keys the forward pass takes: the landmark image only with landmarks on."""
        return ("image", "landmark_map") if self.use_landmarks else ("image",)

    def fused_features(self, image: torch.Tensor,
                       landmark_map: torch.Tensor | None = None) -> torch.Tensor:
        """Attended image (and landmark) features, concatenated: the multi-branch input."""
        features = [self.image_attention(self.image_net(image))]
        if self.use_landmarks:
            if landmark_map is None:
                raise ValueError("mba with landmarks on needs the batch key 'landmark_map' "
                                 "(B, 1, H, W) from the heatmap encoding")
            features.append(self.landmark_attention(self.landmark_net(landmark_map)))
        return torch.cat(features, 1)

    def forward(self, image: torch.Tensor,
                landmark_map: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.mba(self.fused_features(image, landmark_map)))


def _check_arguments(width: float, depth: float, base_modules: int, base_width: int,
                     stem_width: int, branch_width: int | None, branch_kernels: Sequence[int],
                     attention_kernel: int, divisor: int) -> None:
    """ValueError naming the model config key for values the network cannot be built with."""
    for key, value in (("width", width), ("depth", depth)):
        if not value > 0:
            raise ValueError(f"model.{key} must be > 0, got {value}")
    for key, value in (("base_modules", base_modules), ("base_width", base_width),
                       ("stem_width", stem_width), ("divisor", divisor)):
        if value < 1:
            raise ValueError(f"model.{key} must be >= 1, got {value}")
    if branch_width is not None and branch_width < 1:
        raise ValueError(f"model.branch_width must be >= 1 or null, got {branch_width}")
    kernels = list(branch_kernels)
    if not kernels or any(k < 1 or k % 2 == 0 for k in kernels):
        raise ValueError(f"model.branch_kernels must be a non-empty list of odd sizes >= 1, "
                         f"got {kernels}")
    if attention_kernel < 1 or attention_kernel % 2 == 0:
        raise ValueError(f"model.attention_kernel must be odd and >= 1, got {attention_kernel}")
