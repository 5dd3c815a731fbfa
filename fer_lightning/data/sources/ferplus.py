"""FER+ (Barsoum et al., ICMI 2016): FER2013's images relabelled by 10 taggers, 8 classes.

Two on-disk forms (see docs/datasets.md), looked for in this order:

- the csv pair: ``fer2013.csv`` (pixels; see ``fer2013.py``) + ``fer2013new.csv``
  (``Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,
  unknown,NF``), rows aligned one to one. Rows with an empty image name (173 in the
  release) are skipped and counted.
- the folder release written by the reference's ``generate_training_data.py``:
  ``FER2013Train/``, ``FER2013Valid/``, ``FER2013Test/``, each with 48x48 PNGs and the
  header-less ``label.csv`` shipped in microsoft/FERPlus ``data/``: 12 fields per row,
  the image name, the face box as one quoted field ``"(left, top, right, bottom)"`` (in
  the release always ``"(0, 0, 48, 48)"``), then the 10 vote counts, e.g.
  ``fer0000000.png,"(0, 0, 48, 48)",4,0,0,1,3,2,0,0,0,0``. Names are not contiguous
  (images without a name in fer2013new.csv are absent). A header line is passed over.
  The box must lie inside its image (the image is cropped to it); a box past the border
  is an error, as it means the images were resized after the labels were written.

Votes become labels as in the reference pipeline (microsoft/FERPlus ``src/ferplus.py``,
``_process_data`` and ``load_folders``; the paper's Sec. 3): ``votes_to_distribution``.
The training split uses ``label_mode``; val and test use ``eval_label_mode`` (the
reference evaluates in ``majority`` mode whatever the training mode). Every sample
carries the resulting distribution over the 8 classes as ``target``, and its argmax as
the hard label used by metrics. What the reference does per training step with that
distribution (draw one class for ``probability``; the max-of-products loss for
``multi_target``) is the ``soft_ce`` loss's ``mode``.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fer_lightning.data.sources.base import (
    SPLITS,
    DatasetError,
    ListedImage,
    RawSample,
    SplitInfo,
)
from fer_lightning.data.sources.fer2013 import FERTable, read_fer_csv, split_usages
from fer_lightning.data.sources.io import (
    OUTSIDE_ROOT,
    box_not_within,
    csv_rows,
    hidden_reason,
    is_hidden,
    read_image,
    under_root,
)

CLASS_NAMES = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
               "contempt"]
VOTE_COLUMNS = [*CLASS_NAMES, "unknown", "NF"]
UNKNOWN, NOT_FACE = 8, 9
LABEL_MODES = ("majority", "probability", "crossentropy", "multi_target")
FOLDERS = {"Training": "FER2013Train", "PublicTest": "FER2013Valid",
           "PrivateTest": "FER2013Test"}
LAYOUT = (
    "expected either the csv pair\n"
    "  <root>/fer2013.csv (or data.source.fer2013_csv) + <root>/fer2013new.csv\n"
    "or the folder release\n"
    "  <root>/FER2013Train/, FER2013Valid/, FER2013Test/ each with label.csv + PNG images\n"
    "(github.com/microsoft/FERPlus)"
)

# Skip reasons, as counted in SplitInfo.skipped and printed by the summary.
EMPTY_NAME = "empty image name"
NO_MAJORITY = "no clear majority"
TOO_SPREAD = "votes too spread"
UNKNOWN_OR_NF = "unknown or not a face"
_NO_CONSENSUS = {"majority": NO_MAJORITY, "probability": TOO_SPREAD,
                 "crossentropy": TOO_SPREAD, "multi_target": TOO_SPREAD}


def _check_mode(key: str, mode: str) -> str:
    if mode not in LABEL_MODES:
        raise ValueError(f"data.source.{key}={mode!r}; allowed values: {list(LABEL_MODES)}")
    return mode


def _top_emotions(votes: list[float], total: float) -> list[float] | None:
    """probability / crossentropy: take the emotions tied at the current maximum, round
    after round, until they cover 75 % of the votes or 3 are taken; a tie reaching
    unknown / NF ends the search (dropping that column unless it came first)."""
    kept = [0.0] * len(votes)
    covered, count = 0.0, 0
    while covered < 0.75 * total and count < 3:
        top = max(votes)
        hit_unknown = False
        for i, value in enumerate(votes):
            if value != top:
                continue
            kept[i], votes[i] = top, 0.0
            covered += top
            count += 1
            if i >= UNKNOWN:
                hit_unknown = True
                if sum(kept) > top:
                    kept[i] = 0.0
                    count -= 1
                break
        if hit_unknown:
            break
    if sum(kept) <= 0.5 * total or count > 3:
        return None
    return kept


def process_votes(votes: Sequence[float], mode: str) -> list[float] | None:
    """The reference's ``_process_data``: 10 vote counts -> a distribution over the 10
    columns, or None where the reference substitutes its 'unknown' target.

    Counts of one vote or fewer are zeroed first (outlier taggers); totals are taken
    after that, unknown and NF included.
    """
    raw = [0.0 if v < 1.0 + sys.float_info.epsilon else float(v) for v in votes]
    total = sum(raw)
    if mode == "majority":
        top = max(raw)
        if not top > 0.5 * total:
            return None
        kept = [0.0] * len(raw)
        kept[raw.index(top)] = top
    elif mode in ("probability", "crossentropy"):
        kept = _top_emotions(raw, total)
    elif mode == "multi_target":
        kept = [v if v >= 0.3 * total else 0.0 for v in raw]
        if sum(kept) <= 0.5 * total:
            return None
    else:
        raise ValueError(f"label mode {mode!r}; allowed values: {list(LABEL_MODES)}")
    if kept is None:
        return None
    norm = sum(kept)
    return [v / norm for v in kept]


def votes_to_distribution(votes: Sequence[float], mode: str) -> tuple[np.ndarray | None, str]:
    """Votes of one image -> (distribution over the 8 classes, "") or (None, skip reason).

    As the reference's ``load_folders``: a sample whose distribution peaks at unknown or
    NF is dropped, then those two columns are removed and the rest renormalised. Unlike
    the reference's literal ``idx < emotion_count - 2`` (which also drops fear and
    contempt), all 8 emotions are kept, as the FER+ paper (Barsoum et al.) does.
    """
    emotion = process_votes(votes, mode)
    if emotion is None:
        return None, _NO_CONSENSUS[mode]
    if int(np.argmax(emotion)) >= UNKNOWN:
        return None, UNKNOWN_OR_NF
    kept = np.asarray(emotion[:UNKNOWN], dtype=np.float64)
    return (kept / kept.sum()).astype(np.float32), ""


@dataclass
class _Split:
    """The kept samples of one split: where their pixels are, their targets and labels."""

    rows: np.ndarray  # csv form: row in fer2013.csv; folder form: index into ``files``
    targets: np.ndarray  # (n, 8) float32
    skipped: dict[str, int] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    origins: list[str] = field(default_factory=list)  # "label.csv, line N" per file
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)  # x, y, w, h

    @property
    def labels(self) -> np.ndarray:
        return self.targets.argmax(axis=1).astype(np.int64) if len(self.targets) \
            else np.zeros(0, np.int64)


def _parse_votes(path: Path, line: int, fields: Sequence[str]) -> list[float]:
    votes = []
    for name, text in zip(VOTE_COLUMNS, fields, strict=True):
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not (value >= 0.0 and value.is_integer()):
            raise ValueError(f"{path}, line {line}: {name} votes {text!r}; expected a "
                             f"non-negative integer count")
        votes.append(value)
    return votes


#: The fields of one row of a folder's label.csv, as the release writes them.
LABEL_CSV_FIELDS = ("image name", 'face box "(left, top, right, bottom)"', *VOTE_COLUMNS)


def parse_box(path: Path, line: int, text: str) -> tuple[int, int, int, int]:
    """label.csv's face box ``"(left, top, right, bottom)"`` -> (x, y, width, height).

    The reference (``src/ferplus.py``, ``load_folders``) reads the four integers between
    the brackets as left, top, right, bottom (``rect_util.Rect``).
    """
    inner = text.strip()
    values: list[int] = []
    if inner.startswith("(") and inner.endswith(")"):
        try:
            values = [int(part) for part in inner[1:-1].split(",")]
        except ValueError:
            values = []
    if len(values) != 4:
        raise ValueError(f"{path}, line {line}: face box {text!r}; expected four integers "
                         f"\"(left, top, right, bottom)\" such as \"(0, 0, 48, 48)\"")
    left, top, right, bottom = values
    if left < 0 or top < 0 or right <= left or bottom <= top:
        raise ValueError(f"{path}, line {line}: face box {text!r} is empty or negative; "
                         f"expected 0 <= left < right and 0 <= top < bottom")
    return left, top, right - left, bottom - top


def _is_header(fields: Sequence[str]) -> bool:
    """A first row naming the vote columns rather than holding counts (written by hand or
    by another tool; the release has none)."""
    names = [value.lower() for value in fields[-len(VOTE_COLUMNS):]]
    return names == [name.lower() for name in VOTE_COLUMNS]


def _build_split(entries: Sequence[tuple[int, str, list[float]]], mode: str
                 ) -> tuple[list[int], np.ndarray, dict[str, int]]:
    """(position, image name, votes) entries -> kept positions, targets, skip counts."""
    kept, targets, skipped = [], [], Counter()
    for position, name, votes in entries:
        if not name:
            skipped[EMPTY_NAME] += 1
            continue
        target, reason = votes_to_distribution(votes, mode)
        if target is None:
            skipped[reason] += 1
            continue
        kept.append(position)
        targets.append(target)
    array = np.stack(targets) if targets else np.zeros((0, len(CLASS_NAMES)), np.float32)
    return kept, array, dict(skipped)


class FERPlusSource:
    """FER+ labels over FER2013 images, 8 classes in FER+ order, soft targets included.

    ``label_mode`` (train) and ``eval_label_mode`` (val, test) are one of
    ``majority | probability | crossentropy | multi_target``; ``splits`` maps splits to
    Usage values as for FER2013 (folders: Training -> FER2013Train, PublicTest ->
    FER2013Valid, PrivateTest -> FER2013Test). ``layout`` is ``auto | csv | folders``.
    """

    class_names = CLASS_NAMES

    def __init__(self, root: str | Path, label_mode: str = "majority",
                 eval_label_mode: str = "majority",
                 splits: Mapping[str, str | Sequence[str]] | None = None,
                 fer2013_csv: str | Path | None = None, layout: str = "auto") -> None:
        self.root = Path(root)
        self.label_mode = _check_mode("label_mode", label_mode)
        self.eval_label_mode = _check_mode("eval_label_mode", eval_label_mode)
        self.splits = split_usages(splits, allow_holdout=False)
        if not self.root.is_dir():
            raise FileNotFoundError(f"FER+ root {self.root} is not a directory; {LAYOUT}")
        self.votes_csv = self.root / "fer2013new.csv"
        self.pixels_csv = Path(fer2013_csv) if fer2013_csv else self.root / "fer2013.csv"
        self.layout = self._pick_layout(layout)
        self._table: FERTable | None = None
        self._votes: list[tuple[str, str, list[float], int]] = []
        self._splits: dict[str, _Split] = {}

    def _pick_layout(self, layout: str) -> str:
        folders_present = all((self.root / name).is_dir() for name in FOLDERS.values())
        pair_present = self.votes_csv.is_file() and self.pixels_csv.is_file()
        if layout not in ("auto", "csv", "folders"):
            raise ValueError(f"data.source.layout={layout!r}; allowed: ['auto', 'csv', 'folders']")
        if layout == "csv" or (layout == "auto" and not folders_present):
            for path in (self.votes_csv, self.pixels_csv):
                if not path.is_file():
                    raise FileNotFoundError(f"FER+: {path} not found; {LAYOUT}")
            return "csv"
        if layout == "auto" and pair_present:
            return "csv"
        for name in FOLDERS.values():
            if not (self.root / name / "label.csv").is_file():
                raise FileNotFoundError(f"FER+: {self.root / name / 'label.csv'} not found; "
                                        f"{LAYOUT}")
        return "folders"

    def mode(self, split: str) -> str:
        """The label mode ``split`` is processed with."""
        return self.label_mode if split == "train" else self.eval_label_mode

    def describe(self) -> str:
        """One line saying which files are read and how (for summaries)."""
        where = (f"{self.pixels_csv} + {self.votes_csv}" if self.layout == "csv"
                 else f"{self.root}/FER2013{{Train,Valid,Test}}")
        return (f"{where}: label_mode={self.label_mode} (train), "
                f"eval_label_mode={self.eval_label_mode} (val, test)")

    # -- Source protocol ---------------------------------------------------------------

    def split_info(self, split: str) -> SplitInfo:
        """Hard labels (argmax of the targets) and skip counts by reason."""
        data = self._split(split)
        return SplitInfo(labels=data.labels, skipped=dict(data.skipped))

    def load(self, split: str, index: int) -> RawSample:
        """Image, hard label and the soft ``target`` of sample ``index`` of ``split``."""
        data = self._split(split)
        target = data.targets[index]
        if self.layout == "csv":
            image = self._csv_table().images[data.rows[index]]
        else:
            image = self._read_face(data.files[index], data.origins[index], data.boxes[index])
        return RawSample(image=image, label=int(target.argmax()), target=target.copy())

    def image_files(self, split: str) -> list[ListedImage]:
        """The PNG of every kept sample of ``split`` (folder release; none for the csv
        pair, whose pixels are in fer2013.csv)."""
        data = self._split(split)
        return [ListedImage(path, f"listed in {origin}", box, box_within=True)
                for path, origin, box in zip(data.files, data.origins, data.boxes,
                                             strict=True)]

    def targets(self, split: str) -> np.ndarray:
        """(n, 8) float32 soft targets of every kept sample of ``split``."""
        return self._split(split).targets

    # -- internals ---------------------------------------------------------------------

    def _split(self, split: str) -> _Split:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
        if split not in self._splits:
            build = self._csv_split if self.layout == "csv" else self._folder_split
            self._splits[split] = build(split)
        return self._splits[split]

    def _csv_table(self) -> FERTable:
        if self._table is None:
            self._table = read_fer_csv(self.pixels_csv)
            self._votes = self._read_votes_csv(len(self._table.usage))
        return self._table

    def _read_votes_csv(self, expected_rows: int) -> list[tuple[str, str, list[float], int]]:
        """fer2013new.csv -> (usage, image name, votes, line) per row, checked against
        fer2013.csv row by row (same count, same Usage)."""
        path, table = self.votes_csv, self._table
        reader = csv_rows(path)
        _, header = next(reader, (0, None))
        if header is None:
            raise ValueError(f"{path} is empty; expected header Usage,Image name,"
                             f"{','.join(VOTE_COLUMNS)}")
        names = [name.strip() for name in header]
        required = ["Usage", "Image name", *VOTE_COLUMNS]
        missing = [name for name in required if name not in names]
        if missing:
            raise ValueError(f"{path}, line 1: header {header} lacks column(s) {missing}; "
                             f"expected {','.join(required)}")
        columns = [names.index(name) for name in required]
        rows = []
        for line, row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise ValueError(f"{path}, line {line}: {len(row)} fields; expected "
                                 f"{len(header)}")
            index = len(rows)
            usage = row[columns[0]].strip()
            if index < expected_rows and usage != table.usage[index]:
                raise ValueError(
                    f"{path}, line {line}: Usage {usage!r} but {table.path} line "
                    f"{table.lines[index]} says {table.usage[index]!r}; the two files "
                    f"must list the same images in the same order")
            votes = _parse_votes(path, line, [row[c].strip() for c in columns[2:]])
            rows.append((usage, row[columns[1]].strip(), votes, line))
        if len(rows) != expected_rows:
            raise ValueError(f"{path} has {len(rows)} data rows but {table.path} has "
                             f"{expected_rows}; the rows must align one to one")
        return rows

    def _csv_split(self, split: str) -> _Split:
        self._csv_table()
        usages = self.splits[split]
        entries = [(row, name, votes) for row, (usage, name, votes, _) in enumerate(self._votes)
                   if usage in usages]
        kept, targets, skipped = _build_split(entries, self.mode(split))
        return _Split(rows=np.asarray(kept, dtype=np.int64), targets=targets, skipped=skipped)

    @staticmethod
    def _read_face(path: Path, origin: str, box: tuple[int, int, int, int]) -> np.ndarray:
        """The image at ``path`` cropped to its label.csv ``box`` (the whole image in the
        release); a box not inside the image is a DatasetError naming file and line."""
        image = read_image(path, f" (listed in {origin})", colour="keep")
        height, width = image.shape[:2]
        problem = box_not_within(box, width, height)
        if problem is not None:
            raise DatasetError(f"{path} (listed in {origin}): {problem}")
        x, y, w, h = box
        if (x, y, w, h) == (0, 0, width, height):
            return image
        return np.ascontiguousarray(image[y:y + h, x:x + w])

    def _folder_split(self, split: str) -> _Split:
        entries, files, origins, boxes = [], [], [], []
        outside = Counter()
        for usage in self.splits[split]:
            folder = self.root / FOLDERS[usage]
            label_csv = folder / "label.csv"
            present = set(os.listdir(folder))
            for line, name, box, votes in self._read_label_csv(label_csv):
                path = under_root(folder, name) if name else folder
                base = os.path.basename(name)
                if path is None or is_hidden(base):
                    outside[OUTSIDE_ROOT if path is None else hidden_reason(base)] += 1
                    continue
                if name and not (name in present or path.is_file()):
                    raise FileNotFoundError(f"{label_csv}, line {line}: image {name!r} is "
                                            f"listed but {path} does not exist")
                entries.append((len(files), name, votes))
                files.append(path)
                origins.append(f"{label_csv}, line {line}")
                boxes.append(box)
        kept, targets, skipped = _build_split(entries, self.mode(split))
        skipped.update(outside)
        return _Split(rows=np.asarray(kept, dtype=np.int64), targets=targets, skipped=skipped,
                      files=[files[i] for i in kept], origins=[origins[i] for i in kept],
                      boxes=[boxes[i] for i in kept])

    @staticmethod
    def _read_label_csv(path: Path) -> list[tuple[int, str, tuple[int, int, int, int],
                                                    list[float]]]:
        """A folder's label.csv: (line, image name, face box (x, y, w, h), 10 votes) per
        row, 12 fields as the release writes them; a header line, if present, is passed
        over."""
        rows = []
        for line, row in csv_rows(path):
            fields = [value.strip() for value in row]
            if not fields or (not rows and _is_header(fields)):
                continue
            if len(fields) != len(LABEL_CSV_FIELDS):
                raise ValueError(f"{path}, line {line}: {len(fields)} fields; expected "
                                 f"{len(LABEL_CSV_FIELDS)} ({', '.join(LABEL_CSV_FIELDS)}), "
                                 f"as in fer0000000.png,\"(0, 0, 48, 48)\",4,0,0,1,3,2,0,0,0,0")
            box = parse_box(path, line, fields[1])
            rows.append((line, fields[0], box, _parse_votes(path, line, fields[2:])))
        return rows
