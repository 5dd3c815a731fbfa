"""Key-point mini-Xception (Selvam et al.), built on Arriaga et al.'s mini_XCEPTION.

Stem: two 3x3 convs (8 filters, no padding) with BN + ReLU; then ``num_modules``
residual depthwise-separable modules whose widths double from ``base_width``; then the
shared classifier head. The paper's classifier section ("3.2.2 Classifier Architecture";
the paper numbers two sections 3.2.2) repeats the residual block 5 times; its GAP model
(Fig. 4a) has "about 0.2 Million parameters" and its fully connected one (Fig. 4b) "about
8 Million". Stem and module widths are not given by the paper: they are Arriaga's.

Keras-faithful by its yaml (``conf/model/mini_xception.yaml``): ``padding=tf`` pads the
stride-2 pools the way TF's 'same' does and ``bn_eps=1e-3``, ``bn_momentum=0.01`` are
Keras's BatchNorm defaults (``momentum=0.99`` in Keras's convention), as in Arriaga's
released models; with them, Arriaga's weights converted by ``fer_lightning.convert`` give
Keras's probabilities (``nets/blocks.py`` explains the options). The constructor's
defaults are torch's, what checkpoints written before these options were trained with.

``pretrained_path``: a checkpoint of the same architecture to fine-tune, e.g. ``make
weights``' converted mini_XCEPTION with ``+experiment=arriaga_fer2013``
(``nets/pretrained.load_whole_net``; another class set re-initialises the classifier).

With landmarks on, the key-points are drawn onto the image (the ``overlay`` encoding,
Sec. 3.1), so the network itself is unchanged: it only ever reads ``image``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from fer_lightning.nets.base import FERNet
from fer_lightning.nets.blocks import NormOptions, XceptionResidualModule, conv_bn_relu
from fer_lightning.nets.heads import ClassifierHead
from fer_lightning.nets.pretrained import load_whole_net, pretrained_file

STEM_CONVS = 2


class MiniXception(FERNet):
    """Residual depthwise-separable CNN for small grayscale faces."""

    landmark_encoding = "overlay"
    supported_heads = ("gap", "flatten")

    def __init__(self, num_classes: int, in_channels: int, image_size: int,
                 head: Mapping[str, Any], use_landmarks: bool = False, num_modules: int = 5,
                 base_width: int = 16, stem_width: int = 8, padding: str = "symmetric",
                 bn_eps: float = 1e-5, bn_momentum: float = 0.1,
                 pretrained_path: str | None = None) -> None:
        super().__init__()
        norm = NormOptions(bn_eps=bn_eps, bn_momentum=bn_momentum, padding=padding)
        if num_modules < 1:
            raise ValueError(f"model.num_modules must be >= 1, got {num_modules}")
        minimum = self.min_image_size(num_modules)
        if image_size < minimum:
            raise ValueError(
                f"data.image_size={image_size} is too small for mini_xception with "
                f"model.num_modules={num_modules}: it needs data.image_size >= {minimum}"
            )
        self.use_landmarks = use_landmarks
        self.stem = nn.Sequential(
            conv_bn_relu(in_channels, stem_width, norm=norm),
            conv_bn_relu(stem_width, stem_width, norm=norm),
        )
        widths = [base_width * 2**i for i in range(num_modules)]
        self.modules_ = nn.Sequential(*[
            XceptionResidualModule(c_in, c_out, norm=norm)
            for c_in, c_out in zip([stem_width] + widths[:-1], widths, strict=True)
        ])
        side = self.feature_side(image_size, num_modules)
        self.head = ClassifierHead(widths[-1], num_classes, (side, side), **dict(head))
        path = pretrained_file(pretrained_path, "mini_xception", warn=False)
        if path is not None:
            load_whole_net(self, path)

    @staticmethod
    def feature_side(image_size: int, num_modules: int) -> int:
        """Side of the last feature map: the stem trims 2 px per conv, each module halves."""
        side = image_size - 2 * STEM_CONVS
        for _ in range(num_modules):
            side = (side + 1) // 2
        return side

    @staticmethod
    def min_image_size(num_modules: int) -> int:
        """Smallest input whose every residual module still downsamples a real map."""
        return 2 * STEM_CONVS + 2**num_modules

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.modules_(self.stem(image)))
