"""Media I/O of inference: reading images (EXIF-upright, 16-bit grey scaled as training
scales it, a pixel-count guard), listing the images and videos an ``input=`` path names,
decoding (noticing a cut-off or damaged file) and encoding video (PyAV), one face's
prediction (:class:`FacePrediction`), the prediction rows (``predictions.csv`` /
``.jsonl``) and annotated copies. Knows nothing of nets."""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from fer_lightning.data.sources.io import to_uint8
from fer_lightning.errors import ConfigError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                  ".pgm")



#: Largest image (pixels) predict decodes by default (``max_pixels``): 50 MP covers photos
#: of 45 MP cameras (8256 x 5504); memory through face detection grows with the pixels.
MAX_PIXELS = 50_000_000
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")



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
            score = None if face.score is None else round(face.score, 4)
            self.counts["faces"] += 1
            self.counts[f"label:{face.label}"] += 1
            record = {**where, "face": index, "box": [round(v, 2) for v in face.box],
                      "score": score, "label": face.label,
                      "confidence": round(face.confidence, 6),
                      "probabilities": {k: round(v, 6) for k, v in face.probabilities.items()},
                      "landmarks_found": face.landmarks_found, "status": "ok"}
            row = {**where, "face": index, **dict(zip(("x0", "y0", "x1", "y1"), record["box"],
                                                       strict=True)),
                   "score": score, "label": face.label, "confidence": record["confidence"],
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



def image_box(box: Sequence[float], shape: tuple[int, int]) -> tuple[float, float, float, float]:
    """A detector's box (xyxy) clipped to the image of ``shape`` (height, width): MTCNN
    reports boxes that reach past the border for faces at the edge."""
    height, width = shape
    x0, y0, x1, y1 = (float(v) for v in box)
    return (min(max(x0, 0.0), width), min(max(y0, 0.0), height),
            min(max(x1, 0.0), width), min(max(y1, 0.0), height))


#: Annotated copies of smaller images are enlarged to about this many pixels (longer side).
ANNOTATED_SIDE = 256


def annotate(image: np.ndarray, faces: Sequence[FacePrediction]) -> np.ndarray:
    """``image`` with each face's box and "label probability" drawn on it. An image under
    ANNOTATED_SIDE pixels on its longer side is first enlarged by a whole factor (nearest
    neighbour), so the label is legible; the label goes above the box, else below it, else
    inside it, always within the image."""
    canvas = Image.fromarray(image).convert("RGB")
    scale = max(1, math.ceil(ANNOTATED_SIDE / max(canvas.size)))
    if scale > 1:
        canvas = canvas.resize((canvas.width * scale, canvas.height * scale), Image.NEAREST)
    draw = ImageDraw.Draw(canvas)
    width = max(1, round(max(canvas.size) / 250))
    font = ImageFont.load_default(size=max(10, round(max(canvas.size) / 40)))
    for face in faces:
        x0, y0, x1, y1 = (v * scale for v in face.box)
        draw.rectangle((x0, y0, x1, y1), outline=(255, 64, 64), width=width)
        text = f"{face.label} {face.confidence:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        label_w, label_h = right - left + 2 * width, bottom - top + 2 * width
        if y0 - label_h >= 0:
            label_y = y0 - label_h
        elif y1 + label_h <= canvas.height:
            label_y = y1
        else:
            label_y = max(0.0, y0)
        label_x = max(0.0, min(x0, canvas.width - label_w))
        draw.rectangle((label_x, label_y, label_x + label_w, label_y + label_h),
                       fill=(255, 64, 64))
        draw.text((label_x + width - left, label_y + width - top), text, fill=(255, 255, 255),
                  font=font)
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
