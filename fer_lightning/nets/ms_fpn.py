"""MS-FPN (Zhang et al.): ResNet-FPN, emotion-region detection, multi-scale features.

Three parts, each built from timm / torchvision.ops pieces:

- **Backbone + FPN** (Sec. 3.1): a timm ResNet with ``features_only`` gives C3..C5; a
  RetinaNet-style ``FeaturePyramidNetwork`` gives P3..P5 (no P2: "we generate P3
  directly from C3") and ``LastLevelP6P7`` adds P6 = 3x3 stride-2 conv and P7 = 3x3
  stride-2 conv on ReLU(P6). The paper does not say what P6 reads; we take C5
  (RetinaNet, Lin et al. 2017) unless ``p6_from="p5"``. Which ResNet the paper's
  "modified ResNet" is, it does not say (``backbone``).
- **Emotion-region detection** (Sec. 3.1, "based on Fast RCNN"; Sec. 4.3 says Faster
  RCNN): :class:`EmotionRegionDetector`. Nine anchors per position on every level
  (ratios {1:1, 2:1, 1:2} x scales {2^0, 2^(1/3), 2^(2/3)}, Sec. 3.1; the base anchor
  side, 4 x stride, is RetinaNet's: the paper gives none), an RPN head proposing boxes
  (torchvision's BoxCoder, Matcher, sampler, batched NMS), RoIAlign of the proposals
  over P3..P7 with the level rule k = k0 + log2(sqrt(wh) / 224), k0 = 4 (Sec. 3.3;
  ``MultiScaleRoIAlign``), a residual block, GAP and two FC heads: region class
  (background + ``num_regions`` region classes) and per-class box regression (Sec. 3.1).
  It only localises regions; it never sees the emotion label.
- **Multi-scale feature learning** (Sec. 3.3): (1) the organ boxes RoIAligned from P3
  at 14x14, (2) the face box from P3 at 56x56, each after a 1x1 conv and followed by a
  residual block and GAP; (3) the whole P3 map through a residual block and GAP. The
  vectors are concatenated (organs in a fixed order), then dropout (Sec. 4.2: "the drop
  value was 0.5") and the classifier.

Our choices where the paper is silent: the 1x1 conv of branches (1) and (2) is applied
to P3 before RoIAlign (both are linear, so the result is the same up to samples falling
outside the map, at a fraction of the cost of a 1x1 conv on 56x56 crops); its width
(``branch_channels``); residual blocks are ResNet bottlenecks (timm's), width =
channels / 4; organ vectors are concatenated, not pooled together.

Regions: ``num_regions`` boxes per image, the face first, then the organs (the order
of the ``regions`` encoding, ``data/landmarks/schema.py``: face, left eye, right eye,
nose, mouth, so ``num_regions=5``). The paper's pseudo-targets are the face and the
"eye, nose and mouth corner positions" (Sec. 3.1); the boxes around them are ours.

With ``use_landmarks=False`` (``landmarks=none``) only the global branch (3) is built:
no detector, no region branches, no detection loss.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import timm
import torch
import torch.nn.functional as F
from timm.models.resnet import Bottleneck
from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss
from torchvision.models.detection.rpn import (
    RegionProposalNetwork,
    RPNHead,
    concat_box_prediction_layers,
)
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign, roi_align, sigmoid_focal_loss
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from fer_lightning.checks import check_choice
from fer_lightning.nets.base import FERNet
from fer_lightning.nets.heads import mlp
from fer_lightning.nets.pretrained import pretrained_file

LEVELS = ("p3", "p4", "p5", "p6", "p7")
STRIDES = (8, 16, 32, 64, 128)
ASPECT_RATIOS = (0.5, 1.0, 2.0)  # height / width: 1:2, 1:1, 2:1
ANCHOR_SCALES = (1.0, 2 ** (1 / 3), 2 ** (2 / 3))
P6_SOURCES = ("c5", "p5")
MIN_IMAGE_SIZE = 32  # C5 (stride 32) must keep at least one pixel


def residual_block(channels: int) -> Bottleneck:
    """A ResNet bottleneck block that keeps ``channels`` (1x1 -> 3x3 -> 1x1, identity add)."""
    if channels % 4:
        raise ValueError(f"residual block channels must be divisible by 4, got {channels}")
    return Bottleneck(channels, channels // 4)


class PooledBlock(nn.Sequential):
    """Residual block -> global average pooling -> (N, channels)."""

    def __init__(self, channels: int) -> None:
        super().__init__(residual_block(channels), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def anchor_generator(anchor_scale: float) -> AnchorGenerator:
    """Nine anchors per position on each of P3..P7: side ``anchor_scale * stride`` times
    {2^0, 2^(1/3), 2^(2/3)}, aspect ratios {1:2, 1:1, 2:1} (MS-FPN, Zhang et al.,
    Sec. 3.1; ``anchor_scale`` is not given there: RetinaNet uses 4)."""
    sizes = tuple(tuple(anchor_scale * stride * scale for scale in ANCHOR_SCALES)
                  for stride in STRIDES)
    return AnchorGenerator(sizes=sizes, aspect_ratios=(ASPECT_RATIOS,) * len(STRIDES))


@dataclass
class DetectorConfig:
    """Detector hyper-parameters (none given by the paper). Torchvision's Faster R-CNN
    values except where the task differs: five objects per image need far fewer sampled
    RoIs than COCO's 512; ``objectness_gamma`` is our choice (Lin et al.'s 2)."""

    anchor_scale: float = 4.0
    roi_channels: int = 128
    roi_size: int = 7
    rpn_fg_iou: float = 0.7
    rpn_bg_iou: float = 0.3
    rpn_batch_size: int = 256
    rpn_positive_fraction: float = 0.5
    rpn_pre_nms_top_n: int = 1000
    rpn_post_nms_top_n: Mapping[str, int] = field(
        default_factory=lambda: {"training": 300, "testing": 100})
    rpn_nms: float = 0.7
    roi_fg_iou: float = 0.5
    roi_bg_iou: float = 0.5
    roi_batch_size: int = 32
    roi_positive_fraction: float = 0.25
    objectness_gamma: float = 2.0


def detector_config(values: Mapping | None) -> DetectorConfig:
    """``model.detector`` as a DetectorConfig; an unknown key is an error naming it."""
    values = dict(values or {})
    known = set(DetectorConfig.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"model.detector has unknown keys {unknown}; known keys: {sorted(known)}")
    return DetectorConfig(**values)


@dataclass
class Detections:
    """Best-scoring box per region class: ``boxes`` (B, R, 4) xyxy pixels, ``scores``
    (B, R); a class with no candidate gets the whole image and score 0."""

    boxes: torch.Tensor
    scores: torch.Tensor


class EmotionRegionDetector(nn.Module):
    """Two-stage detector of ``num_regions`` emotion regions on P3..P7 (MS-FPN Sec. 3.1).

    Stage 1, an RPN: objectness + box deltas for the nine anchors of every position,
    decoded with BoxCoder, filtered with batched NMS per level. Its objectness loss is
    the paper's focal cross-entropy, which Sec. 3.2 writes for exactly this term: anchor
    labels p* in {0, 1}, -(1 - p_t)^gamma log p_t (``objectness_gamma``; 0 gives plain
    BCE). Stage 2, Fast R-CNN: MultiScaleRoIAlign of the proposals, a residual block, GAP,
    and ``FastRCNNPredictor``'s two FC layers (region classes with background = 0, box
    deltas).
    """

    def __init__(self, channels: int, config: DetectorConfig, num_regions: int) -> None:
        super().__init__()
        self.config = config
        self.num_regions = num_regions
        anchors = anchor_generator(config.anchor_scale)
        top_n = {"training": config.rpn_pre_nms_top_n, "testing": config.rpn_pre_nms_top_n}
        self.rpn = RegionProposalNetwork(
            anchors, RPNHead(channels, anchors.num_anchors_per_location()[0]),
            config.rpn_fg_iou, config.rpn_bg_iou, config.rpn_batch_size,
            config.rpn_positive_fraction, top_n, dict(config.rpn_post_nms_top_n),
            config.rpn_nms)
        # The 1x1 conv before the RoI residual block runs on the pyramid, before RoIAlign
        # (both linear: same result, a fraction of the cost on hundreds of RoIs).
        self.reduce = nn.Conv2d(channels, config.roi_channels, 1)
        self.roi_heads = RoIHeads(
            MultiScaleRoIAlign(list(LEVELS), config.roi_size, sampling_ratio=2),
            PooledBlock(config.roi_channels),
            FastRCNNPredictor(config.roi_channels, num_regions + 1),
            config.roi_fg_iou, config.roi_bg_iou, config.roi_batch_size,
            config.roi_positive_fraction, None, score_thresh=0.0, nms_thresh=0.5,
            detections_per_img=100)

    def forward(self, image: torch.Tensor, features: Mapping[str, torch.Tensor],
                regions: torch.Tensor | None = None, regions_valid: torch.Tensor | None = None,
                detect: bool = True) -> tuple[Detections | None, dict[str, torch.Tensor]]:
        """Detections of every sample (when ``detect``) and, when ``regions`` are given,
        the four detection losses over the samples whose ``regions_valid`` is True."""
        sizes = [tuple(image.shape[-2:])] * len(image)
        levels = [features[name] for name in LEVELS]
        objectness, deltas = self.rpn.head(levels)
        anchors = self.rpn.anchor_generator(ImageList(image, sizes), levels)
        per_level = [o[0].numel() for o in objectness]
        objectness, deltas = concat_box_prediction_layers(objectness, deltas)
        decoded = self.rpn.box_coder.decode(deltas.detach(), anchors).view(len(image), -1, 4)
        proposals, _ = self.rpn.filter_proposals(decoded, objectness, sizes, per_level)
        losses: dict[str, torch.Tensor] = {}
        if regions is not None:
            valid = regions_valid if regions_valid is not None else \
                torch.ones(len(image), dtype=torch.bool, device=image.device)
            losses = self._losses(features, proposals, objectness.view(len(image), -1),
                                  deltas.view(len(image), -1, 4), anchors, regions, valid, sizes)
        detections = self._detect(features, proposals, sizes) if detect else None
        return detections, losses

    def targets(self, regions: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Per-image torchvision targets: the region boxes with labels 1..R (0 = background)."""
        labels = torch.arange(1, self.num_regions + 1, device=regions.device)
        return [{"boxes": boxes.float(), "labels": labels} for boxes in regions]

    def _losses(self, features: Mapping[str, torch.Tensor], proposals: list[torch.Tensor],
                objectness: torch.Tensor, deltas: torch.Tensor, anchors: list[torch.Tensor],
                regions: torch.Tensor, valid: torch.Tensor, sizes: list[tuple[int, int]]
                ) -> dict[str, torch.Tensor]:
        keep = valid.nonzero().flatten().tolist()
        if not keep:  # zero, but still a function of every detector weight (DDP needs it)
            zero = sum(p.sum() for p in self.parameters()) * 0.0
            return {name: zero for name in ("objectness", "rpn_box", "region_class",
                                            "region_box")}
        targets = self.targets(regions[keep])
        labels, matched = self.rpn.assign_targets_to_anchors([anchors[i] for i in keep],
                                                             targets)
        regression = self.rpn.box_coder.encode(matched, [anchors[i] for i in keep])
        objectness_loss, rpn_box_loss = self._rpn_loss(objectness[keep].flatten(),
                                                       deltas[keep].reshape(-1, 4),
                                                       labels, regression)
        boxes, _, classes, box_targets = self.roi_heads.select_training_samples(
            [proposals[i] for i in keep], targets)
        class_logits, box_regression = self._classify_boxes(
            {name: level[keep] for name, level in features.items()}, boxes,
            [sizes[i] for i in keep])
        class_loss, box_loss = fastrcnn_loss(class_logits.float(), box_regression.float(),
                                             classes, box_targets)
        return {"objectness": objectness_loss, "rpn_box": rpn_box_loss,
                "region_class": class_loss, "region_box": box_loss}

    def _rpn_loss(self, objectness: torch.Tensor, deltas: torch.Tensor,
                  labels: list[torch.Tensor], regression: list[torch.Tensor]
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """torchvision's RPN loss with the objectness BCE replaced by the paper's focal
        cross-entropy -(1 - p_t)^gamma log p_t over the sampled anchors (MS-FPN Sec. 3.2)."""
        positive, negative = self.rpn.fg_bg_sampler(labels)
        positive = torch.cat(positive).nonzero().flatten()
        negative = torch.cat(negative).nonzero().flatten()
        sampled = torch.cat([positive, negative])
        labels_, regression_ = torch.cat(labels), torch.cat(regression)
        box_loss = F.smooth_l1_loss(deltas[positive].float(), regression_[positive],
                                    beta=1 / 9, reduction="sum") / sampled.numel()
        objectness_loss = sigmoid_focal_loss(objectness[sampled].float(), labels_[sampled],
                                             alpha=-1, gamma=self.config.objectness_gamma,
                                             reduction="mean")
        return objectness_loss, box_loss

    def _classify_boxes(self, features: Mapping[str, torch.Tensor], boxes: list[torch.Tensor],
                        sizes: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        reduced = {name: self.reduce(level) for name, level in features.items()}
        pooled = self.roi_heads.box_roi_pool(reduced, boxes, sizes)
        return self.roi_heads.box_predictor(self.roi_heads.box_head(pooled))

    @torch.no_grad()
    def _detect(self, features: Mapping[str, torch.Tensor], proposals: list[torch.Tensor],
                sizes: list[tuple[int, int]]) -> Detections:
        """Best-scoring decoded box of each region class per image (no NMS needed: NMS
        never removes the top-scoring box of a class)."""
        class_logits, box_regression = self._classify_boxes(features, proposals, sizes)
        scores = class_logits.float().softmax(-1)
        decoded = self.roi_heads.box_coder.decode(box_regression.float(), proposals)
        height, width = sizes[0]
        whole = decoded.new_tensor([0.0, 0.0, width, height])
        boxes = whole.repeat(len(proposals), self.num_regions, 1)
        best_scores = scores.new_zeros(len(proposals), self.num_regions)
        start = 0
        for index, count in enumerate(len(p) for p in proposals):
            if count:
                image_scores = scores[start:start + count, 1:]
                best, which = image_scores.max(0)
                chosen = decoded[start:start + count, 1:][which, torch.arange(len(which))]
                boxes[index] = chosen
                best_scores[index] = best
            start += count
        boxes[..., 0::2] = boxes[..., 0::2].clamp(0, width)
        boxes[..., 1::2] = boxes[..., 1::2].clamp(0, height)
        return Detections(boxes, best_scores)


@dataclass
class MSFPNOutput:
    """What one pass gives: emotion ``logits``, the ``detections`` (None without the
    detector), the detection ``losses`` (empty unless targets were given) and the boxes
    the classifier branches actually used (``classifier_boxes``)."""

    logits: torch.Tensor
    detections: Detections | None = None
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    classifier_boxes: torch.Tensor | None = None


class MSFPN(FERNet):
    """The MS-FPN network (module docstring). ``forward(image)`` returns emotion logits
    with the regions found by the detector; :meth:`run` also takes the pseudo-label boxes
    (training targets, and optionally the classifier's boxes)."""

    input_keys = ("image",)  # what forward reads; regions are training targets
    landmark_encoding = "regions"
    supported_heads = ("gap",)

    def __init__(self, num_classes: int, in_channels: int, image_size: int,
                 head: Mapping[str, Any], use_landmarks: bool = False,
                 backbone: str = "resnet50", pretrained_path: str | None = None,
                 fpn_channels: int = 256, p6_from: str = "c5", branch_channels: int = 128,
                 organ_roi_size: int = 14, face_roi_size: int = 56,
                 detector: Mapping[str, Any] | None = None, num_regions: int = 5) -> None:
        super().__init__()
        check_choice("model.p6_from", p6_from, P6_SOURCES)
        if num_regions < 2:
            raise ValueError(f"model.num_regions must be >= 2 (the face and at least one "
                             f"organ), got {num_regions}")
        self.num_regions = num_regions
        if image_size < MIN_IMAGE_SIZE:
            raise ValueError(f"data.image_size={image_size} is too small for ms_fpn: it needs "
                             f"data.image_size >= {MIN_IMAGE_SIZE} (C5 has stride 32)")
        head = dict(head)
        if head.get("pool", "gap") != "gap":
            raise ValueError(f"model=ms_fpn supports head.pool in {list(self.supported_heads)}, "
                             f"got {head.get('pool')!r}")
        self.use_landmarks = use_landmarks
        self.backbone = self._backbone(backbone, in_channels, pretrained_path)
        channels = self.backbone.feature_info.channels()
        p6_in = channels[-1] if p6_from == "c5" else fpn_channels
        self.fpn = FeaturePyramidNetwork(channels, fpn_channels,
                                         extra_blocks=LastLevelP6P7(p6_in, fpn_channels))
        if p6_from == "c5" and p6_in == fpn_channels:
            raise ValueError(f"model.p6_from=c5 needs C5 channels ({p6_in}) != "
                             f"model.fpn_channels ({fpn_channels}): torchvision's "
                             "LastLevelP6P7 then reads P5")
        self.global_branch = PooledBlock(fpn_channels)
        features = fpn_channels
        self.detector: EmotionRegionDetector | None = None
        #: The region detector picks boxes image by image (FERNet.per_image_graph).
        self.per_image_graph = use_landmarks
        if use_landmarks:
            self.detector = EmotionRegionDetector(fpn_channels, detector_config(detector),
                                                  num_regions)
            self.organ_reduce = nn.Conv2d(fpn_channels, branch_channels, 1)
            self.face_reduce = nn.Conv2d(fpn_channels, branch_channels, 1)
            self.organ_branch = PooledBlock(branch_channels)
            self.face_branch = PooledBlock(branch_channels)
            self.organ_roi_size, self.face_roi_size = organ_roi_size, face_roi_size
            features += branch_channels * num_regions  # the organs + the face
        self.classifier = mlp(features, head.get("hidden", ()), num_classes,
                              head.get("dropout", 0.0))

    @staticmethod
    def _backbone(name: str, in_channels: int, pretrained_path: str | None) -> nn.Module:
        """timm ResNet C3..C5; weights from ``pretrained_path`` (a local file, loaded by
        timm, which adapts the first conv to ``in_channels``)."""
        path = pretrained_file(pretrained_path, f"the {name} backbone of ms_fpn")
        try:
            return timm.create_model(
                name, features_only=True, out_indices=(2, 3, 4), in_chans=in_channels,
                pretrained=path is not None,
                pretrained_cfg_overlay={"file": str(path)} if path is not None else None)
        except RuntimeError as error:
            if "Unknown model" in str(error):
                raise ValueError(f"model.backbone={name!r} is not a timm model "
                                 "(e.g. resnet18, resnet34, resnet50, resnet101)") from None
            raise

    def pyramid(self, image: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        """P3..P7, keyed ``p3``..``p7``."""
        c3, c4, c5 = self.backbone(image)
        return self.fpn(OrderedDict([("p3", c3), ("p4", c4), ("p5", c5)]))

    def region_features(self, p3: torch.Tensor, boxes: torch.Tensor, image_width: int
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, R - 1, C, 14, 14) organ and (B, C, 56, 56) face RoI features from P3;
        ``boxes`` (B, R, 4) xyxy pixels, the face first."""
        scale = p3.shape[-1] / image_width
        organs = roi_align(self.organ_reduce(p3), list(boxes[:, 1:].float()),
                           self.organ_roi_size, spatial_scale=scale, sampling_ratio=-1,
                           aligned=True)
        face = roi_align(self.face_reduce(p3), list(boxes[:, :1].float()), self.face_roi_size,
                         spatial_scale=scale, sampling_ratio=-1, aligned=True)
        return organs.view(len(p3), self.num_regions - 1, *organs.shape[1:]), face

    def run(self, image: torch.Tensor, regions: torch.Tensor | None = None,
            regions_valid: torch.Tensor | None = None, detection_loss: bool = False,
            pseudo_boxes: bool = False) -> MSFPNOutput:
        """One pass. ``detection_loss`` computes the detector's losses against ``regions``
        (samples with ``regions_valid`` False are left out); ``pseudo_boxes`` feeds the
        classifier branches ``regions`` instead of detections where they are valid."""
        pyramid = self.pyramid(image)
        p3 = pyramid["p3"]
        parts = [self.global_branch(p3)]
        if self.detector is None:
            return MSFPNOutput(self.classifier(torch.cat(parts, 1)))
        if (detection_loss or pseudo_boxes) and regions is None:
            raise ValueError("ms_fpn needs batch['regions'] for detection training "
                             "(landmarks on and the `regions` encoding)")
        valid = regions_valid if regions_valid is not None else \
            torch.ones(len(image), dtype=torch.bool, device=image.device)
        need_detections = not pseudo_boxes or not bool(valid.all())
        detections, losses = self.detector(image, pyramid, regions if detection_loss else None,
                                           valid, detect=need_detections)
        if pseudo_boxes:
            boxes = regions if detections is None else \
                torch.where(valid[:, None, None], regions, detections.boxes)
        else:
            boxes = detections.boxes
        boxes = boxes.detach()
        organs, face = self.region_features(p3, boxes, image.shape[-1])
        parts.append(self.organ_branch(organs.flatten(0, 1)).view(len(image), -1))
        parts.append(self.face_branch(face))
        logits = self.classifier(torch.cat(parts, 1))
        return MSFPNOutput(logits, detections, losses, boxes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Emotion logits; regions come from the detector (inference, Sec. 3.1)."""
        return self.run(image).logits

