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

from fer_lightning.data.encodings import draw_overlay
from fer_lightning.data.landmarks.schema import FLIP_PERMUTATION


def hflip_with_landmarks(image: torch.Tensor, landmarks: torch.Tensor | None,
                         flip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mirror the samples where ``flip`` (B,) is True; landmarks get x -> 1 - x and the
    left/right index permutation, so point 36 is still the subject's right eye corner."""
    image = torch.where(flip[:, None, None, None], image.flip(-1), image)
    if landmarks is None:
        return image, None
    permutation = torch.as_tensor(FLIP_PERMUTATION, device=landmarks.device)
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
    landmark_encoding: str | None  # None, or the encoding the net consumes ("overlay")
    overlay_style: str = "points"
    mean: float = 0.5
    std: float = 0.5


class BatchTransform(nn.Module):
    """Batch dict -> network inputs: augmentation (training only), encodings, normalisation."""

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
        if self.config.landmark_encoding == "overlay" and landmarks is not None:
            image = draw_overlay(image, landmarks, batch["landmarks_valid"],
                                 style=self.config.overlay_style)
        batch["image"] = (image - self.config.mean) / self.config.std
        return batch
