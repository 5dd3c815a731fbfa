"""dlib's 68-point shape predictor (the model file ships in face-recognition-models).

Two paths:

- photo datasets: a detector (``face_crop.FaceCropper``) finds the face first and passes
  its box; the predictor runs on that box.
- pre-cropped datasets (FER2013 48 x 48, RAF-DB aligned): the image already is the face.
  It is upsampled (``upsample_to`` px) and the predictor runs on a whole-image box shrunk
  by ``inset`` on every side (dlib's predictor was trained on HOG-detector boxes, which
  sit inside a loosely cropped face: on a 25 %-margin crop of a real photo an inset of
  0.1-0.2 reproduces the full-photo landmarks within 2 % of the inter-ocular distance,
  no inset gives 5 %). The predictor always returns 68 points, even on a grey square, so
  a face check decides validity: dlib's HOG detector with a lowered threshold
  (``verify_threshold``; None skips the check). On skimage's 100 LFW faces (25 x 25,
  upsampled to 192) a threshold of -0.6 accepts 98 % of the faces and none of the 100
  non-faces.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from fer_lightning.data.landmarks.base import (
    Extra,
    LazyModel,
    nan_extra,
    normalise,
    package_version,
    require,
    to_grey,
    upsample,
)
from fer_lightning.data.landmarks.face_crop import model_dir

PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"


class DlibExtractor(LazyModel):
    """68 iBUG points from dlib's shape predictor; extra: ``box`` (xyxy in [0, 1])."""

    name = "dlib"
    num_points = 68

    def __init__(self, upsample_to: int = 192, inset: float = 0.1,
                 verify_threshold: float | None = -0.6) -> None:
        if not 0.0 <= inset < 0.5:
            raise ValueError(f"landmarks.extractor.inset must be in [0, 0.5), got {inset}")
        self.upsample_to, self.inset = int(upsample_to or 0), float(inset)
        self.verify_threshold = None if verify_threshold is None else float(verify_threshold)

    @property
    def settings(self) -> dict[str, Any]:
        return {"upsample_to": self.upsample_to, "inset": self.inset,
                "verify_threshold": self.verify_threshold,
                "dlib": package_version("dlib-bin"), "predictor": PREDICTOR_FILE}

    @property
    def extra_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"box": (4,)}

    def _load(self) -> tuple[Any, Any, Any]:
        dlib = require("dlib", "dlib")
        path = os.path.join(model_dir(), PREDICTOR_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"dlib's landmark model is missing: {path} (reinstall "
                                    f"face-recognition-models)")
        return dlib, dlib.shape_predictor(path), dlib.get_frontal_face_detector()

    def extract(self, image: np.ndarray, face_box: np.ndarray | None = None
                ) -> tuple[np.ndarray | None, Extra]:
        """68 points of the face in ``face_box`` (pixels) or of the whole (pre-cropped) image."""
        dlib, predictor, detector = self.model
        grey, scale = upsample(to_grey(image), self.upsample_to)
        height, width = grey.shape
        if face_box is None:
            if self.verify_threshold is not None and \
                    not len(detector.run(grey, 0, self.verify_threshold)[0]):
                return None, nan_extra(self.extra_shapes)
            box = np.array([self.inset * width, self.inset * height,
                            (1 - self.inset) * width, (1 - self.inset) * height])
        else:
            box = np.asarray(face_box, np.float64) * scale
        left, top, right, bottom = (int(round(v)) for v in box)
        shape = predictor(grey, dlib.rectangle(left, top, right - 1, bottom - 1))
        pixels = np.array([(p.x, p.y) for p in shape.parts()], np.float32) + 0.5
        extra = {"box": (box / np.array([width, height, width, height])).astype(np.float32)}
        return normalise(pixels, width, height), extra
