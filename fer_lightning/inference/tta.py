"""Test-time augmentation: several views of each face, logits averaged over the views.

- ``none``: the image as it is.
- ``flip``: the image and its mirror image (landmarks mirrored with the left/right index
  permutation of their scheme, as in training's flip augmentation).
- ``ten_crop``: the ten-crop protocol FER papers report on FER2013 and RAF-DB: the four
  corner crops and the centre crop, each ``crop`` of the side (0.92: 44 of 48 pixels),
  and their mirror images. FER papers train on random 44-pixel crops and classify the
  44-pixel crops directly; nets here are trained on whole faces at ``data.image_size``
  (with random scale 0.9-1.1 and shifts), so each crop is resized back to that size: a
  zoom of 1/0.92 = 1.09 with a shift, inside the range the nets saw in training.

Views are made from the raw batch (image in [0, 1] and landmarks in [0, 1] image
coordinates, before the landmark encoding), then each view goes through the run's own
batch transform, so an overlay, a heatmap or region boxes are rendered from the
transformed landmarks of that view: every family takes every mode, ``ms_fpn`` included.
Views are stacked along the batch (V * B samples); :func:`average_views` turns the
net's (V * B, K) logits back into (B, K). Logits are averaged (not probabilities), as
the published ten-crop evaluations do.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from fer_lightning.checks import check_choice
from fer_lightning.data.transforms import hflip_with_landmarks

TTA_MODES = ("none", "flip", "ten_crop")
#: Batch keys that describe the sample, not a view of it: never stacked.
PER_SAMPLE_KEYS = ("label", "target", "index")


def num_views(mode: str) -> int:
    """Views per sample of ``mode``."""
    check_choice("tta", mode, TTA_MODES)
    return {"none": 1, "flip": 2, "ten_crop": 10}[mode]


def crop_offsets(size: int, crop: int) -> list[tuple[int, int]]:
    """(left, top) of the four corner crops and the centre crop (torchvision's five_crop)."""
    far, centre = size - crop, int(round((size - crop) / 2.0))
    return [(0, 0), (far, 0), (0, far), (far, far), (centre, centre)]


def crop_and_resize(image: torch.Tensor, landmarks: torch.Tensor | None, left: int, top: int,
                    crop: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The ``crop`` x ``crop`` window at (left, top) of (B, C, S, S) images, resized back to
    S (bilinear); landmarks follow into the window's [0, 1] coordinates."""
    size = image.shape[-1]
    window = image[..., top:top + crop, left:left + crop]
    resized = F.interpolate(window, size=image.shape[-2:], mode="bilinear", align_corners=False)
    if landmarks is None:
        return resized, None
    offset = torch.tensor([left, top], dtype=landmarks.dtype, device=landmarks.device)
    return resized, (landmarks * size - offset) / crop


def views(image: torch.Tensor, landmarks: torch.Tensor | None, mode: str,
          crop: float = 0.92) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """The (image, landmarks) views of a raw batch for ``mode`` (module docstring)."""
    check_choice("tta", mode, TTA_MODES)
    if mode == "none":
        return [(image, landmarks)]
    everywhere = torch.ones(len(image), dtype=torch.bool, device=image.device)
    if mode == "flip":
        return [(image, landmarks), hflip_with_landmarks(image, landmarks, everywhere)]
    if not 0.0 < crop < 1.0:
        raise ValueError(f"tta_crop must be a fraction of the side in (0, 1), got {crop}")
    if image.shape[-1] != image.shape[-2]:
        raise ValueError(f"ten_crop needs square images, got {tuple(image.shape[-2:])}")
    side = max(1, round(image.shape[-1] * crop))
    crops = [crop_and_resize(image, landmarks, left, top, side)
             for left, top in crop_offsets(image.shape[-1], side)]
    return crops + [hflip_with_landmarks(view, points, everywhere) for view, points in crops]


class TestTimeAugmentation(nn.Module):
    """Wraps a run's batch transform: raw batch -> every view through ``transform``,
    stacked along the batch (per-view keys) with the per-sample keys kept once."""

    def __init__(self, transform: Any, mode: str, crop: float = 0.92) -> None:
        super().__init__()
        self.transform, self.mode, self.crop = transform, mode, crop
        self.views = num_views(mode)

    def forward(self, batch: dict[str, torch.Tensor], training: bool = False
                ) -> dict[str, torch.Tensor]:
        if self.mode == "none" or training:
            return self.transform(batch, training=training)
        outputs = []
        for image, landmarks in views(batch["image"], batch.get("landmarks"), self.mode,
                                      self.crop):
            view = dict(batch, image=image)
            if landmarks is not None:
                view["landmarks"] = landmarks
            outputs.append(self.transform(view, training=False))
        return {key: value if key in PER_SAMPLE_KEYS
                else torch.cat([output[key] for output in outputs])
                for key, value in outputs[0].items()}


def average_views(logits: torch.Tensor, views: int) -> torch.Tensor:
    """(V * B, K) logits of stacked views -> (B, K), the mean over the views."""
    return logits if views == 1 else logits.view(views, -1, logits.shape[-1]).mean(0)


class TestTimeAugmentedNet(nn.Module):
    """A net fed :class:`TestTimeAugmentation` batches: returns logits averaged over the
    views. ``run`` (ms_fpn's pass with detections) averages the logits and keeps the
    per-view detections, so region metrics cover every view."""

    def __init__(self, net: nn.Module, views: int) -> None:
        super().__init__()
        self.net, self.views = net, views

    @property
    def input_keys(self) -> tuple[str, ...]:
        return self.net.input_keys

    @property
    def detector(self) -> nn.Module | None:
        return getattr(self.net, "detector", None)

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        return average_views(self.net(**inputs), self.views)

    def run(self, *args: Any, **kwargs: Any) -> Any:
        output = self.net.run(*args, **kwargs)
        return dataclasses.replace(output, logits=average_views(output.logits, self.views))


class EvaluationTransform(nn.Module):
    """The run's batch transform with the dataset's labels mapped onto the checkpoint's
    classes (``remap``) and test-time augmentation views."""

    def __init__(self, transform: Any, mapping: Sequence[int] | None, num_classes: int,
                 tta: str, crop: float) -> None:
        super().__init__()
        self.augmentation = TestTimeAugmentation(transform, tta, crop)
        self.mapping = None if mapping is None else torch.as_tensor(list(mapping))
        self.num_classes = num_classes

    def forward(self, batch: dict[str, torch.Tensor], training: bool = False
                ) -> dict[str, torch.Tensor]:
        if self.mapping is not None:
            mapping = self.mapping.to(batch["label"].device)
            batch["label"] = mapping[batch["label"]]
            if "target" in batch:  # soft labels: columns to the checkpoint's order
                target = batch["target"].new_zeros(len(batch["target"]), self.num_classes)
                target[:, mapping] = batch["target"]
                batch["target"] = target
        return self.augmentation(batch, training=training)
