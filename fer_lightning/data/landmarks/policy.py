"""From cached detections to the landmarks training sees: quality filter, missing faces.

``resolve`` loads every split's cache, removes detections that fail the quality filter
(``landmarks.quality``), fills faces not found (or filtered) with the training split's
mean valid shape, applies ``landmarks.on_missing`` and reports per split::

    {"detected": faces the backend found, "missed": not found,
     "filtered": found but removed by the quality filter,
     "rate": detected / samples, "dropped": samples removed by on_missing=drop}

That report is ``FERDataModule.landmark_report``, printed by
``python -m fer_lightning.data summary``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from fer_lightning.data.landmarks.cache import LandmarkArrays, LandmarkCache, detection_report
from fer_lightning.data.landmarks.config import LandmarksConfig
from fer_lightning.data.landmarks.quality import quality_passes
from fer_lightning.data.landmarks.schema import canonical_mean_shape

log = logging.getLogger(__name__)


def mean_shape(arrays: Iterable[LandmarkArrays], num_points: int) -> np.ndarray:
    """Mean of the valid shapes over ``arrays``; the canonical mean face when none is valid."""
    valid = [a.points[a.valid] for a in arrays if a.valid.any()]
    if not valid:
        return canonical_mean_shape(num_points)
    return np.concatenate(valid).mean(axis=0).astype(np.float32)


def apply_quality(arrays: LandmarkArrays, config: LandmarksConfig
                  ) -> tuple[LandmarkArrays, np.ndarray]:
    """(arrays whose ``valid`` excludes faces failing ``config.quality``, filtered mask)."""
    passes = quality_passes(config.quality, {"points": arrays.points,
                                             "face_box": arrays.face_box, **arrays.extra})
    filtered = arrays.valid & ~passes
    return LandmarkArrays(arrays.points, arrays.valid & passes, arrays.crop_box,
                          arrays.face_box, arrays.extra), filtered


def apply_policy(arrays: LandmarkArrays, policy: str, fallback: np.ndarray
                 ) -> tuple[LandmarkArrays, np.ndarray]:
    """(arrays with not-valid points replaced by ``fallback``, kept sample indices).

    ``mean_shape`` keeps every sample (``landmarks_valid`` False on misses); ``drop``
    keeps only samples with a valid face. ``policy`` was checked by LandmarksConfig.
    """
    points = arrays.points.copy()
    points[~arrays.valid] = fallback
    kept = np.arange(len(arrays)) if policy == "mean_shape" else np.flatnonzero(arrays.valid)
    return LandmarkArrays(points, arrays.valid.copy(), arrays.crop_box, arrays.face_box,
                          arrays.extra), kept


def resolve(caches: Mapping[str, LandmarkCache], config: LandmarksConfig
            ) -> tuple[dict[str, LandmarkArrays], dict[str, np.ndarray], dict[str, dict]]:
    """Load every split (computing what ``prepare_data`` has not), filter, fill, apply
    ``config.on_missing``. Returns (arrays per split, kept source indices per split,
    report per split: see the module docstring)."""
    loaded, filtered = {}, {}
    for split, cache in caches.items():
        if not cache.verified and not cache.complete:
            cache.compute()
        loaded[split], filtered[split] = apply_quality(cache.load(), config)
    num_points = next(iter(caches.values())).pipeline.num_points if caches else 68
    reference = [loaded["train"]] if "train" in loaded and loaded["train"].valid.any() \
        else list(loaded.values())
    fallback = mean_shape(reference, num_points)
    arrays, kept, report = {}, {}, {}
    for split, raw in loaded.items():
        arrays[split], kept[split] = apply_policy(raw, config.on_missing, fallback)
        detected = raw.valid | filtered[split]
        report[split] = {**detection_report(detected),
                         "filtered": int(np.count_nonzero(filtered[split])),
                         "dropped": len(raw) - len(kept[split])}
        _warn(caches[split], split, report[split], config.on_missing)
    return arrays, kept, report


def _warn(cache: LandmarkCache, split: str, report: Mapping[str, Any], policy: str) -> None:
    unusable = report["missed"] + report["filtered"]
    if not unusable:
        return
    action = (f"dropped {report['dropped']} samples" if policy == "drop"
              else "kept with the mean shape, landmarks_valid=False")
    log.warning("Landmarks %s/%s: no usable face in %d of %d %s samples (%d not found, %d "
                "removed by the quality filter; %s)", type(cache.source).__name__,
                cache.pipeline.extractor.name, unusable, cache.size, split, report["missed"],
                report["filtered"], action)
