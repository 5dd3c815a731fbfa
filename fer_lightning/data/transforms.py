"""Batched, landmark-aware augmentation and the per-batch input pipeline.

Runs on whole batches after they reach the device (``on_after_batch_transfer``), so the
same code serves CPU workers and GPUs. Geometric augmentation moves the landmarks and
the detector's face box with the pixels (kornia), and a horizontal flip also permutes
left/right landmark indices. Encodings are rendered after augmentation so drawn points
stay on the face; ``landmarks.draw_before_augment`` draws the overlay on the raw image
instead and augments it with the pixels.

Without a DataModule (inference), build the same transform from a run's config::

    transform = BatchTransform(net.landmark_encoding, LandmarksConfig.from_mapping(
        config["landmarks"]), mean=config["data"]["mean"], std=config["data"]["std"])
    batch = transform({"image": x, "landmarks": p, "landmarks_valid": v}, training=False)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import kornia.augmentation as K
import torch
from torch import nn

from fer_lightning.checks import check_choice
from fer_lightning.data.encodings import (
    draw_heatmap,
    draw_overlay,
    landmark_coords,
    regions_from_landmarks,
)
from fer_lightning.data.landmarks.config import ENCODINGS, LandmarksConfig, config_error
from fer_lightning.data.landmarks.schema import flip_permutation_for


def hflip_with_landmarks(image: torch.Tensor, landmarks: torch.Tensor | None,
                         flip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mirror the samples where ``flip`` (B,) is True; landmarks get x -> 1 - x and the
    left/right index permutation of their scheme (68 or 5 points), so point 36 is still
    the subject's right eye corner."""
    image = torch.where(flip[:, None, None, None], image.flip(-1), image)
    if landmarks is None:
        return image, None
    permutation = torch.as_tensor(flip_permutation_for(landmarks.shape[1]),
                                  device=landmarks.device)
    mirrored = landmarks[:, permutation].clone()
    mirrored[..., 0] = 1.0 - mirrored[..., 0]
    return image, torch.where(flip[:, None, None], mirrored, landmarks)


def hflip_boxes(boxes: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror (B, 4) xyxy boxes in [0, 1] where ``flip`` (B,) is True."""
    mirrored = torch.stack([1 - boxes[:, 2], boxes[:, 1], 1 - boxes[:, 0], boxes[:, 3]], 1)
    return torch.where(flip[:, None], mirrored, boxes)


def box_corners(boxes: torch.Tensor) -> torch.Tensor:
    """(B, 4) xyxy -> (B, 4, 2) corner points."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([torch.stack([x0, y0], -1), torch.stack([x1, y0], -1),
                        torch.stack([x1, y1], -1), torch.stack([x0, y1], -1)], 1)


def corners_to_boxes(corners: torch.Tensor) -> torch.Tensor:
    """(B, 4, 2) points -> (B, 4) xyxy boxes enclosing them (a rotated box's hull)."""
    return torch.cat([corners.amin(1), corners.amax(1)], -1)


class LandmarkAugment(nn.Module):
    """Random flip, rotation, scale and shift applied to images, their landmarks and
    their face boxes.

    Parameters are drawn per sample. Landmarks are (B, P, 2) and boxes (B, 4) xyxy, both
    in [0, 1] image coordinates; a box is moved as its four corners and becomes the
    axis-aligned box around them.
    """

    def __init__(self, hflip: float = 0.5, rotate: float = 10.0,
                 scale: Sequence[float] = (0.9, 1.1), translate: float = 0.05) -> None:
        super().__init__()
        if not 0.0 <= hflip <= 1.0:
            raise ValueError(f"data.augment.hflip must be a probability in [0, 1], got {hflip}")
        self.hflip = hflip
        self.affine = K.AugmentationSequential(
            K.RandomAffine(degrees=rotate, translate=(translate, translate), scale=tuple(scale),
                           padding_mode="border", p=1.0),
            data_keys=["input", "keypoints"],
        )

    def forward(self, image: torch.Tensor, landmarks: torch.Tensor | None,
                boxes: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(image, landmarks, boxes) after one random draw per sample."""
        flip = torch.rand(image.shape[0], device=image.device) < self.hflip
        if flip.any():
            image, landmarks = hflip_with_landmarks(image, landmarks, flip)
            boxes = None if boxes is None else hflip_boxes(boxes, flip)
        height, width = image.shape[-2:]
        parts = [points for points in (landmarks, None if boxes is None else box_corners(boxes))
                 if points is not None]
        if not parts:
            no_points = torch.zeros(image.shape[0], 1, 2, device=image.device)
            return self.affine(image, no_points)[0], None, None
        points = torch.cat(parts, 1)
        size = torch.tensor([width, height], device=image.device, dtype=points.dtype)
        image, moved = self.affine(image, points * size)
        moved = moved / size
        if landmarks is not None:
            landmarks, moved = moved[:, : landmarks.shape[1]], moved[:, landmarks.shape[1]:]
        return image, landmarks, None if boxes is None else corners_to_boxes(moved)


class BatchTransform(nn.Module):
    """Batch dict -> network inputs: augmentation (training only), the landmark encoding
    the net consumes (after augmentation, so it matches the moved pixels, or, for the
    overlay with ``landmarks.draw_before_augment``, before it), and normalisation.

    ``encoding``: what the net consumes (one of ``ENCODINGS``, None: nothing rendered);
    ``landmarks``: how encodings draw (defaults: ``LandmarksConfig()``); ``augment``:
    a ``LandmarkAugment`` or its keyword arguments (``data.augment``), None: none;
    ``mean`` / ``std``: one value or one per channel.
    """

    def __init__(self, encoding: str | None = None, landmarks: LandmarksConfig | None = None,
                 augment: LandmarkAugment | Mapping | None = None,
                 mean: float | Sequence[float] = 0.5, std: float | Sequence[float] = 0.5
                 ) -> None:
        super().__init__()
        if encoding is not None:
            check_choice("landmark encoding", encoding, ENCODINGS)
        self.encoding = encoding
        self.landmarks = landmarks if landmarks is not None else LandmarksConfig()
        if self.landmarks.draw_before_augment and encoding not in (None, "overlay"):
            raise config_error(f"landmarks.draw_before_augment=true draws the overlay "
                               f"encoding; this network consumes {encoding!r}: set "
                               f"landmarks.draw_before_augment=false")
        self.augment = LandmarkAugment(**augment) if isinstance(augment, Mapping) else augment
        self.mean = list(mean) if isinstance(mean, Sequence) else mean
        self.std = list(std) if isinstance(std, Sequence) else std

    def forward(self, batch: dict[str, torch.Tensor], training: bool) -> dict[str, torch.Tensor]:
        image, landmarks = batch["image"], batch.get("landmarks")
        encode = self.encoding is not None and landmarks is not None
        drawn_first = encode and self.encoding == "overlay" and self.landmarks.draw_before_augment
        if drawn_first:
            image = self._overlay(image, landmarks, batch["landmarks_valid"])
        if training and self.augment is not None:
            image, landmarks, face_box = self.augment(image, landmarks, batch.get("face_box"))
            if landmarks is not None:
                batch["landmarks"] = landmarks
            if face_box is not None:
                batch["face_box"] = face_box
        if encode and not drawn_first:
            image = self._encode(batch, image, landmarks, batch["landmarks_valid"])
        batch["image"] = (image - self._per_channel(self.mean, image)) \
            / self._per_channel(self.std, image)
        return batch

    @staticmethod
    def _per_channel(value: float | Sequence[float], image: torch.Tensor) -> torch.Tensor:
        values = torch.as_tensor(value, dtype=image.dtype, device=image.device).flatten()
        if values.numel() not in (1, image.shape[1]):
            raise ValueError(f"data.mean / data.std have {values.numel()} values for "
                             f"{image.shape[1]}-channel images; give 1 or {image.shape[1]}")
        return values.view(1, -1, 1, 1)

    def _overlay(self, image: torch.Tensor, landmarks: torch.Tensor,
                 valid: torch.Tensor) -> torch.Tensor:
        return draw_overlay(image, landmarks, valid, style=self.landmarks.overlay_style,
                            groups=self.landmarks.overlay_groups)

    def _encode(self, batch: dict[str, torch.Tensor], image: torch.Tensor,
                landmarks: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Add the configured encoding to ``batch``; returns the (possibly drawn-on) image."""
        height, width = image.shape[-2:]
        if self.encoding == "overlay":
            return self._overlay(image, landmarks, valid)
        if self.encoding == "heatmap":
            batch["landmark_map"] = draw_heatmap(landmarks, valid, height, width,
                                                 sigma=self.landmarks.heatmap_sigma,
                                                 style=self.landmarks.heatmap_style)
        elif self.encoding == "coords":
            batch["coords"] = landmark_coords(landmarks, valid)
        elif self.encoding == "regions":
            batch["regions"], batch["regions_valid"] = regions_from_landmarks(
                landmarks, valid, height, width, batch.get("face_box"),
                batch.get("face_box_valid"))
        return image
