"""The automatic quality filter of detected faces (``landmarks.quality``).

Vectorised over samples, on the arrays the cache holds, so thresholds can change without
re-extracting. See ``QualityFilter`` for the checks and docs/landmarks.md for their
measured effect.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from fer_lightning.data.landmarks.config import QualityFilter
from fer_lightning.data.landmarks.schema import organ_centres


def quality_passes(quality: QualityFilter | None, arrays: Mapping[str, np.ndarray]
                   ) -> np.ndarray:
    """(N,) bool: False where a detected face fails a check of ``quality``.

    ``arrays``: ``points`` (N, P, 2), ``face_box`` (N, 4) in [0, 1] (NaN: none) and,
    when the backend reports it, ``prob`` (N, 1). Samples without a face pass (they
    already count as missed); everything passes when ``quality`` is None.
    """
    points = np.asarray(arrays["points"], np.float64)
    passes = np.ones(len(points), bool)
    if quality is None:
        return passes
    found = np.isfinite(points).all(axis=(1, 2))
    if quality.min_prob is not None and "prob" in arrays:
        prob = np.asarray(arrays["prob"], np.float64).reshape(len(points), -1)[:, 0]
        passes &= ~(prob < quality.min_prob)  # NaN (no probability) passes
    left_eye, right_eye, nose, left_mouth, right_mouth = organ_centres(np.nan_to_num(points))
    if quality.geometry:
        eyes_y = np.maximum(left_eye[:, 1], right_eye[:, 1])
        mouth_y = np.minimum(left_mouth[:, 1], right_mouth[:, 1])
        passes &= (eyes_y < nose[:, 1]) & (nose[:, 1] < mouth_y)
        passes &= (left_eye[:, 0] < right_eye[:, 0]) & (left_mouth[:, 0] < right_mouth[:, 0])
    box = np.asarray(arrays.get("face_box", np.full((len(points), 4), np.nan)), np.float64)
    has_box = np.isfinite(box).all(axis=1) & (box[:, 2] > box[:, 0]) & (box[:, 3] > box[:, 1])
    width = np.where(has_box, box[:, 2] - box[:, 0], 1.0)
    height = np.where(has_box, box[:, 3] - box[:, 1], 1.0)
    if quality.eye_distance is not None:
        ratio = np.linalg.norm(right_eye - left_eye, axis=1) / width
        low, high = quality.eye_distance
        passes &= ~has_box | ((ratio >= low) & (ratio <= high))
    if quality.box_margin is not None:
        margin = quality.box_margin * np.stack([width, height], 1)[:, None]
        inside = (points >= box[:, None, :2] - margin) & (points <= box[:, None, 2:] + margin)
        passes &= ~has_box | inside.all(axis=(1, 2))
    return passes | ~found
