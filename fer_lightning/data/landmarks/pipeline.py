"""Image -> landmarks of its face: the face cropper (photos) + the extractor (+ quality).

The same pipeline fills the training cache and serves inference on photos, so the
network always sees faces found, framed and landmarked the same way. Built from a
``LandmarksConfig`` by ``build_pipeline`` (the cache does, and so can code that has no
DataModule, e.g. prediction from a checkpoint's stored config)::

    config = LandmarksConfig.from_mapping(stored_config["landmarks"])
    pipeline = build_pipeline(config, precropped=False)   # photos: detect, crop, landmarks
    record = pipeline(photo)          # crop_box, points in the crop, valid, face_box, ...
    face = apply_crop(photo, record["crop_box"])          # what the network is shown

Per image the record holds (float32 unless said):

- ``points`` (P, 2) in [0, 1] of the face image (the crop, or the whole pre-cropped
  image), NaN when no face was found;
- ``valid`` (bool): a face was found (and, from ``__call__``, passed the quality filter);
- ``crop_box`` (4,) xyxy pixels of the original image where the face was cut out
  (photos), NaN for pre-cropped images;
- ``face_box`` (4,) xyxy in [0, 1] of the face image: the detector's own face box
  (MTCNN's), else the face cropper's detection (photos), else NaN;
- one array per backend extra (``extractor.extra_shapes``: MTCNN's ``box`` and ``prob``,
  MediaPipe's 478-point ``mesh``, dlib's ``box``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fer_lightning.data.landmarks.base import Extractor
from fer_lightning.data.landmarks.config import LandmarksConfig, QualityFilter, config_error
from fer_lightning.data.landmarks.face_crop import FaceCropper
from fer_lightning.data.landmarks.quality import quality_passes

#: Arrays every record has, whatever the backend (the cache stores each as ``<key>.npy``).
BASE_KEYS = ("points", "valid", "crop_box", "face_box")


class LandmarkPipeline:
    """Extractor (+ face cropper for photos, + quality filter): image -> one record."""

    def __init__(self, extractor: Extractor, cropper: FaceCropper | None = None,
                 quality: QualityFilter | None = None) -> None:
        self.extractor, self.cropper, self.quality = extractor, cropper, quality

    @property
    def num_points(self) -> int:
        return int(self.extractor.num_points)

    @property
    def settings(self) -> dict[str, Any]:
        """Everything that changes what ``detect`` returns (part of the cache key; the
        quality filter is not: it is applied when the cache is read)."""
        return {"backend": self.extractor.name, "extractor": self.extractor.settings,
                "precropped": self.cropper is None,
                "crop": None if self.cropper is None else self.cropper.settings}

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-sample shape of every array of a record."""
        return {"points": (self.num_points, 2), "valid": (), "crop_box": (4,),
                "face_box": (4,), **dict(self.extractor.extra_shapes)}

    def empty(self) -> dict[str, np.ndarray]:
        """The record of an image whose face was not found."""
        record = {key: np.full(shape, np.nan, np.float32) for key, shape in self.shapes.items()}
        record["valid"] = np.array(False)
        return record

    def detect(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """The raw record of ``image`` (uint8 (H, W) or (H, W, 3)): ``valid`` says the
        backend found a face; no quality filter (this is what the cache stores)."""
        record = self.empty()
        cropper_face = None
        if self.cropper is not None:
            found = self.cropper(image)
            if found is None:
                return record
            image, record["crop_box"], cropper_face = found
        points, extra = self.extractor.extract(image, face_box=cropper_face)
        if points is None:
            return record
        points = np.asarray(points, np.float32)
        if points.shape != (self.num_points, 2):
            raise ValueError(f"landmark backend {self.extractor.name} returned points of shape "
                             f"{points.shape}; expected ({self.num_points}, 2)")
        record.update({key: np.asarray(value, np.float32) for key, value in extra.items()})
        record["points"], record["valid"] = points, np.array(True)
        record["face_box"] = self._face_box(extra, cropper_face, image.shape[:2])
        return record

    def __call__(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """``detect`` with the quality filter applied: a face that fails it gets
        ``valid`` False and ``filtered`` True (what training sees for that sample)."""
        record = self.detect(image)
        passes = quality_passes(self.quality, {k: v[None] for k, v in record.items()})[0]
        record["filtered"] = np.array(bool(record["valid"]) and not passes)
        record["valid"] = np.array(bool(record["valid"]) and passes)
        return record

    def _face_box(self, extra: dict[str, np.ndarray], cropper_face: np.ndarray | None,
                  size: tuple[int, int]) -> np.ndarray:
        key = getattr(self.extractor, "face_box_extra", None)
        if key is not None and np.isfinite(extra[key]).all():
            return np.asarray(extra[key], np.float32)
        if cropper_face is not None:
            height, width = size
            return (np.asarray(cropper_face, np.float32)
                    / np.array([width, height, width, height], np.float32))
        return np.full(4, np.nan, np.float32)


def build_face_cropper(config: LandmarksConfig) -> FaceCropper:
    """The photo face cropper of ``config`` (``face_detector``, ``crop_margin``,
    ``face_select``): the same framing for training and inference."""
    return FaceCropper(detector=config.face_detector, margin=config.crop_margin,
                       select=config.face_select)


def build_extractor(config: LandmarksConfig) -> Extractor:
    """``config.extractor`` as an object (a ``_target_`` mapping is instantiated)."""
    if not config.extracts:
        raise config_error(f"landmarks={config.name} has no extractor: its landmarks come "
                           f"from the dataset or are off; use landmarks=dlib|mediapipe|mtcnn")
    extractor = config.extractor
    if isinstance(extractor, dict):
        from hydra.utils import instantiate

        extractor = instantiate(dict(extractor))
    return extractor


def build_pipeline(config: LandmarksConfig, precropped: bool | None = None
                   ) -> LandmarkPipeline:
    """The landmark pipeline of ``config``: its extractor, its quality filter and, unless
    the images are pre-cropped faces, the face cropper.

    ``precropped``: None follows ``config.precropped`` (True when that is unset too);
    True / False overrides it (e.g. False to predict on photos with a model trained on
    pre-cropped FER2013 faces).
    """
    if precropped is None:
        precropped = config.resolve_precropped()
    cropper = None if precropped else build_face_cropper(config)
    return LandmarkPipeline(build_extractor(config), cropper, config.quality)
