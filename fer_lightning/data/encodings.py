"""Landmarks -> what a network consumes. Rendered per batch (see ``BatchTransform``).

- ``overlay``: the key-points drawn onto the face image (key-point mini-Xception,
  Selvam et al., Sec. 3.1).
- ``heatmap``: a separate landmark image, a Gaussian per point or drawn contours (the
  landmark input of MBA, Colaco & Han, Sec. II), batch key ``landmark_map`` (B, 1, H, W).
- ``coords``: the points themselves, (B, P, 2) in [0, 1], zeros where invalid.
- ``regions``: boxes of face, left eye, right eye, nose and mouth from 68 or 5 points
  (and the detector's face box where the backend gives one): the pseudo-labels of the
  MS-FPN emotion-region detector (Zhang et al., Sec. 3.1), batch keys ``regions``
  (B, 5, 4) xyxy in pixels and ``regions_valid`` (B,).

All of them are vectorised over the batch, so they run on the GPU as well as the CPU,
without boolean-mask indexing (which waits for the device to count the kept items).
Their option values and defaults live in ``LandmarksConfig`` (docs/landmarks.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from fer_lightning.checks import check_choice
from fer_lightning.data.constants import device_constant
from fer_lightning.data.landmarks.config import (  # noqa: F401  (ENCODINGS re-exported)
    ENCODINGS,
    HEATMAP_STYLES,
    OVERLAY_STYLES,
    LandmarksConfig,
)
from fer_lightning.data.landmarks.schema import CONTOUR_SEGMENTS, GROUPS, NUM_POINTS, organ_centres

_CONTOUR_SAMPLES = 8  # points sampled along each contour segment
_DEFAULTS = LandmarksConfig()


def group_indices(groups: Sequence[str] | None, num_points: int) -> list[int] | None:
    """Landmark indices of the named ``schema.GROUPS`` (None: every point)."""
    if not groups:
        return None
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        raise ValueError(f"landmarks.overlay_groups: unknown groups {unknown}; "
                         f"allowed: {list(GROUPS)}")
    if num_points != NUM_POINTS:
        raise ValueError(f"landmarks.overlay_groups needs the 68-point scheme, got "
                         f"{num_points} points; set landmarks.overlay_groups=null")
    return [i for name in groups for i in range(*GROUPS[name])]


def _contour_points(landmarks: torch.Tensor, samples: int = _CONTOUR_SAMPLES,
                    keep: list[int] | None = None) -> torch.Tensor:
    """(B, 68, 2) -> (B, S * T, 2) points sampled along each drawn segment (only the
    segments joining two points of ``keep``, when given)."""
    if landmarks.shape[1] != NUM_POINTS:
        raise ValueError(f"contours need the 68-point scheme, got {landmarks.shape[1]} points; "
                         f"use style 'points' / 'gaussian' with {landmarks.shape[1]} points")
    kept = set(range(NUM_POINTS) if keep is None else keep)
    pairs = tuple((int(a), int(b)) for a, b in CONTOUR_SEGMENTS if {a, b} <= kept)
    segments = device_constant(pairs, landmarks, torch.long)
    start, end = landmarks[:, segments[:, 0]], landmarks[:, segments[:, 1]]
    t = torch.linspace(0, 1, samples, device=landmarks.device)[None, None, :, None]
    points = start[:, :, None] + t * (end - start)[:, :, None]
    return points.flatten(1, 2)


def draw_overlay(image: torch.Tensor, landmarks: torch.Tensor, valid: torch.Tensor,
                 style: str = _DEFAULTS.overlay_style, value: float = 1.0,
                 groups: Sequence[str] | None = _DEFAULTS.overlay_groups) -> torch.Tensor:
    """Return ``image`` (B, C, H, W) with landmarks painted in at ``value`` on every channel.

    ``landmarks`` are (B, P, 2) in [0, 1] image coordinates; samples whose ``valid``
    flag is False are left untouched. Points that left the image during augmentation are
    not drawn. ``groups`` restricts the drawing to some facial parts (Selvam et al. name
    eyes, nose and lips, and show brows too). Vectorised over the batch, so it runs on
    the GPU as well as the CPU.
    """
    check_choice("landmarks.overlay_style", style, OVERLAY_STYLES)
    keep = group_indices(groups, landmarks.shape[1])
    points = landmarks if keep is None else landmarks[:, keep]
    if style == "contours":
        points = torch.cat([points, _contour_points(landmarks, keep=keep)], 1)
    batch, channels, height, width = image.shape
    x = (points[..., 0] * width).floor().long()
    y = (points[..., 1] * height).floor().long()
    inside = (x >= 0) & (x < width) & (y >= 0) & (y < height) & valid[:, None]
    sample = torch.arange(batch, device=image.device)[:, None].expand_as(x)
    pixels = batch * height * width
    # points outside go to one spare column instead of a boolean mask (a host sync)
    flat_index = torch.where(inside, (sample * height + y) * width + x, pixels)
    canvas = torch.cat([image.permute(1, 0, 2, 3).reshape(channels, -1),
                        image.new_zeros(channels, 1)], 1)
    canvas.index_fill_(1, flat_index.flatten(), value)
    return canvas[:, :pixels].reshape(channels, batch, height, width).permute(1, 0, 2, 3) \
        .contiguous()


def draw_heatmap(landmarks: torch.Tensor, valid: torch.Tensor, height: int, width: int,
                 sigma: float = _DEFAULTS.heatmap_sigma, style: str = _DEFAULTS.heatmap_style
                 ) -> torch.Tensor:
    """A landmark image (B, 1, H, W) in [0, 1]: the maximum over points of a Gaussian of
    ``sigma`` pixels centred on each point (MBA's landmark input, Colaco & Han, Sec. II).

    ``style="contours"`` also places Gaussians densely along the face contours, so the
    map shows lines rather than dots. Invalid samples get an all-zero map. Each Gaussian
    is evaluated exactly (sub-pixel centre) in a window of 3 sigma around its point and
    merged with a scatter-max, so the cost does not grow with the image area.
    """
    check_choice("landmarks.heatmap_style", style, HEATMAP_STYLES)
    if sigma <= 0:
        raise ValueError(f"landmarks.heatmap_sigma must be > 0 pixels, got {sigma}")
    points = landmarks
    if style == "contours":
        per_segment = max(2, round(max(height, width) / 12))
        points = torch.cat([landmarks, _contour_points(landmarks, per_segment)], 1)
    radius = math.ceil(3 * sigma)
    offsets = torch.arange(-radius, radius + 1, device=points.device)
    centre_x = points[..., 0] * width  # (B, P) continuous pixel coordinates
    centre_y = points[..., 1] * height
    pixel_x = centre_x.floor().long()[..., None, None] + offsets[None, None, None, :]
    pixel_y = centre_y.floor().long()[..., None, None] + offsets[None, None, :, None]
    values = torch.exp(-(((pixel_x + 0.5) - centre_x[..., None, None]) ** 2
                         + ((pixel_y + 0.5) - centre_y[..., None, None]) ** 2) / (2 * sigma**2))
    inside = (pixel_x >= 0) & (pixel_x < width) & (pixel_y >= 0) & (pixel_y < height)
    inside = inside & valid[:, None, None, None]
    sample = torch.arange(points.shape[0], device=points.device)[:, None, None, None]
    pixels = points.shape[0] * height * width
    # window pixels outside go to one spare slot instead of a boolean mask (a host sync)
    flat_index = torch.where(inside, (sample * height + pixel_y) * width + pixel_x, pixels)
    heatmap = points.new_zeros(pixels + 1)
    heatmap.scatter_reduce_(0, flat_index.flatten(), values.to(heatmap.dtype).flatten(),
                            reduce="amax")
    return heatmap[:pixels].view(points.shape[0], 1, height, width)


def landmark_coords(landmarks: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The ``coords`` encoding: (B, P, 2) in [0, 1], all zeros for invalid samples."""
    return landmarks.clamp(0, 1) * valid[:, None, None].to(landmarks.dtype)


# Organ box sizes as multiples of the inter-ocular distance (IOD, between eye centres),
# so that 68-point and 5-point landmarks give boxes of the same extent.
_EYE_BOX = (0.8, 0.55)
_NOSE_BOX = (0.75, 0.95)
_MOUTH_BOX_HEIGHT = 0.7
_MOUTH_BOX_MARGIN = 0.35  # added to the corner-to-corner width
_FACE_BOX_5 = (2.2, 2.6)  # face box from 5 points, centred between eyes and mouth
_FOREHEAD = 0.2  # a 68-point face box is raised by this fraction of its height


def _centred_boxes(centre: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    return torch.cat([centre - size / 2, centre + size / 2], -1)


def regions_from_landmarks(landmarks: torch.Tensor, valid: torch.Tensor, height: int,
                           width: int, face_box: torch.Tensor | None = None,
                           face_box_valid: torch.Tensor | None = None
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pseudo-label boxes of the five emotion regions (MS-FPN, Zhang et al., Sec. 3.1).

    Returns ``regions`` (B, 5, 4) xyxy in pixels, ordered as ``schema.REGION_NAMES``
    (face, left eye, right eye, nose, mouth; the subject's left and right), clipped to
    the image, and ``regions_valid`` (B,): the sample's landmarks were valid and every
    box kept a positive area inside the image. Organ boxes are centred on the organ and
    sized by the inter-ocular distance. The face box is the detector's own (``face_box``
    (B, 4) xyxy in [0, 1], where ``face_box_valid``), as the paper takes RetinaFace's;
    otherwise it spans the 68-point contour raised to include the forehead, or, from 5
    points, a fixed multiple of the IOD.
    """
    scale = device_constant((width, height), landmarks)
    points = landmarks * scale
    image_left_eye, image_right_eye, nose, mouth_a, mouth_b = organ_centres(points)
    left_eye, right_eye = image_right_eye, image_left_eye  # the subject's sides
    iod = (left_eye - right_eye).norm(dim=-1, keepdim=True).clamp_min(1e-3)
    mouth_centre = (mouth_a + mouth_b) / 2
    mouth_width = (mouth_a - mouth_b).norm(dim=-1, keepdim=True) + _MOUTH_BOX_MARGIN * iod
    eye_size = iod * device_constant(_EYE_BOX, iod)
    face = _face_box(points, left_eye, right_eye, mouth_centre, iod)
    if face_box is not None and face_box_valid is not None:
        detected = face_box.to(points.dtype) * scale.repeat(2)
        face = torch.where(face_box_valid[:, None], detected, face)
    boxes = [
        face,
        _centred_boxes(left_eye, eye_size),
        _centred_boxes(right_eye, eye_size),
        _centred_boxes(nose, iod * device_constant(_NOSE_BOX, iod)),
        _centred_boxes(mouth_centre, torch.cat([mouth_width, _MOUTH_BOX_HEIGHT * iod], -1)),
    ]
    regions = torch.stack(boxes, 1)
    regions[..., 0::2] = regions[..., 0::2].clamp(0, width)
    regions[..., 1::2] = regions[..., 1::2].clamp(0, height)
    has_area = ((regions[..., 2] - regions[..., 0] > 1) & (regions[..., 3] - regions[..., 1] > 1))
    return regions, valid & has_area.all(1)


def _face_box(points: torch.Tensor, left_eye: torch.Tensor, right_eye: torch.Tensor,
              mouth_centre: torch.Tensor, iod: torch.Tensor) -> torch.Tensor:
    if points.shape[1] == NUM_POINTS:
        low, high = points.amin(1), points.amax(1)
        low = low - torch.stack([torch.zeros_like(low[:, 0]), _FOREHEAD * (high - low)[:, 1]], -1)
        return torch.cat([low, high], -1)
    centre = ((left_eye + right_eye) / 2 + mouth_centre) / 2
    return _centred_boxes(centre, iod * device_constant(_FACE_BOX_5, iod))
