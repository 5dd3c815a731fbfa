"""MediaPipe face mesh: 478 points mapped to the 68-point scheme, the full mesh kept too.

Two APIs, chosen at load time:

- ``task_model_path`` set: the Tasks ``FaceLandmarker`` with that ``.task`` model file
  (mediapipe >= 0.10.22 ships no models and needs one);
- otherwise the legacy ``mediapipe.solutions.face_mesh`` of mediapipe 0.10.21, the last
  release that bundles its face models (``refine_landmarks=True`` -> 478 points).

MediaPipe runs its own face detector, so a flat or non-face image yields None. Small
pre-cropped faces are upsampled to ``upsample_to`` px first.

Importing mediapipe 0.10.21's bindings next to protobuf 6 prints a harmless
``AttributeError: 'MessageFactory' object has no attribute 'GetPrototype'`` (the
bindings probe an API that protobuf removed, catch the error and print it). That one
line is dropped; anything else the import prints is passed on, and import errors are
raised as usual.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from types import ModuleType
from typing import Any

import numpy as np

from fer_lightning.data.landmarks.base import (
    INSTALL,
    Extra,
    LazyModel,
    nan_extra,
    package_version,
    require,
    to_rgb,
    upsample,
)
from fer_lightning.data.landmarks.mediapipe_map import mesh_to_68

MESH_POINTS = 478
TASK_URL = ("https://storage.googleapis.com/mediapipe-models/face_landmarker/"
            "face_landmarker/float16/latest/face_landmarker.task")
NO_MODEL = (
    "landmarks=mediapipe found neither the legacy face mesh (mediapipe.solutions, removed "
    "after mediapipe 0.10.21) nor a Tasks model (landmarks.task_model_path is not set). "
    "Either install mediapipe 0.10.21, which bundles its models (`make setup`, or: {install}), "
    "or download face_landmarker.task on a machine with internet access ({url}), copy it "
    "here and set landmarks.task_model_path=/path/to/face_landmarker.task"
)


#: The line protobuf >= 5 makes mediapipe 0.10.21 print at import (harmless).
PROTOBUF_NOISE = "'MessageFactory' object has no attribute 'GetPrototype'"


def import_mediapipe() -> tuple[ModuleType, Any]:
    """``mediapipe`` and its legacy ``solutions`` package (None when absent), imported
    without the protobuf noise line; other output of the import is printed as usual."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            mp = require("mediapipe", "mediapipe")
            solutions = getattr(mp, "solutions", None)  # imports the framework bindings
    finally:
        for line in captured.getvalue().splitlines(keepends=True):
            if PROTOBUF_NOISE not in line:
                sys.stderr.write(line)
    return mp, solutions


class MediapipeExtractor(LazyModel):
    """68 iBUG points mapped from MediaPipe's mesh; extra: ``mesh`` (478, 3) x, y in [0, 1]
    and MediaPipe's relative depth z."""

    name = "mediapipe"
    num_points = 68

    def __init__(self, upsample_to: int = 192, min_detection_confidence: float = 0.5,
                 task_model_path: str | None = None) -> None:
        self.upsample_to = int(upsample_to or 0)
        self.min_detection_confidence = float(min_detection_confidence)
        self.task_model_path = str(task_model_path) if task_model_path else None

    @property
    def settings(self) -> dict[str, Any]:
        return {"upsample_to": self.upsample_to,
                "min_detection_confidence": self.min_detection_confidence,
                "api": "tasks" if self.task_model_path else "solutions",
                "task_model": os.path.basename(self.task_model_path or ""),
                "mediapipe": package_version("mediapipe")}

    @property
    def extra_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"mesh": (MESH_POINTS, 3)}

    def _load(self) -> tuple[str, Any]:
        mp, solutions = import_mediapipe()
        if self.task_model_path:
            return "tasks", self._load_task(mp)
        if solutions is None or not hasattr(solutions, "face_mesh"):
            raise RuntimeError(NO_MODEL.format(install=INSTALL["mediapipe"], url=TASK_URL))
        return "solutions", solutions.face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=1, refine_landmarks=True,
            min_detection_confidence=self.min_detection_confidence)

    def _load_task(self, mp: Any) -> Any:
        if not os.path.isfile(self.task_model_path):
            raise FileNotFoundError(
                f"landmarks.task_model_path={self.task_model_path} does not exist; expected a "
                f"MediaPipe face_landmarker.task file ({TASK_URL})")
        from mediapipe.tasks.python import BaseOptions, vision

        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=self.task_model_path), num_faces=1,
            min_face_detection_confidence=self.min_detection_confidence)
        return vision.FaceLandmarker.create_from_options(options)

    def mesh(self, image: np.ndarray) -> np.ndarray | None:
        """(478, 3) mesh of the face in ``image`` (x, y in [0, 1]), or None."""
        api, model = self.model
        rgb, _ = upsample(to_rgb(image), self.upsample_to)
        if api == "tasks":
            import mediapipe as mp

            result = model.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb))
            faces = result.face_landmarks
            points = faces[0] if faces else None
        else:
            faces = model.process(rgb).multi_face_landmarks
            points = faces[0].landmark if faces else None
        if points is None:
            return None
        return np.array([(p.x, p.y, p.z) for p in points], np.float32)

    def extract(self, image: np.ndarray, face_box: np.ndarray | None = None
                ) -> tuple[np.ndarray | None, Extra]:
        """MediaPipe finds the face itself; ``face_box`` is accepted and not needed."""
        mesh = self.mesh(image)
        if mesh is None or len(mesh) < 468:
            return None, nan_extra(self.extra_shapes)
        full = np.full((MESH_POINTS, 3), np.nan, np.float32)
        full[: len(mesh)] = mesh[:MESH_POINTS]
        points = np.clip(mesh_to_68(mesh[:, :2]), 0.0, 1.0)
        return points.astype(np.float32), {"mesh": full}
