"""The contract of a landmark extractor backend, and helpers every backend shares.

An extractor turns one uint8 image into key-points in [0, 1] image coordinates (x, y) in
the project's fixed order (68 iBUG points, or MTCNN's 5), or None when it finds no face.
Extractors are cheap to construct and to pickle: the model is loaded lazily on the first
``extract`` call and dropped when pickled, so each cache worker process loads it once.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Mapping
from types import ModuleType
from typing import Any, Protocol

import numpy as np
from PIL import Image

from fer_lightning.errors import MissingPackage

#: ``make setup`` installs every backend this way; the error of a missing one repeats it.
INSTALL = {
    "dlib": "pip install dlib-bin face-recognition-models",
    "face_recognition_models": "pip install dlib-bin face-recognition-models",
    "facenet_pytorch": "pip install --no-deps facenet-pytorch==2.6.0",
    "mediapipe": ("pip install --no-deps mediapipe==0.10.21 && pip install absl-py attrs "
                  "flatbuffers matplotlib opencv-contrib-python sounddevice protobuf==6.33.5"),
}


class MissingBackendError(MissingPackage):
    """A landmark backend's package is not installed; the message names the install command."""


def install_line(module: str) -> str:
    """The command that installs ``module``: its :data:`INSTALL` line, else a plain pip
    install (a backend missing from the table still gets a usable message)."""
    return INSTALL.get(module, f"pip install {module}")


def require(module: str, backend: str) -> ModuleType:
    """Import ``module`` for ``backend`` or raise MissingBackendError with the install command."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingBackendError(
            f"landmarks={backend} needs the Python package {module!r}, which does not import "
            f"({error}). Install it with `make setup` or: {install_line(module)}"
        ) from error


def package_version(distribution: str) -> str:
    """Installed version of ``distribution`` (part of cache keys), or "unknown"."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


Extra = dict[str, np.ndarray]


class Extractor(Protocol):
    """A landmark backend.

    ``name`` and ``settings`` (a JSON-able dict of everything that changes the output,
    package versions included) form the cache key; ``num_points`` is P; ``extra_shapes``
    gives the shape of every array ``extract`` returns in its extra dict (e.g. the full
    478-point mesh, the face box), so misses can be stored as NaN of the same shape.
    Optional ``face_box_extra``: the extra holding the backend's own detected face box
    (xyxy in [0, 1] of its input image), which becomes the record's ``face_box``.
    """

    name: str
    num_points: int

    @property
    def settings(self) -> dict[str, Any]: ...

    @property
    def extra_shapes(self) -> dict[str, tuple[int, ...]]: ...

    def extract(self, image: np.ndarray, face_box: np.ndarray | None = None
                ) -> tuple[np.ndarray | None, Extra]:
        """``image`` uint8 (H, W) or (H, W, 3); ``face_box`` optional xyxy pixels of the
        face when a detector already found it (photo datasets). Returns (points (P, 2)
        float32 in [0, 1] or None, extra arrays)."""
        ...


class LazyModel:
    """Mixin: ``self.model`` is built by ``_load()`` on first use and never pickled."""

    _model: Any = None

    @property
    def model(self) -> Any:
        if self._model is None:
            self._model = self._load()
        return self._model

    def _load(self) -> Any:
        raise NotImplementedError

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_model", None)
        return state


def to_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W) or (H, W, 3) -> contiguous uint8 (H, W, 3)."""
    check_image(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image)


def to_grey(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W) or (H, W, 3) -> uint8 (H, W) luminance."""
    check_image(image)
    return image if image.ndim == 2 else np.asarray(Image.fromarray(image).convert("L"))


def check_image(image: np.ndarray) -> None:
    """Raise ValueError unless ``image`` is uint8 (H, W) or (H, W, 3)."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3) \
            or (image.ndim == 3 and image.shape[2] != 3):
        shape = getattr(image, "shape", None)
        raise ValueError(f"a landmark extractor got an image of type {type(image).__name__}, "
                         f"shape {shape}; expected uint8 (H, W) or (H, W, 3)")


def upsample(image: np.ndarray, target: int | None) -> tuple[np.ndarray, float]:
    """Resize so the longer side is ``target`` pixels when it is smaller (bilinear).

    Returns the image and the scale factor (1.0 when nothing was done). Landmark models
    and detectors miss many 48 x 48 faces; at about 192 px they find them.
    """
    height, width = image.shape[:2]
    if not target or max(height, width) >= target:
        return image, 1.0
    scale = target / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR)), scale


def normalise(points: np.ndarray, width: int, height: int) -> np.ndarray:
    """Continuous pixel coordinates -> float32 [0, 1] image coordinates (clipped)."""
    out = np.asarray(points, np.float32) / np.array([width, height], np.float32)
    return np.clip(out, 0.0, 1.0)


def nan_extra(shapes: Mapping[str, tuple[int, ...]]) -> Extra:
    """The extra dict of a miss: every declared array filled with NaN."""
    return {key: np.full(shape, np.nan, np.float32) for key, shape in shapes.items()}
