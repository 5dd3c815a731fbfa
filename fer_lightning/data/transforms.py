"""Batched, landmark-aware augmentation and the per-batch input pipeline.

Runs on whole batches after they reach the device (``on_after_batch_transfer``), so the
same code serves CPU workers and GPUs. Geometric augmentation is one affine map per
sample (one ``grid_sample`` for the batch) that moves the landmarks and the detector's
face box with the pixels; a horizontal flip also permutes left/right landmark indices.
Encodings are rendered after augmentation so drawn points stay on the face;
``landmarks.draw_before_augment`` draws the overlay on the raw image instead and
augments it with the pixels.

Without a DataModule (inference), build the same transform from a run's config::

    transform = BatchTransform(net.landmark_encoding, LandmarksConfig.from_mapping(
        config["landmarks"]), mean=config["data"]["mean"], std=config["data"]["std"])
    batch = transform({"image": x, "landmarks": p, "landmarks_valid": v}, training=False)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fer_lightning.checks import check_choice
from fer_lightning.data.constants import device_constant
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
    permutation = device_constant(tuple(flip_permutation_for(landmarks.shape[1]).tolist()),
                                  landmarks, torch.long)
    mirrored = landmarks[:, permutation].clone()
    mirrored[..., 0] = 1.0 - mirrored[..., 0]
    return image, torch.where(flip[:, None, None], mirrored, landmarks)


def box_corners(boxes: torch.Tensor) -> torch.Tensor:
    """(B, 4) xyxy -> (B, 4, 2) corner points."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([torch.stack([x0, y0], -1), torch.stack([x1, y0], -1),
                        torch.stack([x1, y1], -1), torch.stack([x0, y1], -1)], 1)


def corners_to_boxes(corners: torch.Tensor) -> torch.Tensor:
    """(B, 4, 2) points -> (B, 4) xyxy boxes enclosing them (a rotated box's hull)."""
    return torch.cat([corners.amin(1), corners.amax(1)], -1)


def draw_augment_parameters(batch: int, hflip: float, rotate: float,
                            scale: Sequence[float], translate: float,
                            device: torch.device | str = "cpu",
                            generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """One random draw per sample, on ``device`` without a host round trip.

    ``flip`` (B,) bool with probability ``hflip``; ``angle`` (B,) degrees uniform in
    [-rotate, rotate]; ``scale`` (B,) uniform in ``scale`` (isotropic); ``shift`` (B, 2)
    uniform in [-translate, translate] as a fraction of the width / height. These are the
    distributions of kornia's ``RandomAffine(degrees, translate, scale)`` that this
    module replaced, plus an independent flip.
    """
    uniform = torch.rand(batch, 5, device=device, generator=generator)
    low, high = float(scale[0]), float(scale[1])
    return {"flip": uniform[:, 0] < hflip,
            "angle": (2 * uniform[:, 1] - 1) * rotate,
            "scale": low + (high - low) * uniform[:, 2],
            "shift": (2 * uniform[:, 3:5] - 1) * translate}


def affine_matrices(params: Mapping[str, torch.Tensor], height: int, width: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(forward, inverse) (B, 3, 3) maps of continuous pixel coordinates (pixel ``i``
    spans [i, i + 1)): flip about the vertical axis, then rotate by ``angle`` and scale
    about the image centre, then shift. A positive angle turns the image clockwise on
    screen (y points down), as kornia's ``RandomAffine`` does. ``forward`` moves points,
    ``inverse`` says where each output pixel samples the input. Both are built in closed
    form, so nothing is inverted (``torch.linalg.inv`` checks for singular matrices with a
    host sync)."""
    angle = torch.deg2rad(params["angle"])
    cos, sin, scale = torch.cos(angle), torch.sin(angle), params["scale"]
    sign = 1.0 - 2.0 * params["flip"].to(angle.dtype)  # -1: mirrored
    size = device_constant((width, height), angle)
    centre = size / 2
    target = centre + params["shift"] * size
    # forward: p' = R S (F p - c) + c + shift, with F p = (sign * (x - c_x) + c_x, y) and
    # R = [[cos, -sin], [sin, cos]] (clockwise on screen for a positive angle)
    linear = torch.stack([torch.stack([cos * sign, -sin], -1),
                          torch.stack([sin * sign, cos], -1)], -2) * scale[:, None, None]
    forward = _homogeneous(linear, target - (linear @ centre))
    # inverse: p = F (R^T (p' - target) / s) + c; F is its own inverse
    inverse_linear = torch.stack([torch.stack([cos * sign, sin * sign], -1),
                                  torch.stack([-sin, cos], -1)], -2) / scale[:, None, None]
    inverse = _homogeneous(inverse_linear, centre - (inverse_linear @ target[..., None])[..., 0])
    return forward, inverse


def _homogeneous(linear: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """(B, 2, 2) linear part and (B, 2) offset -> (B, 3, 3) affine matrix."""
    top = torch.cat([linear, offset[..., None]], -1)
    bottom = device_constant((0.0, 0.0, 1.0), top).expand(top.shape[0], 1, 3)
    return torch.cat([top, bottom], 1)


def warp_images(image: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """Resample (B, C, H, W) ``image`` through per-sample pixel maps ``inverse``
    (output -> input, see ``affine_matrices``) in one ``affine_grid`` + ``grid_sample``:
    bilinear, border padding, ``align_corners=False`` (normalised -1 and 1 are the
    image's outer edges, so [0, 1] landmark coordinates map linearly)."""
    height, width = image.shape[-2:]
    to_unit = device_constant(((2.0 / width, 0.0, -1.0), (0.0, 2.0 / height, -1.0),
                               (0.0, 0.0, 1.0)), inverse)
    from_unit = device_constant(((width / 2.0, 0.0, width / 2.0),
                                 (0.0, height / 2.0, height / 2.0), (0.0, 0.0, 1.0)), inverse)
    theta = (to_unit @ inverse @ from_unit)[:, :2].to(image.dtype)
    grid = F.affine_grid(theta, list(image.shape), align_corners=False)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border",
                         align_corners=False)


def move_points(points: torch.Tensor, forward: torch.Tensor, height: int, width: int
                ) -> torch.Tensor:
    """(B, P, 2) points in [0, 1] image coordinates through pixel maps ``forward``."""
    size = device_constant((width, height), points)
    pixels = points * size
    moved = pixels @ forward[:, :2, :2].transpose(1, 2).to(points.dtype) \
        + forward[:, None, :2, 2].to(points.dtype)
    return moved / size


class LandmarkAugment(nn.Module):
    """Random flip, rotation, scale and shift applied to images, their landmarks and
    their face boxes as one affine map per sample.

    Parameters are drawn per sample on the batch's device (``draw_augment_parameters``);
    the image is resampled once (``warp_images``) and the same matrices move the
    landmarks and the boxes, so a point stays on the pixel it marked. A flip also
    permutes the left/right landmark indices of the scheme (68 or 5 points). Landmarks
    are (B, P, 2) and boxes (B, 4) xyxy, both in [0, 1] image coordinates; a box is
    moved as its four corners and becomes the axis-aligned box around them.
    """

    def __init__(self, hflip: float = 0.5, rotate: float = 10.0,
                 scale: Sequence[float] = (0.9, 1.1), translate: float = 0.05) -> None:
        super().__init__()
        if not 0.0 <= hflip <= 1.0:
            raise ValueError(f"data.augment.hflip must be a probability in [0, 1], got {hflip}")
        if len(scale) != 2 or not 0 < scale[0] <= scale[1]:
            raise ValueError(f"data.augment.scale must be [low, high] with 0 < low <= high, "
                             f"got {list(scale)}")
        self.hflip, self.rotate, self.translate = hflip, float(rotate), float(translate)
        self.scale = (float(scale[0]), float(scale[1]))

    def draw(self, batch: int, device: torch.device | str = "cpu",
             generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """This augmentation's parameters for ``batch`` samples (see
        ``draw_augment_parameters``)."""
        return draw_augment_parameters(batch, self.hflip, self.rotate, self.scale,
                                       self.translate, device, generator)

    def forward(self, image: torch.Tensor, landmarks: torch.Tensor | None,
                boxes: torch.Tensor | None = None,
                params: Mapping[str, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(image, landmarks, boxes) after one random draw per sample (or ``params``)."""
        params = self.draw(image.shape[0], image.device) if params is None else params
        height, width = image.shape[-2:]
        forward, inverse = affine_matrices(params, height, width)
        image = warp_images(image, inverse)
        if landmarks is not None:
            landmarks = move_points(landmarks, forward, height, width)
            if self.hflip > 0:
                landmarks = self._relabel_flipped(landmarks, params["flip"])
        if boxes is not None:
            boxes = corners_to_boxes(move_points(box_corners(boxes), forward, height, width))
        return image, landmarks, boxes

    def _relabel_flipped(self, landmarks: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        """Mirrored samples swap left/right point indices, so point 36 stays the
        subject's right eye corner."""
        permutation = device_constant(tuple(flip_permutation_for(landmarks.shape[1]).tolist()),
                                      landmarks, torch.long)
        return torch.where(flip[:, None, None], landmarks[:, permutation], landmarks)


def _shares_memory(tensor: torch.Tensor, other: torch.Tensor) -> bool:
    """Whether ``tensor`` lives in ``other``'s buffer (is it, or a view of it)."""
    return tensor.untyped_storage().data_ptr() == other.untyped_storage().data_ptr()


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
        if not image.is_floating_point():  # uint8 batches become [0, 1] floats on the device
            image = image.float().div_(255)
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
        mean, std = self._per_channel(self.mean, image), self._per_channel(self.std, image)
        if _shares_memory(image, batch["image"]):  # the caller's tensor: left as it was
            batch["image"] = (image - mean) / std
        else:  # a buffer made above: normalised in place, two passes without allocating
            batch["image"] = image.sub_(mean).div_(std)
        return batch

    @staticmethod
    def _per_channel(value: float | Sequence[float], image: torch.Tensor) -> torch.Tensor:
        values = device_constant(tuple(value) if isinstance(value, Sequence) else value,
                                 image).flatten()
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
