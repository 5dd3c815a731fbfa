"""AffectNet, both public releases, read lazily (``data=affectnet data.root=<dir>``).

csv release (see docs/datasets.md)::

    root/
      Manually_Annotated_file_lists/training.csv, validation.csv   (or directly in root/)
      Manually_Annotated_Images/<subDirectory_filePath>

with columns ``subDirectory_filePath, face_x, face_y, face_width, face_height,
facial_landmarks, expression`` (+ valence, arousal). Each image is cropped to its face
box (clipped to the image where it reaches past the border; a box entirely outside the
image is an error); the 68 ``facial_landmarks`` ("x;y;x;y;...", original-image pixels)
are a ground-truth landmark source, returned in the crop's [0, 1] coordinates
(``landmarks=groundtruth``). Landmarks with a missing (NaN) value are returned as
invalid (``landmarks_valid=False``), not as points.

npy release::

    root/
      train_set/images/<id>.jpg   train_set/annotations/<id>_exp.npy, <id>_lnd.npy, ...
      val_set/...

with images already cropped to the face, ``_exp`` the expression code and ``_lnd`` 136
landmark coordinates in image pixels.

Expression codes 0..7 = neutral, happy, sad, surprise, fear, disgust, anger, contempt
(AffectNet's order, kept). ``num_classes=7`` also drops contempt; codes 8..10 (none,
uncertain, no-face) are always skipped; every skipped row is counted per reason. A row
whose path leaves the image folder (``../x.jpg``, an absolute path) is skipped and
counted as ``path_outside_root``, never read; so are hidden and macOS ``._*`` files of
the npy release.

Splits: the official test set is unreleased, so by the public convention
test = validation.csv (val_set); with ``val_split=holdout`` (default) val is a seeded,
stratified ``val_fraction`` of the training part, with ``val_split=test`` val is the
test split (as most papers report).

Only the index (paths, boxes, labels, byte offsets of csv rows) is held in memory;
images and landmarks are read per ``load``, so the ~290 K training images never sit in
memory at once.
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fer_lightning.checks import check_choice
from fer_lightning.data.sources.base import SPLITS, ListedImage, RawSample, SplitInfo
from fer_lightning.data.sources.holdout import stratified_holdout
from fer_lightning.data.sources.io import (
    OUTSIDE_ROOT,
    check_files_exist,
    hidden_reason,
    indexed_lines,
    is_hidden,
    layout_error,
    line_at,
    line_codec,
    read_crop,
    read_image,
    require,
    under_root,
)

log = logging.getLogger(__name__)

CLASS_NAMES = ["neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt"]
#: Codes never used as classes, and the skip reason counted for each.
SKIP_REASONS = {7: "contempt", 8: "none", 9: "uncertain", 10: "no_face"}
NUM_CODES = 11
NUM_LANDMARK_VALUES = 136
RELEASES = ("auto", "csv", "npy")
VAL_SPLITS = ("holdout", "test")
CSV_COLUMNS = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
               "facial_landmarks", "expression")
CSV_FILES = {"train": "training.csv", "test": "validation.csv"}  # release part -> file
CSV_LIST_DIR = "Manually_Annotated_file_lists"
CSV_IMAGE_DIR = "Manually_Annotated_Images"
NPY_DIRS = {"train": "train_set", "test": "val_set"}

LAYOUT = """\
root/                                        (csv release)
  Manually_Annotated_file_lists/training.csv, validation.csv   (or root/training.csv, ...)
  Manually_Annotated_Images/<subDirectory_filePath>
root/                                        (npy release)
  train_set/images/<id>.jpg, train_set/annotations/<id>_exp.npy, <id>_lnd.npy
  val_set/images/..., val_set/annotations/..."""


@dataclass
class _Part:
    """The index of one release part (training or validation): no pixels."""

    source: Path  # the csv file or the annotations folder
    image_dir: Path
    names: list[str]  # image paths relative to image_dir (str: ~5x smaller than Path)
    labels: np.ndarray  # (N,) int64
    codec: str = "utf-8"  # how a csv line read again by offset is decoded
    lines: np.ndarray | None = None  # (N,) int64 csv line numbers (csv)
    boxes: np.ndarray | None = None  # (N, 4) int64 x, y, w, h (csv)
    offsets: np.ndarray | None = None  # (N,) int64 byte offset of each csv row
    landmark_column: int = -1  # csv column of facial_landmarks
    skipped: dict[str, int] = field(default_factory=dict)

    def path(self, row: int) -> Path:
        return self.image_dir / self.names[row]

    def where(self, row: int) -> str:
        """Where row ``row`` is listed: ``file:line``, or its expression file."""
        if self.lines is not None:
            return f"{self.source}:{self.lines[row]}"
        return f"annotation {self.source / (Path(self.names[row]).stem + '_exp.npy')}"


def _parse_landmarks(values: np.ndarray | str, where: str) -> np.ndarray:
    """(68, 2) float64 pixel coordinates from 136 numbers or an "x;y;..." string."""
    if isinstance(values, str) or (isinstance(values, np.ndarray) and values.dtype.kind in "US"):
        text = str(values.item() if isinstance(values, np.ndarray) else values)
        values = text.split(";")
    try:
        points = np.asarray(values, dtype=np.float64).reshape(-1)
    except ValueError as error:
        raise ValueError(f"{where}: facial landmarks are not numbers ({error})") from None
    if points.size != NUM_LANDMARK_VALUES:
        raise ValueError(f"{where}: facial landmarks have {points.size} values, expected "
                         f"{NUM_LANDMARK_VALUES} (68 x;y pairs)")
    return points.reshape(68, 2)


def _with_landmarks(image: np.ndarray, label: int, points: np.ndarray,
                    box: tuple[float, float, float, float]) -> RawSample:
    """The sample with its landmarks in ``box`` coordinates; landmarks holding a missing
    (NaN or infinite) value are marked invalid and zeroed, so they never reach a net."""
    if not np.isfinite(points).all():
        return RawSample(image=image, label=label, landmarks=np.zeros((68, 2), np.float32),
                         landmarks_valid=False)
    return RawSample(image=image, label=label, landmarks=_to_unit(points, *box),
                     landmarks_valid=True)


def _read_npy(path: Path, what: str) -> np.ndarray:
    """One small annotation array, or an error naming the file."""
    try:
        return np.asarray(np.load(path, allow_pickle=False))
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read {what} file {path}: {error}") from None


def _to_unit(points: np.ndarray, x0: float, y0: float, width: float, height: float) -> np.ndarray:
    """Pixel coordinates (pixel centres at integers) -> [0, 1] coordinates of the box
    ``(x0, y0, width, height)``, where pixel ``j`` covers ``[j, j + 1) / size``; points
    outside the box are clipped to its border."""
    unit = (points + 0.5 - (x0, y0)) / (width, height)
    return np.clip(unit, 0.0, 1.0).astype(np.float32)


class AffectNet:
    """AffectNet-7 or -8 from the csv or the npy release (``release=auto`` detects it).

    ``load`` returns the face crop (RGB uint8) and, where the release ships them, the 68
    landmarks in crop coordinates with ``landmarks_valid=True``.
    """

    def __init__(self, root: str | os.PathLike, num_classes: int = 8, release: str = "auto",
                 val_split: str = "holdout", val_fraction: float = 0.1, seed: int = 0) -> None:
        if isinstance(num_classes, bool) or num_classes not in (7, 8):
            raise ValueError(f"data.source.num_classes must be 7 or 8, got {num_classes!r}")
        check_choice("data.source.release", release, RELEASES)
        check_choice("data.source.val_split", val_split, VAL_SPLITS)
        self.num_classes = int(num_classes)
        self.class_names = CLASS_NAMES[: self.num_classes]
        self.val_split, self.val_fraction, self.seed = val_split, val_fraction, seed
        self.root = require(Path(root), "AffectNet root", LAYOUT, directory=True)
        self.release = self._detect_release() if release == "auto" else release
        self._sources = self._part_sources()
        self._parts: dict[str, _Part] = {}
        self._index: dict[str, np.ndarray] = {}
        self._checked: set[str] = set()

    # -- Source protocol ---------------------------------------------------------------

    def split_info(self, split: str) -> SplitInfo:
        """Labels of ``split`` and rows skipped by reason; raises if a listed image is
        missing (checked once per split, one directory listing per folder)."""
        part, index = self._locate(split)
        if split not in self._checked:
            paths = [part.path(i) for i in index]
            where = [part.where(i) for i in index]
            check_files_exist(paths, where, f"AffectNet {split} images")
            self._checked.add(split)
        skipped = {} if split == "val" and self.val_split == "holdout" else dict(part.skipped)
        return SplitInfo(labels=part.labels[index].copy(), skipped=skipped)

    def load(self, split: str, index: int) -> RawSample:
        """Read sample ``index`` of ``split``: the face crop and its landmarks."""
        part, rows = self._locate(split)
        row = int(rows[index])
        if self.release == "csv":
            return self._load_csv(part, row)
        return self._load_npy(part, row)

    # -- helpers beyond the protocol ---------------------------------------------------

    def path(self, split: str, index: int) -> Path:
        """The image file of sample ``index`` of ``split``."""
        part, rows = self._locate(split)
        return part.path(int(rows[index]))

    def image_files(self, split: str) -> list[ListedImage]:
        """The image file of every sample of ``split``, where it is listed and (csv
        release) its face box."""
        part, rows = self._locate(split)
        return [ListedImage(part.path(i), f"listed at {part.where(i)}",
                            None if part.boxes is None else tuple(int(v) for v in part.boxes[i]))
                for i in rows.tolist()]

    def describe(self) -> str:
        """One line: what is read and how the splits are formed (for summaries)."""
        train, test = (str(self._sources[part]) for part in ("train", "test"))
        val = ("val = test split" if self.val_split == "test" else
               f"val = stratified {self.val_fraction:g} hold-out of train (seed {self.seed})")
        return (f"AffectNet-{self.num_classes} {self.release} release: train = {train}, "
                f"test = {test}; {val}")

    # -- layout ------------------------------------------------------------------------

    def _csv_file(self, part: str) -> Path | None:
        for folder in (self.root / CSV_LIST_DIR, self.root):
            if (folder / CSV_FILES[part]).is_file():
                return folder / CSV_FILES[part]
        return None

    def _detect_release(self) -> str:
        if self._csv_file("train") is not None:
            return "csv"
        if (self.root / NPY_DIRS["train"]).is_dir():
            return "npy"
        raise layout_error(self.root / CSV_LIST_DIR / CSV_FILES["train"],
                           f"neither {CSV_FILES['train']} nor {NPY_DIRS['train']}/", LAYOUT)

    def _part_sources(self) -> dict[str, Path]:
        """Release part -> its csv file or annotations folder, checked to exist."""
        sources = {}
        for part in ("train", "test"):
            if self.release == "csv":
                found = self._csv_file(part)
                sources[part] = found or require(self.root / CSV_LIST_DIR / CSV_FILES[part],
                                                 "AffectNet csv", LAYOUT)
            else:
                folder = self.root / NPY_DIRS[part]
                require(folder / "images", "AffectNet image folder", LAYOUT, directory=True)
                sources[part] = require(folder / "annotations", "AffectNet annotation folder",
                                        LAYOUT, directory=True)
        if self.release == "csv":
            require(self.root / CSV_IMAGE_DIR, "AffectNet image folder", LAYOUT, directory=True)
        return sources

    # -- index -------------------------------------------------------------------------

    def _part(self, name: str) -> _Part:
        if name not in self._parts:
            reader = self._read_csv if self.release == "csv" else self._read_npy
            self._parts[name] = reader(self._sources[name])
        return self._parts[name]

    def _locate(self, split: str) -> tuple[_Part, np.ndarray]:
        """The release part holding ``split`` and the rows of it that form the split."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
        part_name = "train" if split == "train" or (split == "val" and
                                                    self.val_split == "holdout") else "test"
        part = self._part(part_name)
        if split not in self._index:
            rows = np.arange(len(part.labels))
            if part_name == "train" and self.val_split == "holdout":
                keep, held = stratified_holdout(part.labels, self.val_fraction, self.seed)
                rows = keep if split == "train" else held
            self._index[split] = rows
        return part, self._index[split]

    def _code(self, text: str, where: str, skipped: dict[str, int]) -> int | None:
        """The class of an expression code, or None (counted in ``skipped``)."""
        if not text.strip().lstrip("-").isdigit() or not 0 <= int(text) < NUM_CODES:
            raise ValueError(f"{where}: expression {text!r} is not a code in 0..10")
        code = int(text)
        if code >= self.num_classes:
            reason = SKIP_REASONS[code]
            skipped[reason] = skipped.get(reason, 0) + 1
            return None
        return code

    def _read_csv(self, path: Path) -> _Part:
        """Index one csv: paths, boxes, labels and row offsets, one pass, no pixels."""
        names, labels, lines, boxes, offsets = [], [], [], [], []
        skipped: dict[str, int] = {}
        image_dir = self.root / CSV_IMAGE_DIR
        rows = indexed_lines(path)
        _, _, head = next(rows, (0, 0, ""))
        header = [name.strip() for name in next(csv.reader([head]), [])]
        missing = [name for name in CSV_COLUMNS if name not in header]
        if missing:
            raise ValueError(f"{path}: missing columns {missing}; found {header}, expected "
                             f"at least {list(CSV_COLUMNS)}")
        col = {name: header.index(name) for name in CSV_COLUMNS}
        for number, start, text in rows:
            if not text.strip():
                continue
            line = f"{path}:{number}"
            fields = next(csv.reader([text])) if '"' in text else text.split(",")
            if len(fields) != len(header):
                raise ValueError(f"{line}: {len(fields)} fields, expected {len(header)} "
                                 f"({', '.join(header)})")
            label = self._code(fields[col["expression"]], line, skipped)
            if label is None:
                continue
            box = self._box(fields, col, line)
            landmarks = fields[col["facial_landmarks"]]
            if landmarks.count(";") != NUM_LANDMARK_VALUES - 1:
                raise ValueError(f"{line}: facial_landmarks has "
                                 f"{len(landmarks.split(';'))} values, expected "
                                 f"{NUM_LANDMARK_VALUES} (68 x;y pairs)")
            name = fields[col["subDirectory_filePath"]]
            if under_root(image_dir, name) is None:
                if OUTSIDE_ROOT not in skipped:
                    log.warning("%s: image path %r leaves %s; such rows are skipped",
                                line, name, image_dir)
                skipped[OUTSIDE_ROOT] = skipped.get(OUTSIDE_ROOT, 0) + 1
                continue
            names.append(name)
            labels.append(label)
            lines.append(number)
            boxes.append(box)
            offsets.append(start)
        return _Part(source=path, image_dir=image_dir, names=names, codec=line_codec(path),
                     labels=np.asarray(labels, np.int64), lines=np.asarray(lines, np.int64),
                     boxes=np.asarray(boxes, np.int64).reshape(-1, 4),
                     offsets=np.asarray(offsets, np.int64),
                     landmark_column=col["facial_landmarks"], skipped=skipped)

    @staticmethod
    def _box(fields: list[str], col: dict[str, int], line: str) -> tuple[int, int, int, int]:
        names = ("face_x", "face_y", "face_width", "face_height")
        try:
            box = tuple(int(fields[col[name]]) for name in names)
        except ValueError:
            values = {name: fields[col[name]] for name in names}
            raise ValueError(f"{line}: the face box is not integers: {values}") from None
        if box[2] <= 0 or box[3] <= 0:
            raise ValueError(f"{line}: face_width and face_height must be positive, "
                             f"got {box[2]} x {box[3]}")
        return box

    def _read_npy(self, annotations: Path) -> _Part:
        """Index one npy part: ids from ``*_exp.npy``, labels read from those small files."""
        suffix = "_exp.npy"
        skipped: dict[str, int] = {}
        ids = []
        for name in os.listdir(annotations):
            if is_hidden(name):
                skipped[hidden_reason(name)] = skipped.get(hidden_reason(name), 0) + 1
            elif name.endswith(suffix):
                ids.append(name[: -len(suffix)])
        ids.sort(key=lambda i: (0, int(i), "") if i.isdigit() else (1, 0, i))
        images = annotations.parent / "images"
        image_names = {name for name in os.listdir(images) if not is_hidden(name)}
        names, labels = [], []
        for sample_id in ids:
            exp_file = annotations / f"{sample_id}{suffix}"
            label = self._code(self._read_code(exp_file), str(exp_file), skipped)
            if label is None:
                continue
            names.append(f"{sample_id}.jpg")
            labels.append(label)
        orphans = len({Path(n).stem for n in image_names} - set(ids))
        if orphans:
            skipped["image_without_annotation"] = orphans
        if not ids:
            raise layout_error(annotations / f"<id>{suffix}", "AffectNet annotations", LAYOUT)
        return _Part(source=annotations, image_dir=images, names=names,
                     labels=np.asarray(labels, np.int64), skipped=skipped)

    @staticmethod
    def _read_code(path: Path) -> str:
        flat = _read_npy(path, "expression").reshape(-1)
        if flat.size != 1:
            raise ValueError(f"{path}: expected one expression code, got {flat.size} values")
        item = flat[0]
        return str(int(item)) if flat.dtype.kind in "iuf" and float(item).is_integer() \
            else str(item)

    # -- loading -----------------------------------------------------------------------

    def _load_csv(self, part: _Part, row: int) -> RawSample:
        crop, box = read_crop(part.path(row), part.boxes[row], f" (listed at {part.where(row)})")
        text = line_at(part.source, int(part.offsets[row]), part.codec)  # this row's landmarks
        fields = next(csv.reader([text]))
        points = _parse_landmarks(fields[part.landmark_column], part.where(row))
        return _with_landmarks(crop, int(part.labels[row]), points, box)

    def _load_npy(self, part: _Part, row: int) -> RawSample:
        path = part.path(row)
        image = read_image(path, f" ({part.where(row)})")
        lnd_file = path.parent.parent / "annotations" / f"{path.stem}_lnd.npy"
        if not lnd_file.is_file():
            return RawSample(image=image, label=int(part.labels[row]))
        points = _parse_landmarks(_read_npy(lnd_file, "landmark"), str(lnd_file))
        height, width = image.shape[:2]
        return _with_landmarks(image, int(part.labels[row]), points, (0, 0, width, height))
