"""MSFPNModule: FERClassifier plus MS-FPN's (Zhang et al.) emotion-region detection loss
and metrics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torchmetrics import MeanMetric
from torchvision.ops import box_iou

from fer_lightning.checks import check_choice
from fer_lightning.data.landmarks.schema import REGION_NAMES
from fer_lightning.modules.classifier import STAGES, FERClassifier
from fer_lightning.nets.ms_fpn import MSFPN, MSFPNOutput

CLASSIFIER_BOXES = ("pseudo", "detected")


def paired_iou(boxes: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """IoU of each box with its own target: (..., 4) x (..., 4) -> (...)."""
    flat_boxes, flat_targets = boxes.reshape(-1, 4).float(), targets.reshape(-1, 4).float()
    ious = torch.stack([box_iou(a[None], b[None])[0, 0]
                        for a, b in zip(flat_boxes, flat_targets, strict=True)]) \
        if len(flat_boxes) else flat_boxes.new_zeros(0)
    return ious.view(boxes.shape[:-1])


class MSFPNModule(FERClassifier):
    """Trains :class:`~fer_lightning.nets.ms_fpn.MSFPN` (MS-FPN, Zhang et al.).

    Loss = ``emotion_weight`` * emotion loss (``cfg.loss``) + ``detection_weight`` *
    (objectness + RPN box + region class + region box), the detection terms computed
    against the pseudo-label boxes of the ``regions`` encoding over the samples whose
    ``regions_valid`` is True (the others add no detection loss). Sec. 3.2 writes the
    detection loss as classification + lambda * regression and makes its anchor
    classification term focal (the RPN objectness here); it gives no value for lambda
    and writes no emotion loss. ``+experiment=ms_fpn`` uses focal cross-entropy for the
    emotion loss too (our choice; ``loss=ce`` is plain cross-entropy) and weights 1 / 1
    (our choice).
    The regions are those of the ``regions`` encoding, ``REGION_NAMES`` order; the net
    must be built for as many.

    ``classifier_boxes`` chooses which boxes feed the organ / face branches in training:
    ``pseudo`` (default) uses the pseudo-label boxes where valid (detections elsewhere),
    so the region branches learn from the right crops from the first step instead of
    from an untrained detector's random boxes; ``detected`` trains on the detector's own
    boxes, as at inference. Validation and test always use the detector's boxes, never
    the landmarks (Sec. 3.1: the detector locates the regions, landmarks only give its
    training targets), and log the IoU of the best detection per region class with
    its pseudo-label box (``{stage}/iou_<region>`` and the mean ``{stage}/region_iou``).
    """

    def __init__(self, net: nn.Module, loss: nn.Module, class_names: Sequence[str],
                 optimizer: Mapping[str, Any], scheduler: Mapping[str, Any] | None = None,
                 detection_weight: float = 1.0, emotion_weight: float = 1.0,
                 classifier_boxes: str = "pseudo") -> None:
        super().__init__(net, loss, class_names, optimizer, scheduler)
        if not isinstance(net, MSFPN):
            raise ValueError(f"model.module=MSFPNModule trains model=ms_fpn, got "
                             f"{type(net).__name__}")
        if net.num_regions != len(REGION_NAMES):
            raise ValueError(f"model.num_regions={net.num_regions}, but the regions encoding "
                             f"gives {len(REGION_NAMES)} boxes {list(REGION_NAMES)}")
        check_choice("model.module.classifier_boxes", classifier_boxes, CLASSIFIER_BOXES)
        for key, value in (("detection_weight", detection_weight),
                           ("emotion_weight", emotion_weight)):
            if value < 0:
                raise ValueError(f"model.module.{key} must be >= 0, got {value}")
        self.detection_weight, self.emotion_weight = detection_weight, emotion_weight
        self.classifier_boxes = classifier_boxes
        self.region_iou = nn.ModuleDict({
            f"{stage}_{region}": MeanMetric() for stage in STAGES[1:] for region in REGION_NAMES
        })

    @property
    def detects_regions(self) -> bool:
        """False for the global-only network (``landmarks=none``)."""
        return self.net.detector is not None

    def _step(self, batch: Mapping[str, torch.Tensor], stage: str) -> torch.Tensor:
        training = stage == "train"
        output: MSFPNOutput = self.net.run(
            batch["image"], batch.get("regions"), batch.get("regions_valid"),
            detection_loss=training and self.detects_regions,
            pseudo_boxes=training and self.detects_regions and self.classifier_boxes == "pseudo")
        emotion = self.loss(output.logits, self._loss_target(batch))
        loss = self.emotion_weight * emotion
        size = len(output.logits)
        if output.losses:
            detection = sum(output.losses.values())
            loss = loss + self.detection_weight * detection
            self.log_dict({f"{stage}/det_{name}": value for name, value in output.losses.items()},
                          on_step=False, on_epoch=True, batch_size=size)
            self.log(f"{stage}/detection_loss", detection, on_epoch=True, batch_size=size)
            self.log(f"{stage}/emotion_loss", emotion, on_epoch=True, batch_size=size)
        self.log_loss(stage, loss, size)
        self.metrics[f"{stage}_metrics"].update(output.logits.detach(), batch["label"])
        if not training and output.detections is not None and "regions" in batch:
            self._update_region_iou(stage, output.detections.boxes, batch["regions"],
                                    batch["regions_valid"])
        return loss

    def _update_region_iou(self, stage: str, boxes: torch.Tensor, regions: torch.Tensor,
                           valid: torch.Tensor) -> None:
        if not bool(valid.any()):
            return
        ious = paired_iou(boxes[valid], regions[valid])
        for index, region in enumerate(REGION_NAMES):
            self.region_iou[f"{stage}_{region}"].update(ious[:, index])

    def _epoch_end(self, stage: str) -> None:
        super()._epoch_end(stage)
        if stage == "train" or not self.detects_regions:
            return
        metrics = [self.region_iou[f"{stage}_{region}"] for region in REGION_NAMES]
        if not any(metric.update_count for metric in metrics):
            return
        ious = {region: float(metric.compute()) for region, metric in
                zip(REGION_NAMES, metrics, strict=True)}
        for metric in metrics:
            metric.reset()
        mean = sum(ious.values()) / len(ious)
        self.log_dict({f"{stage}/iou_{region}": value for region, value in ious.items()})
        self.log(f"{stage}/region_iou", mean, prog_bar=True)
        self.results[stage]["region_iou"] = {**ious, "mean": mean}
