"""Landmarks -> what a network consumes. Rendered per batch, after augmentation.

So far: ``overlay``, the key-points drawn onto the face image (seed 001 Sec. 3.1).
"""

from __future__ import annotations

import torch

from fer_lightning.data.landmarks.schema import CONTOUR_SEGMENTS

OVERLAY_STYLES = ("points", "contours")
_CONTOUR_SAMPLES = 8  # points sampled along each contour segment


def _contour_points(landmarks: torch.Tensor) -> torch.Tensor:
    """(B, 68, 2) -> (B, S * T, 2) points sampled along each drawn segment."""
    segments = torch.as_tensor(CONTOUR_SEGMENTS, device=landmarks.device)
    start, end = landmarks[:, segments[:, 0]], landmarks[:, segments[:, 1]]
    t = torch.linspace(0, 1, _CONTOUR_SAMPLES, device=landmarks.device)[None, None, :, None]
    points = start[:, :, None] + t * (end - start)[:, :, None]
    return points.flatten(1, 2)


def draw_overlay(image: torch.Tensor, landmarks: torch.Tensor, valid: torch.Tensor,
                 style: str = "points", value: float = 1.0) -> torch.Tensor:
    """Return ``image`` (B, C, H, W) with landmarks painted in at ``value`` on every channel.

    ``landmarks`` are (B, 68, 2) in [0, 1] image coordinates; samples whose ``valid``
    flag is False are left untouched. Points that left the image during augmentation are
    not drawn. Vectorised over the batch, so it runs on the GPU as well as the CPU.
    """
    if style not in OVERLAY_STYLES:
        raise ValueError(f"landmarks.overlay_style must be one of {list(OVERLAY_STYLES)}, "
                         f"got {style!r}")
    points = landmarks
    if style == "contours":
        points = torch.cat([landmarks, _contour_points(landmarks)], 1)
    batch, channels, height, width = image.shape
    x = (points[..., 0] * width).floor().long()
    y = (points[..., 1] * height).floor().long()
    inside = (x >= 0) & (x < width) & (y >= 0) & (y < height) & valid[:, None]
    sample = torch.arange(batch, device=image.device)[:, None].expand_as(x)
    flat_index = (sample * height + y) * width + x
    canvas = image.permute(1, 0, 2, 3).reshape(channels, -1).clone()
    canvas[:, flat_index[inside]] = value
    return canvas.reshape(channels, batch, height, width).permute(1, 0, 2, 3).contiguous()
