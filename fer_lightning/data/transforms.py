"""Batched, landmark-aware augmentation and the per-batch input pipeline.

Runs on whole batches after they reach the device (``on_after_batch_transfer``), so the
same code serves CPU workers and GPUs. Geometric augmentation moves the landmarks with
the pixels (kornia), and a horizontal flip also permutes left/right landmark indices.
Encodings are rendered after augmentation so drawn points stay on the face.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import kornia.augmentation as K
import torch
from torch import nn

from fer_lightning.data.encodings import (
    ENCODINGS,
    draw_heatmap,
    draw_overlay,
    landmark_coords,
    regions_from_landmarks,
)
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


class LandmarkAugment(nn.Module):
    """Random flip, rotation, scale and shift applied to images and their landmarks.

    Parameters are drawn per sample. Landmarks are (B, 68, 2) in [0, 1] image coordinates.
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

    def forward(self, image: torch.Tensor, landmarks: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        flip = torch.rand(image.shape[0], device=image.device) < self.hflip
        if flip.any():
            image, landmarks = hflip_with_landmarks(image, landmarks, flip)
        height, width = image.shape[-2:]
        if landmarks is None:
            no_points = torch.zeros(image.shape[0], 1, 2, device=image.device)
            return self.affine(image, no_points)[0], None
        size = torch.tensor([width, height], device=image.device, dtype=landmarks.dtype)
        image, points = self.affine(image, landmarks * size)
        return image, points / size


@dataclass
class BatchTransformConfig:
    """What the batch pipeline does, independent of the dataset."""

    augment: LandmarkAugment | None
    landmark_encoding: str | None  # None, or the encoding the net consumes (ENCODINGS)
    overlay_style: str = "points"
    overlay_groups: Sequence[str] | None = None  # facial parts the overlay draws; None: all
    heatmap_sigma: float = 1.0  # pixels of the network input
    heatmap_style: str = "gaussian"
    mean: float | Sequence[float] = 0.5  # per channel, or one value for all
    std: float | Sequence[float] = 0.5

    def __post_init__(self) -> None:
        if self.landmark_encoding not in (None, *ENCODINGS):
            raise ValueError(f"landmark encoding {self.landmark_encoding!r} is not available; "
                             f"known encodings: {list(ENCODINGS)}")


class BatchTransform(nn.Module):
    """Batch dict -> network inputs: augmentation (training only), the landmark encoding
    the net consumes (rendered after augmentation, so it matches the moved pixels), and
    normalisation of the image."""

    def __init__(self, config: BatchTransformConfig) -> None:
        super().__init__()
        self.config = config
        self.augment = config.augment

    def forward(self, batch: dict[str, torch.Tensor], training: bool) -> dict[str, torch.Tensor]:
        image, landmarks = batch["image"], batch.get("landmarks")
        if training and self.augment is not None:
            image, landmarks = self.augment(image, landmarks)
            if landmarks is not None:
                batch["landmarks"] = landmarks
        if self.config.landmark_encoding is not None and landmarks is not None:
            image = self._encode(batch, image, landmarks, batch["landmarks_valid"])
        batch["image"] = (image - self._per_channel(self.config.mean, image)) \
            / self._per_channel(self.config.std, image)
        return batch

    @staticmethod
    def _per_channel(value: float | Sequence[float], image: torch.Tensor) -> torch.Tensor:
        values = torch.as_tensor(value, dtype=image.dtype, device=image.device).flatten()
        if values.numel() not in (1, image.shape[1]):
            raise ValueError(f"data.mean / data.std have {values.numel()} values for "
                             f"{image.shape[1]}-channel images; give 1 or {image.shape[1]}")
        return values.view(1, -1, 1, 1)

    def _encode(self, batch: dict[str, torch.Tensor], image: torch.Tensor,
                landmarks: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Add the configured encoding to ``batch``; returns the (possibly drawn-on) image."""
        encoding, (height, width) = self.config.landmark_encoding, image.shape[-2:]
        if encoding == "overlay":
            return draw_overlay(image, landmarks, valid, style=self.config.overlay_style,
                                groups=self.config.overlay_groups)
        if encoding == "heatmap":
            batch["landmark_map"] = draw_heatmap(landmarks, valid, height, width,
                                                 sigma=self.config.heatmap_sigma,
                                                 style=self.config.heatmap_style)
        elif encoding == "coords":
            batch["coords"] = landmark_coords(landmarks, valid)
        elif encoding == "regions":
            batch["regions"], batch["regions_valid"] = regions_from_landmarks(
                landmarks, valid, height, width)
        return image
