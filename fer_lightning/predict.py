"""`python -m fer_lightning.predict ckpt_path=PATH input=PATH [out=DIR]`: expressions of
the faces in photos, folders of photos and videos, from a trained checkpoint.

Every face is found, cropped and given landmarks the way the run's training images were
(``inference.TrainedModel`` rebuilds the input pipeline from the checkpoint):

- models trained on photos they cropped themselves (``landmarks.precropped=false``) use
  the run's own face detector and crop margin;
- models trained on pre-cropped faces (FER2013, FER+, RAF-DB aligned, the synthetic
  faces) use MTCNN and a crop margin of 0.05 of the box side on every side: an MTCNN box
  spans brows to chin, about the framing of those datasets (measured on skimage's
  astronaut, matplotlib's grace_hopper and LFW crops; see docs/inference.md). With
  ``detector=hog`` the margin is 0.15 (dlib's boxes are tighter).

``detect=false`` treats every image as one face crop. Several faces per image each get a
row: file, frame (videos), box, detector score, label and the probability of every
class; an image without a face gets a ``no_face`` row, an unreadable file (or an image
over ``max_pixels``) an ``unreadable`` row and a video that stops early a ``truncated``
row, so nothing disappears from the output. ``Predictor`` is the Python API
the command uses::

    predictor = Predictor.from_checkpoint("best.ckpt")
    for face in predictor.predict("photo.jpg"):
        print(face.box, face.label, face.probabilities)
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image, ImageDraw, ImageFont, ImageOps

from fer_lightning.checks import check_choice
from fer_lightning.config import ConfigError, user_error_exit
from fer_lightning.data.dataset import image_to_tensor
from fer_lightning.data.landmarks.base import MissingBackendError
from fer_lightning.data.landmarks.face_crop import DETECTORS, Face, FaceCropper
from fer_lightning.data.sources.io import to_uint8
from fer_lightning.inference import TrainedModel
from fer_lightning.tta import TestTimeAugmentation, average_views

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnx")
#: Detector for models trained on pre-cropped faces.
DEFAULT_DETECTOR = "mtcnn"
#: Crop margin per detector for models trained on pre-cropped faces (module docstring).
PRECROPPED_MARGIN = {"mtcnn": 0.05, "hog": 0.15}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                  ".pgm")
#: Largest image (pixels) predict decodes by default (``max_pixels``): 50 MP covers photos
#: of 45 MP cameras (8256 x 5504); memory through face detection grows with the pixels.
MAX_PIXELS = 50_000_000
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


@dataclass
class FacePrediction:
    """One face: its box (xyxy pixels of the image; the whole image with detect=false),
    the detector's score (None with detect=false), the label and every class's
    probability; ``landmarks_found`` is None when the model uses no landmarks."""

    box: tuple[float, float, float, float]
    score: float | None
    label: str
    probabilities: dict[str, float]
    landmarks_found: bool | None = None

    @property
    def confidence(self) -> float:
        """The probability of the predicted label."""
        return self.probabilities[self.label]


def load_image(source: str | Path | Image.Image | np.ndarray,
               max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """uint8 (H, W, 3) RGB of a path, a PIL image or an array (uint8 (H, W), (H, W, 3) or
    (H, W, 4); uint16 (H, W)); photos are turned upright by their EXIF orientation, as
    viewers show them. 16-bit greyscale is scaled to 8 bits as training's reader scales
    it (``data.sources.io.to_uint8``), not clipped to white.

    An image of more than ``max_pixels`` pixels (None: no limit) raises ImageTooLargeError,
    for a file from its header, before it is decoded: decoding and face detection take
    memory in proportion to the pixel count."""
    if isinstance(source, np.ndarray):
        check_pixels(source.shape[1::-1], max_pixels, "the image array")
        if source.dtype == np.uint16 and source.ndim == 2:
            return to_uint8(Image.fromarray(source), "rgb")
        if source.dtype != np.uint8 or source.ndim not in (2, 3) or \
                (source.ndim == 3 and source.shape[2] not in (3, 4)):
            raise ValueError(f"an image array must be uint8 (H, W), (H, W, 3) or (H, W, 4), "
                             f"or uint16 (H, W), got {source.dtype} {source.shape}")
        if source.ndim == 3 and source.shape[2] == 3:
            return np.ascontiguousarray(source)
        source = Image.fromarray(source)
    if isinstance(source, (str, Path)):
        with Image.open(source) as opened:
            check_pixels(opened.size, max_pixels, str(source))
            upright = ImageOps.exif_transpose(opened)
            upright.load()
            return to_uint8(upright, "rgb")
    check_pixels(source.size, max_pixels, "the image")
    return to_uint8(source, "rgb")


class ImageTooLargeError(ValueError):
    """An image over ``max_pixels`` (predict's guard against running out of memory)."""


def check_pixels(size: Sequence[int], max_pixels: int | None, what: str) -> None:
    """Raise ImageTooLargeError when a (width, height) image exceeds ``max_pixels``."""
    width, height = int(size[0]), int(size[1])
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLargeError(
            f"{what} is {width}x{height} ({width * height / 1e6:.1f} megapixels), over "
            f"max_pixels={max_pixels} ({max_pixels / 1e6:g} megapixels): decoding and face "
            f"detection would need several GB of memory; downscale it, or raise max_pixels "
            f"if this machine has the memory")


def face_cropper(model: TrainedModel, detector: str | None = None,
                 margin: float | None = None) -> FaceCropper:
    """The face detector and crop for photos (module docstring): the run's own when it
    trained on photos it cropped, else MTCNN with the pre-cropped framing margin."""
    trained = model.photo_cropper
    if trained is not None:
        name = detector or trained.detector.name
        margin = trained.margin if margin is None else margin
        if name == trained.detector.name and margin == trained.margin:
            return trained
        return FaceCropper(name, margin, trained.select)
    name = detector or DEFAULT_DETECTOR
    check_choice("detector", name, DETECTORS)
    return FaceCropper(name, PRECROPPED_MARGIN[name] if margin is None else margin)


class Predictor:
    """Faces in images -> expression probabilities, with the trained run's face crop,
    landmarks and input pipeline (module docstring). ``batch_size`` faces are classified
    at once on the model's device."""

    def __init__(self, model: TrainedModel, detect: bool = True, detector: str | None = None,
                 margin: float | None = None, batch_size: int = 32, tta: str = "none",
                 tta_crop: float = 0.92, max_pixels: int | None = MAX_PIXELS) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        if max_pixels is not None and (isinstance(max_pixels, bool) or max_pixels < 1):
            raise ValueError(f"max_pixels must be a positive integer or null, got {max_pixels}")
        #: Images over this many pixels are refused before decoding (``load_image``).
        self.max_pixels = max_pixels
        self.model = model
        self.cropper = face_cropper(model, detector, margin) if detect else None
        self.batch_size = batch_size
        self.transform = TestTimeAugmentation(model.transform, tta, tta_crop)

    @classmethod
    def from_checkpoint(cls, path: str | Path, backend: str = "torch",
                        onnx_path: str | Path | None = None, device: str = "cpu",
                        landmarks: str | None = None, **options: Any) -> Predictor:
        """A predictor for a ``.ckpt`` (run with PyTorch, or with onnxruntime when
        ``backend="onnx"``: ``onnx_path``, default ``<checkpoint>.onnx``, used when its
        metadata holds this checkpoint's SHA-256, else exported now) or for an ``.onnx``
        file from ``export``.
        ``landmarks`` replaces the run's landmark backend (dlib | mediapipe | mtcnn);
        ``options`` go to the constructor."""
        check_choice("backend", backend, BACKENDS)
        path = Path(path).expanduser()
        if path.suffix == ".onnx":
            return cls(TrainedModel.from_onnx(path, landmarks), **options)
        if backend == "onnx":
            from fer_lightning.export import ensure_onnx

            onnx_file = ensure_onnx(path, onnx_path)
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
        """The faces of one image (a path, a PIL image or an RGB / grey uint8 array)."""
        return self.predict_many([image])[0]

    def predict_many(self, images: Sequence[str | Path | Image.Image | np.ndarray]
                     ) -> list[list[FacePrediction]]:
        """The faces of each image, detected one image at a time and classified in
        batches of ``batch_size`` faces."""
        per_image = [self.faces(load_image(image, self.max_pixels)) for image in images]
        flat = [face for faces in per_image for face in faces]
        probabilities, found = self.classify(flat)
        predictions, start = [], 0
        for faces in per_image:
            predictions.append([self._prediction(face, probabilities[start + i], found[start + i])
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
        batch = {"image": torch.stack([image_to_tensor(face.crop, model.image_size,
                                                       model.channels) for face in faces])}
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

    def _prediction(self, face: Face, probabilities: np.ndarray, found: bool | None
                    ) -> FacePrediction:
        scores = {name: float(p) for name, p in zip(self.class_names, probabilities, strict=True)}
        return FacePrediction(tuple(float(v) for v in face.box),
                              None if math.isnan(face.score) else face.score,
                              self.class_names[int(np.argmax(probabilities))], scores, found)


# -- inputs ----------------------------------------------------------------------------


@dataclass
class Inputs:
    """The files an ``input=`` path names: images, videos, and files that are neither."""

    root: Path
    images: list[Path] = field(default_factory=list)
    videos: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)


def collect_inputs(path: str | Path) -> Inputs:
    """An image or video file, or every image and video under a folder (recursively,
    sorted); other files in a folder are listed as skipped."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ConfigError(f"input={str(path)!r}: no such file or folder")
    if path.is_file():
        inputs = Inputs(path.parent)
        files = [path]
    else:
        inputs = Inputs(path)
        files = sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        suffix = file.suffix.lower()
        bucket = inputs.images if suffix in IMAGE_SUFFIXES else \
            inputs.videos if suffix in VIDEO_SUFFIXES else inputs.skipped
        bucket.append(file)
    if path.is_file() and inputs.skipped:
        raise ConfigError(f"input={str(path)!r} is neither an image ({', '.join(IMAGE_SUFFIXES)}) "
                          f"nor a video ({', '.join(VIDEO_SUFFIXES)})")
    return inputs


def video_frames(path: Path) -> Iterator[tuple[int, float | None, Any]]:
    """(index, time in seconds, PyAV frame) of every frame of a video file."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for index, frame in enumerate(container.decode(stream)):
            yield index, frame.time, frame


@dataclass
class VideoHeader:
    """What a video's container says before decoding: frames (0 when it says nothing),
    whether that count is declared (else estimated from the duration), frames per second."""

    frames: int
    declared: bool
    fps: float


def video_info(path: Path) -> VideoHeader:
    """The container's frame count (or its duration times the frame rate) and rate."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or 25)
        if stream.frames:
            return VideoHeader(int(stream.frames), True, fps)
        seconds = container.duration / av.time_base if container.duration else 0.0
        return VideoHeader(round(seconds * fps), False, fps)


def truncation(header: VideoHeader, decoded: int) -> str | None:
    """Why ``decoded`` frames fall short of the header, or None. A duration gives an
    estimate only, so a shortfall of 2 % (at least 2 frames) passes there."""
    if header.declared:
        short = decoded < header.frames
    else:
        short = decoded < header.frames - max(2, round(0.02 * header.frames))
    if not short:
        return None
    said = "declares" if header.declared else "implies from its duration"
    return f"{decoded} of the {header.frames} frames its header {said} were decoded"


class DecodeWatch:
    """Iterates a video's frames and keeps the decoding error that ended them early
    (instead of raising it out of the folder's loop), with the count decoded."""

    def __init__(self, frames: Iterator[tuple[int, float | None, Any]]) -> None:
        self._frames = frames
        self.decoded = 0
        self.error: str | None = None

    def __iter__(self) -> Iterator[tuple[int, float | None, Any]]:
        import av

        try:
            for item in self._frames:
                self.decoded += 1
                yield item
        except (av.FFmpegError, OSError, EOFError) as error:
            self.error = str(error).splitlines()[0] if str(error) else type(error).__name__


# -- outputs ---------------------------------------------------------------------------


class PredictionWriter:
    """``predictions.csv`` and ``predictions.jsonl``: one row per face, or one row per
    image without a face (``no_face``) or that could not be read (``unreadable: ...``),
    and one row per video that stopped early (``truncated: ...``, :meth:`note`)."""

    def __init__(self, out: Path, class_names: Sequence[str]) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.class_names = list(class_names)
        self.columns = ["file", "frame", "time", "face", "x0", "y0", "x1", "y1", "score",
                        "label", "confidence", *[f"p_{name}" for name in self.class_names],
                        "landmarks_found", "status"]
        self.csv_path, self.jsonl_path = out / "predictions.csv", out / "predictions.jsonl"
        self._csv_file = self.csv_path.open("w", newline="")
        self._csv = csv.DictWriter(self._csv_file, self.columns)
        self._csv.writeheader()
        self._jsonl = self.jsonl_path.open("w")
        self.counts: Counter[str] = Counter()

    def write(self, file: str, frame: int | None, time: float | None,
              faces: Sequence[FacePrediction] | None, error: str | None = None) -> None:
        """The rows of one image or video frame (``faces`` None when it is unreadable)."""
        where = {"file": file, "frame": frame, "time": None if time is None else round(time, 4)}
        self.counts["images"] += 1
        if error is not None or not faces:
            status = f"unreadable: {error}" if error is not None else "no_face"
            self.counts["unreadable" if error is not None else "no_face"] += 1
            self._emit({**where, "status": status}, {**where, "status": status})
            return
        for index, face in enumerate(faces):
            self.counts["faces"] += 1
            self.counts[f"label:{face.label}"] += 1
            record = {**where, "face": index, "box": [round(v, 2) for v in face.box],
                      "score": face.score, "label": face.label,
                      "confidence": round(face.confidence, 6),
                      "probabilities": {k: round(v, 6) for k, v in face.probabilities.items()},
                      "landmarks_found": face.landmarks_found, "status": "ok"}
            row = {**where, "face": index, **dict(zip(("x0", "y0", "x1", "y1"), record["box"],
                                                       strict=True)),
                   "score": face.score, "label": face.label, "confidence": record["confidence"],
                   **{f"p_{k}": v for k, v in record["probabilities"].items()},
                   "landmarks_found": face.landmarks_found, "status": "ok"}
            self._emit(row, record)

    def note(self, file: str, status: str, kind: str) -> None:
        """A row for a whole file (a video that stopped early: ``truncated: ...``),
        counted under ``kind``."""
        self.counts[kind] += 1
        row = {"file": file, "frame": None, "time": None, "status": status}
        self._emit(row, row)

    def _emit(self, row: dict[str, Any], record: dict[str, Any]) -> None:
        self._csv.writerow({key: "" if value is None else value for key, value in row.items()})
        self._jsonl.write(json.dumps(record) + "\n")

    def close(self) -> None:
        self._csv_file.close()
        self._jsonl.close()


def annotate(image: np.ndarray, faces: Sequence[FacePrediction]) -> np.ndarray:
    """``image`` with each face's box and "label probability" drawn on it."""
    canvas = Image.fromarray(image).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    width = max(1, round(max(canvas.size) / 250))
    font = ImageFont.load_default(size=max(10, round(max(canvas.size) / 40)))
    for face in faces:
        x0, y0, x1, y1 = face.box
        draw.rectangle((x0, y0, x1, y1), outline=(255, 64, 64), width=width)
        text = f"{face.label} {face.confidence:.2f}"
        left, top, right, bottom = draw.textbbox((x0, y0), text, font=font)
        top_y = y0 - (bottom - top) - 2 * width if y0 - (bottom - top) > 0 else y1 + width
        draw.rectangle((x0, top_y, x0 + right - left + 2 * width, top_y + bottom - top
                        + 2 * width), fill=(255, 64, 64))
        draw.text((x0 + width, top_y + width - (top - y0)), text, fill=(255, 255, 255), font=font)
    return np.asarray(canvas)


class VideoWriter:
    """An H.264 mp4 (PyAV) of RGB frames; odd sizes lose their last row / column."""

    def __init__(self, path: Path, fps: float) -> None:
        import av

        path.parent.mkdir(parents=True, exist_ok=True)
        self.container = av.open(str(path), mode="w")
        self.stream = self.container.add_stream("libx264", rate=round(fps) or 25)
        self.stream.pix_fmt = "yuv420p"
        self.size: tuple[int, int] | None = None

    def write(self, image: np.ndarray) -> None:
        import av

        height, width = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
        if self.size is None:
            self.stream.width, self.stream.height = self.size = (width, height)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[:height, :width]),
                                           format="rgb24")
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()


# -- the command -----------------------------------------------------------------------


@dataclass
class PendingFrame:
    index: int
    time: float | None
    image: np.ndarray
    sampled: bool


class PredictRun:
    """What one ``predict`` command does: every input through the predictor, rows to the
    writer, annotated copies (``annotate=true``) under ``<out>/annotated/``."""

    def __init__(self, predictor: Predictor, out: Path, every: int = 1,
                 annotate_output: bool = False, progress: Any = None) -> None:
        if every < 1:
            raise ConfigError(f"every must be a positive integer, got {every}")
        self.predictor, self.out, self.every = predictor, out, every
        self.annotate = annotate_output
        self.writer = PredictionWriter(out, predictor.class_names)
        self.progress = progress

    def _advance(self, task: Any, amount: int = 1) -> None:
        if self.progress is not None and task is not None:
            self.progress.advance(task, amount)

    def images(self, inputs: Inputs, task: Any = None) -> None:
        """Every image, ``batch_size`` images per predictor call."""
        size = self.predictor.batch_size
        for start in range(0, len(inputs.images), size):
            files = inputs.images[start:start + size]
            loaded, errors = {}, {}
            for file in files:
                try:
                    loaded[file] = load_image(file, self.predictor.max_pixels)
                except (OSError, ValueError, Image.DecompressionBombError) as error:
                    errors[file] = str(error).splitlines()[0]
            predictions = dict(zip(loaded, self.predictor.predict_many(list(loaded.values())),
                                   strict=True))
            for file in files:
                name = self._name(file, inputs.root)
                self.writer.write(name, None, None, predictions.get(file), errors.get(file))
                if self.annotate and file in loaded:
                    target = self.out / "annotated" / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(annotate(loaded[file], predictions[file])).save(target)
            self._advance(task, len(files))

    def video(self, path: Path, root: Path, task: Any = None) -> None:
        """Every ``every``-th frame, batched; the annotated video shows every frame with
        the latest sampled frame's faces. A video that cannot be opened gets an
        ``unreadable`` row; one whose decoding fails part-way, or that ends before the
        frames its header declares, keeps the rows of its decoded frames plus a
        ``truncated`` row saying where it stopped; the folder goes on either way."""
        name = self._name(path, root)
        try:
            header = video_info(path)
            watch = DecodeWatch(video_frames(path))
            writer = VideoWriter((self.out / "annotated" / name).with_suffix(".mp4"),
                                 header.fps) if self.annotate else None
        except Exception as error:  # noqa: BLE001 - PyAV raises many types for bad files
            self.writer.write(name, None, None, None, str(error).splitlines()[0])
            return
        pending: list[PendingFrame] = []
        latest: list[FacePrediction] = []
        try:
            for index, time, frame in watch:
                sampled = index % self.every == 0
                if sampled or writer is not None:
                    pending.append(PendingFrame(index, time, frame.to_ndarray(format="rgb24"),
                                                sampled))
                if sum(p.sampled for p in pending) >= self.predictor.batch_size \
                        or len(pending) >= 4 * self.predictor.batch_size:
                    latest = self._flush(name, pending, latest, writer)
                    self._advance(task, len(pending))
                    pending = []
            latest = self._flush(name, pending, latest, writer)
            self._advance(task, len(pending))
        finally:
            if writer is not None:
                writer.close()
        self._report_decoding(name, header, watch)

    def _report_decoding(self, name: str, header: VideoHeader, watch: DecodeWatch) -> None:
        """The row of a video that decoded no frame, or stopped early (``video``)."""
        short = truncation(header, watch.decoded)
        if watch.decoded == 0:
            why = watch.error or ("no frame could be decoded" +
                                  (f" (its header {'declares' if header.declared else 'implies'}"
                                   f" {header.frames})" if header.frames else ""))
            self.writer.write(name, None, None, None, why)
        elif watch.error is not None or short is not None:
            where = f"decoding failed after frame {watch.decoded - 1} ({watch.error})" \
                if watch.error is not None else short
            if watch.error is not None and short is not None:
                where += f"; {short}"
            self.writer.note(name, f"truncated: {where}", "truncated")
            log.warning("%s is truncated: %s", name, where)

    def _flush(self, name: str, pending: list[PendingFrame], latest: list[FacePrediction],
               writer: VideoWriter | None) -> list[FacePrediction]:
        sampled = [p for p in pending if p.sampled]
        results = iter(self.predictor.predict_many([p.image for p in sampled]))
        for frame in pending:
            if frame.sampled:
                latest = next(results)
                self.writer.write(name, frame.index, frame.time, latest)
            if writer is not None:
                writer.write(annotate(frame.image, latest))
        return latest

    @staticmethod
    def _name(file: Path, root: Path) -> str:
        return str(file.relative_to(root)) if file.is_relative_to(root) else str(file)

    def close(self) -> None:
        self.writer.close()


def predict(cfg: DictConfig) -> dict[str, Any]:
    """Run ``python -m fer_lightning.predict`` for a composed ``conf/predict.yaml``;
    returns the counts it prints (images, faces, no_face, unreadable, skipped, labels)."""
    from rich.console import Console
    from rich.progress import Progress

    inputs = collect_inputs(cfg.input)
    try:
        predictor = Predictor.from_checkpoint(
            cfg.ckpt_path, backend=str(cfg.backend), onnx_path=cfg.get("onnx_path"),
            device=str(cfg.device), landmarks=cfg.get("landmarks"), detect=bool(cfg.detect),
            detector=cfg.get("detector"), margin=cfg.get("margin"),
            batch_size=int(cfg.batch_size), tta=str(cfg.tta), tta_crop=float(cfg.tta_crop),
            max_pixels=cfg.get("max_pixels", MAX_PIXELS))
    except ConfigError:
        raise
    except ValueError as error:
        raise ConfigError(str(error)) from None
    out = Path(cfg.out)
    with Progress(transient=False, disable=not cfg.get("progress", True)) as progress:
        run = PredictRun(predictor, out, int(cfg.every), bool(cfg.annotate), progress)
        try:
            if inputs.images:
                run.images(inputs, progress.add_task("images", total=len(inputs.images)))
            for video in inputs.videos:
                try:
                    total = video_info(video).frames
                except Exception:  # noqa: BLE001 - reported as unreadable by run.video
                    total = 0
                run.video(video, inputs.root, progress.add_task(video.name, total=total or None))
        finally:
            run.close()
    counts = run.writer.counts
    summary = {"images": counts["images"], "faces": counts["faces"],
               "no_face": counts["no_face"], "unreadable": counts["unreadable"],
               "truncated": counts["truncated"],
               "skipped": [str(p) for p in inputs.skipped],
               "labels": {key[6:]: n for key, n in sorted(counts.items())
                          if key.startswith("label:")},
               "predictions": str(run.writer.csv_path)}
    console = Console(soft_wrap=True)
    console.print(f"{summary['images']} images / frames: {summary['faces']} faces, "
                  f"{summary['no_face']} without a face, {summary['unreadable']} unreadable")
    if summary["truncated"]:
        console.print(f"{summary['truncated']} videos stopped before their end (a "
                      f"'truncated' row each says where)")
    if inputs.skipped:
        console.print(f"skipped {len(inputs.skipped)} files that are neither images nor "
                      f"videos: {', '.join(map(str, inputs.skipped[:5]))}"
                      f"{' ...' if len(inputs.skipped) > 5 else ''}")
    console.print(f"labels: {summary['labels']}")
    console.print(f"predictions: {run.writer.csv_path} and {run.writer.jsonl_path}")
    return summary


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    """Hydra entry point; config and checkpoint errors end with their message, exit 1."""
    try:
        predict(cfg)
    except ConfigError as error:
        raise user_error_exit(error) from None
    except MissingBackendError as error:  # a face detector / landmark package not installed
        raise SystemExit(f"Missing package: {error}") from None


if __name__ == "__main__":
    main()
