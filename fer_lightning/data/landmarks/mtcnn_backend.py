"""facenet-pytorch's MTCNN: a face box and 5 points (the landmark source of the MS-FPN
region pseudo-labels; Zhang et al. use RetinaFace's box and 5 points, which need weights
from a hub).

The 5 points keep MTCNN's order, which is the image's: image-left eye, image-right eye,
nose, image-left mouth corner, image-right mouth corner. Pre-cropped faces are upsampled
to ``upsample_to`` px and padded by ``pad`` (fraction of the side, edge pixels): MTCNN
finds a face more reliably when it does not touch the border (on skimage's 25 x 25 LFW
faces at 192 px: 97 % without padding, 100 % with 0.25). Of several faces, the most
confident wins.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fer_lightning.data.landmarks.base import (
    Extra,
    nan_extra,
    normalise,
    package_version,
    to_rgb,
    upsample,
)
from fer_lightning.data.landmarks.face_crop import MtcnnDetector, select_face

ORDER = ("image_left_eye", "image_right_eye", "nose", "image_left_mouth", "image_right_mouth")


class MtcnnExtractor:
    """5 points from MTCNN; extra: ``box`` (xyxy in [0, 1] of the input image, MTCNN's
    own face box: the pipeline's ``face_box``) and ``prob`` (its confidence, which the
    quality filter's ``min_prob`` reads)."""

    name = "mtcnn"
    num_points = 5
    face_box_extra = "box"

    def __init__(self, upsample_to: int = 192, pad: float = 0.25, min_face_size: int = 20,
                 thresholds: tuple[float, ...] = (0.6, 0.7, 0.7)) -> None:
        if not 0.0 <= pad <= 1.0:
            raise ValueError(f"landmarks.extractor.pad must be in [0, 1], got {pad}")
        self.upsample_to, self.pad = int(upsample_to or 0), float(pad)
        self.detector = MtcnnDetector(min_face_size=min_face_size, thresholds=thresholds)

    @property
    def settings(self) -> dict[str, Any]:
        return {"upsample_to": self.upsample_to, "pad": self.pad, **self.detector.settings,
                "facenet_pytorch": package_version("facenet-pytorch")}

    @property
    def extra_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"box": (4,), "prob": (1,)}

    def extract(self, image: np.ndarray, face_box: np.ndarray | None = None
                ) -> tuple[np.ndarray | None, Extra]:
        """MTCNN runs its own detector; of several faces the most confident one is kept
        (``face_box`` is accepted for the protocol and not needed)."""
        rgb, _ = upsample(to_rgb(image), self.upsample_to)
        height, width = rgb.shape[:2]
        pad = int(round(self.pad * max(height, width)))
        if pad:
            rgb = np.pad(rgb, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
        boxes, probs, points = self.detector.detect_with_points(rgb)
        index = select_face(boxes, probs, "confident")
        if index is None:
            return None, nan_extra(self.extra_shapes)
        # MTCNN coordinates are pixel indices; +0.5 makes them continuous (dataset convention).
        pixels = points[index] - pad + 0.5
        box = (boxes[index] - pad) / np.array([width, height, width, height], np.float32)
        extra = {"box": box.astype(np.float32), "prob": probs[index: index + 1]}
        return normalise(pixels, width, height), extra
