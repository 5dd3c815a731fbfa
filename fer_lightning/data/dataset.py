"""A torch Dataset over one split of any Source: RawSample -> sample dict.

The sample dict (docs/data-flow.md): ``image`` float (C, H, W) in [0, 1], ``label``,
``index`` (in the source split), ``target`` (soft labels, when the source has them) and,
with landmarks on, ``landmarks`` (P, 2) in [0, 1], ``landmarks_valid``, ``face_box`` (4,)
xyxy in [0, 1] of the detector's face box and ``face_box_valid`` (docs/landmarks.md).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from fer_lightning.data.decode_cache import to_training_pixels
from fer_lightning.data.landmarks.cache import LandmarkArrays
from fer_lightning.data.landmarks.face_crop import apply_crop
from fer_lightning.data.sources.base import RawSample, Source


def image_to_tensor(image: np.ndarray, size: int, channels: int) -> torch.Tensor:
    """uint8 (H, W) or (H, W, 3) -> float (channels, size, size) in [0, 1].

    The pixels are ``decode_cache.to_training_pixels`` (channel conversion, bilinear
    resize) divided by 255, the same values the batched path makes on the device.
    """
    array = to_training_pixels(image, size, channels).astype(np.float32) / 255.0
    tensor = torch.from_numpy(array)
    return tensor[None] if channels == 1 else tensor.permute(2, 0, 1).contiguous()


class FERDataset(Dataset):
    """Samples of one split as dicts: image, label, index (+ landmarks, landmarks_valid).

    Landmarks come from ``landmarks`` (a backend's cached arrays, misses already filled
    by the ``on_missing`` policy) when given, else from the source (``groundtruth``,
    which has no face box: ``face_box_valid`` False).
    Cached ``crop_box`` entries (photo datasets) crop the image the way the landmarks were
    computed. ``indices`` selects the source samples kept (``on_missing=drop``); the
    ``index`` of a sample is its index in the source split.
    """

    def __init__(self, source: Source, split: str, image_size: int, channels: int,
                 with_landmarks: bool, landmarks: LandmarkArrays | None = None,
                 indices: np.ndarray | None = None) -> None:
        self.source = source
        self.split = split
        self.image_size = image_size
        self.channels = channels
        self.with_landmarks = with_landmarks
        self.cached = landmarks
        labels = source.split_info(split).labels
        self.indices = np.arange(len(labels)) if indices is None else np.asarray(indices)
        self.labels = labels[self.indices]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, position: int) -> dict[str, torch.Tensor]:
        index = int(self.indices[position])
        raw: RawSample = self.source.load(self.split, index)
        if self.cached is not None and np.isfinite(self.cached.crop_box[index]).all():
            raw.image = apply_crop(raw.image, self.cached.crop_box[index])
        sample = {
            "image": image_to_tensor(raw.image, self.image_size, self.channels),
            "label": torch.tensor(raw.label, dtype=torch.long),
            "index": torch.tensor(index, dtype=torch.long),
        }
        if raw.target is not None:
            sample["target"] = torch.as_tensor(raw.target, dtype=torch.float32)
        if self.with_landmarks:
            sample.update(self._landmarks(raw, index))
        return sample

    def _landmarks(self, raw: RawSample, index: int) -> dict[str, torch.Tensor]:
        if self.cached is not None:
            face_box = self.cached.face_box[index] if self.cached.face_box is not None \
                else np.full(4, np.nan, np.float32)
            valid = bool(self.cached.valid[index])  # False too where the quality filter failed
            has_box = valid and bool(np.isfinite(face_box).all())
            return {"landmarks": torch.as_tensor(self.cached.points[index], dtype=torch.float32),
                    "landmarks_valid": torch.tensor(valid),
                    "face_box": torch.as_tensor(np.nan_to_num(face_box), dtype=torch.float32),
                    "face_box_valid": torch.tensor(has_box)}
        if raw.landmarks is None:
            raise ValueError(
                f"landmarks=groundtruth needs a dataset that ships landmarks, but "
                f"{type(self.source).__name__} sample {index} of split {self.split!r} has none"
            )
        return {
            "landmarks": torch.as_tensor(raw.landmarks, dtype=torch.float32),
            "landmarks_valid": torch.tensor(bool(raw.landmarks_valid)),
            "face_box": torch.zeros(4),
            "face_box_valid": torch.tensor(False),
        }

    def fields(self, decoded: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        """Every field of the kept samples but the image, stacked: what ``__getitem__``
        returns, for all samples at once. ``decoded`` holds the source's own per-sample
        arrays by source index (``decode_cache.decode_rows``: ``target``, ground-truth
        ``landmarks`` and ``landmarks_valid``)."""
        rows = self.indices
        out = {"label": torch.as_tensor(self.labels, dtype=torch.long),
               "index": torch.as_tensor(rows, dtype=torch.long)}
        if "target" in decoded:
            out["target"] = torch.as_tensor(np.asarray(decoded["target"][rows], np.float32))
        if not self.with_landmarks:
            return out
        if self.cached is not None:
            face_box = self.cached.face_box[rows] if self.cached.face_box is not None \
                else np.full((len(rows), 4), np.nan, np.float32)
            valid = np.asarray(self.cached.valid[rows], bool)
            has_box = valid & np.isfinite(face_box).all(axis=1)
            out.update(landmarks=torch.as_tensor(np.asarray(self.cached.points[rows], np.float32)),
                       landmarks_valid=torch.as_tensor(valid),
                       face_box=torch.as_tensor(np.nan_to_num(face_box).astype(np.float32)),
                       face_box_valid=torch.as_tensor(has_box))
            return out
        if "landmarks" not in decoded:
            raise ValueError(
                f"landmarks=groundtruth needs a dataset that ships landmarks, but "
                f"{type(self.source).__name__} split {self.split!r} has none")
        out.update(landmarks=torch.as_tensor(np.asarray(decoded["landmarks"][rows], np.float32)),
                   landmarks_valid=torch.as_tensor(np.asarray(decoded["landmarks_valid"][rows],
                                                              bool)),
                   face_box=torch.zeros(len(rows), 4), face_box_valid=torch.zeros(len(rows),
                                                                                  dtype=torch.bool))
        return out
