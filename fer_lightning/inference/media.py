"""Media I/O of inference: reading images (EXIF-upright), listing the images and videos
an ``input=`` path names, decoding and encoding video (PyAV), one face's prediction
(:class:`FacePrediction`), the prediction rows (``predictions.csv`` / ``.jsonl``) and
annotated copies. Knows nothing of nets."""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from fer_lightning.errors import ConfigError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                  ".pgm")



VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")



def load_image(source: str | Path | Image.Image | np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) RGB of a path, a PIL image or an array (uint8 (H, W) or (H, W, 3));
    photos are turned upright by their EXIF orientation, as viewers show them."""
    if isinstance(source, np.ndarray):
        if source.dtype != np.uint8 or source.ndim not in (2, 3) or \
                (source.ndim == 3 and source.shape[2] not in (3, 4)):
            raise ValueError(f"an image array must be uint8 (H, W), (H, W, 3) or (H, W, 4), "
                             f"got {source.dtype} {source.shape}")
        if source.ndim == 3 and source.shape[2] == 3:
            return np.ascontiguousarray(source)
        source = Image.fromarray(source)
    if isinstance(source, (str, Path)):
        with Image.open(source) as opened:
            source = ImageOps.exif_transpose(opened)
            source.load()
    return np.asarray(source.convert("RGB"))



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



def video_info(path: Path) -> tuple[int, float]:
    """(frame count or 0 when the container does not say, frames per second)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return int(stream.frames or 0), float(stream.average_rate or 25)



class PredictionWriter:
    """``predictions.csv`` and ``predictions.jsonl``: one row per face, or one row per
    image without a face (``no_face``) or that could not be read (``unreadable: ...``)."""

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
