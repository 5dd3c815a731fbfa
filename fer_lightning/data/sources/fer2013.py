"""FER2013 (Goodfellow et al., ICML 2013 challenge) in the three csv forms it is distributed in.

``data.root`` is a folder holding one of (first found wins, or pick with ``file=``):

- ``fer2013.csv``: header ``emotion,pixels,Usage`` (35,887 rows);
- ``icml_face_data.csv``: the same rows, header ``emotion, Usage, pixels`` (column names
  with a leading space);
- ``train.csv`` (``emotion,pixels``, the 28,709 Training rows) + ``test.csv`` (``pixels``
  only): Kaggle's competition files. test.csv carries no labels, so this form has no
  test split, and val is a seeded, stratified hold-out of train.csv.

The same files under ``<root>/fer2013/`` (torchvision's layout) are found too. ``pixels``
holds 2304 space-separated integers, a 48x48 grey image in row-major order. Rows map to
splits by their ``Usage``: by default train = Training, val = PublicTest, test =
PrivateTest (the common convention, followed by MBA (Colaco & Han) and VGG16-CBAM
(Ghimire et al.); see docs/datasets.md).

Parsing is vectorised: the pixel strings of a few hundred rows are parsed at once over
their bytes (``parse_digits``: numpy releases the GIL there, so chunks parse on several
threads while the file is read), and the images are kept as one (N, 48, 48) uint8 array
(83 MB for the full file). Rows not written as the published files are (extra spaces,
signs, leading zeros beyond three digits) go through ``np.fromstring``; any malformed
row is an error naming the file and its line.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_lightning.data.sources.base import (
    SPLITS,
    RawSample,
    SplitInfo,
    SplitUnavailableError,
)
from fer_lightning.data.sources.holdout import stratified_holdout
from fer_lightning.data.sources.io import csv_rows
from fer_lightning.launch import available_cpus, thread_budget

log = logging.getLogger(__name__)

CLASS_NAMES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
SIDE = 48
NUM_PIXELS = SIDE * SIDE
USAGES = ("Training", "PublicTest", "PrivateTest")
DEFAULT_SPLITS = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
#: Mapping value that carves val out of the train split instead of naming a Usage.
HOLDOUT = "holdout"
#: Files in the order they are looked for, with the columns each must have.
CSV_FORMS = {
    "fer2013.csv": ("emotion", "pixels", "Usage"),
    "icml_face_data.csv": ("emotion", "Usage", "pixels"),
    "train.csv": ("emotion", "pixels"),
}
LAYOUT = (
    "expected one of:\n"
    "  <root>/fer2013.csv          (emotion,pixels,Usage)\n"
    "  <root>/icml_face_data.csv   (emotion, Usage, pixels)\n"
    "  <root>/train.csv [+ test.csv] (emotion,pixels; test.csv has no labels)\n"
    "(or the same under <root>/fer2013/), from Kaggle's FER2013 challenge"
)
#: Rows parsed per call: bounds each parse's scratch arrays to about 20 MB.
CHUNK_ROWS = 256
#: Most threads parsing chunks at once (fewer with FER_THREADS or fewer cores).
MAX_PARSE_THREADS = 4


@dataclass
class FERTable:
    """A parsed FER2013-style csv: one entry per data row, in file order."""

    path: Path
    images: np.ndarray  # (N, 48, 48) uint8
    labels: np.ndarray | None  # (N,) int64, or None when the file has no label column
    usage: np.ndarray  # (N,) str: the Usage column, or "Training" for train.csv
    lines: np.ndarray  # (N,) int64: line of each row in the file (header is line 1)


def find_csv(root: str | Path, file: str = "auto") -> Path:
    """The FER2013 csv to read under ``root``: ``file`` if given, else the first of
    CSV_FORMS present in ``root`` or ``root/fer2013``. Errors name the path and layout."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"FER2013 root {root} is not a directory; {LAYOUT}")
    if file != "auto" and file not in CSV_FORMS:
        raise ValueError(f"data.source.file={file!r}; allowed values: "
                         f"{['auto', *CSV_FORMS]}")
    names = list(CSV_FORMS) if file == "auto" else [file]
    for folder in (root, root / "fer2013"):
        for name in names:
            if (folder / name).is_file():
                return folder / name
    wanted = "any of " + ", ".join(names) if file == "auto" else file
    raise FileNotFoundError(f"no FER2013 csv in {root} (looked for {wanted}); {LAYOUT}")


def _rows_error(path: Path, line: int, message: str) -> ValueError:
    return ValueError(f"{path}, line {line}: {message}")


def _column_indices(path: Path, header: Sequence[str], required: Sequence[str]) -> list[int]:
    """Positions of ``required`` columns; names are compared with surrounding spaces removed
    (icml_face_data.csv writes `` Usage`` and `` pixels``)."""
    names = [name.strip() for name in header]
    missing = [name for name in required if name not in names]
    if missing:
        raise ValueError(f"{path}, line 1: header {header} lacks column(s) {missing}; "
                         f"expected columns {list(required)}")
    return [names.index(name) for name in required]


def _parse_row_pixels(path: Path, line: int, text: str) -> np.ndarray:
    """One row's pixel string -> (2304,) int64; the slow, precise path used for errors."""
    try:
        values = np.fromstring(text, dtype=np.int64, sep=" ")
    except ValueError:
        raise _rows_error(path, line, f"pixels {text[:40]!r}... are not space-separated "
                                      f"integers") from None
    if values.size != NUM_PIXELS:
        raise _rows_error(path, line, f"pixels hold {values.size} values; expected "
                                      f"{NUM_PIXELS} (48x48)")
    bad = np.flatnonzero((values < 0) | (values > 255))
    if bad.size:
        raise _rows_error(path, line, f"pixel {bad[0]} is {values[bad[0]]}; expected 0..255")
    return values


def parse_digits(texts: Sequence[str]) -> np.ndarray | None:
    """Pixel strings written as the published files are (2304 values of one to three
    digits, one space between them) -> (n, 48, 48) uint8; None for anything else.

    Works on the bytes of the rows joined by line breaks: every separator must be a space,
    except a line break after each 2304th value, every other byte a digit, every value one
    to three digits and at most 255. A value is read from its last three bytes (digits
    before its start count as zero), so the whole chunk is a few numpy passes.
    """
    n = len(texts)
    try:
        data = np.frombuffer("\n".join(texts).encode("ascii"), np.uint8)
    except UnicodeEncodeError:
        return None
    separators = np.flatnonzero(data <= ord(" "))
    if separators.size != n * NUM_PIXELS - 1:
        return None
    expected = np.full(separators.size, ord(" "), np.uint8)
    expected[NUM_PIXELS - 1::NUM_PIXELS] = ord("\n")
    if not np.array_equal(data[separators], expected):
        return None
    digits = data - np.uint8(ord("0"))
    if np.count_nonzero(digits > 9) != separators.size:
        return None
    bounds = np.empty(n * NUM_PIXELS + 1, np.int32)  # separators, with one before and after
    bounds[0], bounds[1:-1], bounds[-1] = -1, separators, data.size
    length = np.diff(bounds) - 1
    if length.min() < 1 or length.max() > 3:
        return None
    padded = np.concatenate([np.zeros(2, np.uint8), digits])  # index i + 2 is byte i
    ends = bounds[1:]  # padded[ends + 1] is each value's last digit
    values = padded[ends + 1].astype(np.uint16)
    values += (length >= 2) * (padded[ends] * np.uint16(10))
    values += (length >= 3) * (padded[ends - 1] * np.uint16(100))
    if values.max() > 255:
        return None
    return values.astype(np.uint8).reshape(n, SIDE, SIDE)


def parse_pixels(path: Path, lines: Sequence[int], texts: Sequence[str]) -> np.ndarray:
    """Pixel strings -> (n, 48, 48) uint8, with one vectorised parse per call.

    ``parse_digits`` first; rows it does not take (other spacing, signs, four-digit
    zero-padded values) are joined with a ``-1`` sentinel between them, so one
    ``np.fromstring`` both reads every value and proves every row has exactly 2304 of
    them (the sentinels must land at every 2305th position). Anything unexpected
    re-parses row by row to name the line.
    """
    n = len(texts)
    if n == 0:
        return np.zeros((0, SIDE, SIDE), np.uint8)
    fast = parse_digits(texts)
    if fast is not None:
        return fast
    try:
        values = np.fromstring(" -1 ".join(texts), dtype=np.int64, sep=" ")
    except ValueError:
        values = None
    if values is not None and values.size == n * (NUM_PIXELS + 1) - 1:
        grid = np.append(values, -1).reshape(n, NUM_PIXELS + 1)
        pixels = grid[:, :NUM_PIXELS]
        if (grid[:, NUM_PIXELS] == -1).all() and pixels.min() >= 0 and pixels.max() <= 255:
            return pixels.astype(np.uint8).reshape(n, SIDE, SIDE)
    for line, text in zip(lines, texts, strict=True):
        _parse_row_pixels(path, line, text)
    raise AssertionError(f"{path}: a chunk failed to parse but every row parsed alone")


def parse_threads() -> int:
    """Threads parsing pixel chunks: the cores this process may use (or ``FER_THREADS``),
    at most ``MAX_PARSE_THREADS``."""
    return max(1, min(MAX_PARSE_THREADS, thread_budget() or available_cpus()))


class ChunkParser:
    """``parse_pixels`` of chunk after chunk, on ``parse_threads()`` threads while the
    caller reads on, with at most two chunks per thread in flight (memory stays bounded);
    ``images()`` returns the chunks in the order they were added, raising the error of
    the first bad one. One thread: each chunk is parsed when it is added."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        self.path, self.threads = path, parse_threads() if threads is None else threads
        self.pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None
        self.pending: deque[Future] = deque()
        self.done: list[np.ndarray] = []

    def __enter__(self) -> ChunkParser:
        return self

    def __exit__(self, *exc_info) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def add(self, lines: Sequence[int], texts: Sequence[str]) -> None:
        """Parse the pixel strings ``texts`` of file lines ``lines`` (as soon as a thread
        is free; waits while every thread has a chunk queued)."""
        if self.pool is None:
            self.done.append(parse_pixels(self.path, lines, texts))
            return
        self.pending.append(self.pool.submit(parse_pixels, self.path, list(lines), texts))
        while len(self.pending) > 2 * self.threads:
            self.done.append(self.pending.popleft().result())

    def images(self) -> list[np.ndarray]:
        """Every chunk's (n, 48, 48) images, in order."""
        while self.pending:
            self.done.append(self.pending.popleft().result())
        return self.done


def _label(path: Path, line: int, text: str, num_classes: int) -> int:
    try:
        label = int(text)
    except ValueError:
        label = -1
    if not 0 <= label < num_classes:
        raise _rows_error(path, line, f"emotion {text!r} is not a class index; expected an "
                                      f"integer in 0..{num_classes - 1}")
    return label


def read_fer_csv(path: str | Path, labelled: bool = True) -> FERTable:
    """Parse a FER2013-style csv (any of CSV_FORMS; ``labelled=False`` accepts test.csv).

    Streams the file: pixel strings are parsed ``CHUNK_ROWS`` at a time and dropped, so
    peak memory is the uint8 images plus one chunk of text. fer2013.csv and
    icml_face_data.csv must have their ``Usage`` column (without it every row would land
    in train); a csv of another name may leave it out, then every row is Training.
    """
    path = Path(path)
    rows = csv_rows(path)
    try:
        _, header = next(rows)
    except StopIteration:
        raise ValueError(f"{path} is empty; expected a header line and data rows") from None
    names = [name.strip() for name in header]
    required = ["emotion", "pixels"] if labelled else ["pixels"]
    has_usage = "Usage" in names
    if "Usage" in CSV_FORMS.get(path.name, ()) and not has_usage and "emotion" in names:
        raise ValueError(f"{path}, line 1: header {header} has no Usage column, which assigns "
                         f"rows to train/val/test; expected {','.join(CSV_FORMS[path.name])}. "
                         f"For a csv of training rows only, name it train.csv (val is then "
                         f"a hold-out of it and there is no test split)")
    columns = _column_indices(path, header, required + (["Usage"] if has_usage else []))
    labels, usage, lines = [], [], []
    texts, chunk_lines = [], []
    with ChunkParser(path) as parser:
        try:
            for line, row in rows:
                if not row:  # a blank line holds no row
                    continue
                if len(row) != len(header):
                    raise _rows_error(path, line, f"{len(row)} fields; expected "
                                                  f"{len(header)} ({','.join(header)})")
                if labelled:
                    labels.append(_label(path, line, row[columns[0]].strip(),
                                         len(CLASS_NAMES)))
                if has_usage:
                    value = row[columns[-1]].strip()
                    if value not in USAGES:
                        raise _rows_error(path, line, f"Usage {value!r}; expected one of "
                                                      f"{list(USAGES)}")
                    usage.append(value)
                texts.append(row[columns[required.index("pixels")]])
                chunk_lines.append(line)
                if len(texts) == CHUNK_ROWS:
                    parser.add(chunk_lines, texts)
                    lines.extend(chunk_lines)
                    texts, chunk_lines = [], []
        except ValueError:
            parser.images()  # a bad pixel string on an earlier line is reported first
            raise
        parser.add(chunk_lines, texts)
        lines.extend(chunk_lines)
        chunks = parser.images()
    n = len(lines)
    return FERTable(
        path=path,
        images=np.concatenate(chunks) if len(chunks) > 1 else chunks[0],
        labels=np.asarray(labels, dtype=np.int64) if labelled else None,
        usage=np.asarray(usage if has_usage else ["Training"] * n, dtype=object),
        lines=np.asarray(lines, dtype=np.int64),
    )


def split_usages(splits: Mapping[str, str | Sequence[str]] | None,
                 allow_holdout: bool = True) -> dict[str, tuple[str, ...]]:
    """Normalise a ``{split: Usage or [Usages]}`` mapping and reject overlaps (leakage)."""
    splits = dict(DEFAULT_SPLITS if splits is None else splits)
    if set(splits) != set(SPLITS):
        raise ValueError(f"data.source.splits must map exactly {list(SPLITS)} to Usage values, "
                         f"got keys {sorted(splits)}")
    allowed = [*USAGES, HOLDOUT] if allow_holdout else list(USAGES)
    result: dict[str, tuple[str, ...]] = {}
    for split in SPLITS:
        value = splits[split]
        usages = (value,) if isinstance(value, str) else tuple(value)
        bad = [u for u in usages if u not in allowed]
        if not usages or bad:
            raise ValueError(f"data.source.splits.{split}={value!r}; each value must be one "
                             f"of {allowed}")
        if HOLDOUT in usages and (split != "val" or len(usages) > 1):
            raise ValueError(f"data.source.splits.{split}={value!r}: {HOLDOUT!r} is only "
                             f"valid alone, for val (a hold-out of the train split)")
        result[split] = usages
    seen: dict[str, str] = {}
    for split, usages in result.items():
        for usage in usages:
            if usage in seen and usage != HOLDOUT:
                raise ValueError(f"data.source.splits: Usage {usage!r} is mapped to both "
                                 f"{seen[usage]} and {split}; splits must not overlap")
            seen[usage] = split
    return result


class FER2013Source:
    """FER2013 from any of its csv forms, 7 classes in FER2013 order.

    ``splits`` maps each split to a Usage (or a list of them); ``val: holdout`` carves a
    seeded, stratified ``holdout_fraction`` of the train rows out as val. With the
    train.csv form, val is always that hold-out (PublicTest labels are not in the
    competition files) and asking for test raises SplitUnavailableError. The csv is
    parsed on first use, not at construction, so configs can be built cheaply.
    """

    class_names = CLASS_NAMES

    def __init__(self, root: str | Path, file: str = "auto",
                 splits: Mapping[str, str | Sequence[str]] | None = None,
                 holdout_fraction: float = 0.1, seed: int = 0) -> None:
        self.root = Path(root)
        self.path = find_csv(self.root, file)
        self.splits = split_usages(splits)
        self.holdout_fraction = holdout_fraction
        self.seed = seed
        self.labelled_test = self.path.name != "train.csv"
        if not self.labelled_test and self.splits["val"] != (HOLDOUT,):
            log.info("%s has only Training rows: val is a stratified %.0f%% hold-out of them "
                     "(seed %d), not %s", self.path, 100 * holdout_fraction, seed,
                     "+".join(self.splits["val"]))
        if not 0.0 < holdout_fraction < 1.0:
            raise ValueError(f"data.source.holdout_fraction must be in (0, 1), "
                             f"got {holdout_fraction}")
        self._table: FERTable | None = None
        self._indices: dict[str, np.ndarray] = {}

    @property
    def table(self) -> FERTable:
        """The parsed csv (parsed once, on first access)."""
        if self._table is None:
            self._table = read_fer_csv(self.path)
        return self._table

    def describe(self) -> str:
        """One line saying which file is read and how splits are formed (for summaries)."""
        if not self.labelled_test:
            return (f"{self.path}: train.csv form; val = stratified {self.holdout_fraction:g} "
                    f"hold-out of train (seed {self.seed}); no labelled test split")
        parts = [f"{split}={'+'.join(usages)}" for split, usages in self.splits.items()]
        if self.splits["val"] == (HOLDOUT,):
            parts.append(f"holdout_fraction={self.holdout_fraction:g} seed={self.seed}")
        return f"{self.path}: " + ", ".join(parts)

    def split_indices(self, split: str) -> np.ndarray:
        """Row numbers (0-based, in file order) of ``split``."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
        if split == "test" and not self.labelled_test:
            raise SplitUnavailableError(
                f"FER2013 test split requested, but {self.path.parent} has the train.csv + "
                f"test.csv form and test.csv has no labels (Kaggle competition file). Use "
                f"fer2013.csv or icml_face_data.csv (same images, with PrivateTest labels), "
                f"or run without testing (test=false)")
        if split not in self._indices:
            self._indices.update(self._make_indices())
        return self._indices[split]

    def _make_indices(self) -> dict[str, np.ndarray]:
        table = self.table
        if not self.labelled_test:
            train, val = stratified_holdout(table.labels, self.holdout_fraction, self.seed)
            return {"train": train, "val": val}
        indices = {split: np.flatnonzero(np.isin(table.usage, usages))
                   for split, usages in self.splits.items() if usages != (HOLDOUT,)}
        if self.splits["val"] == (HOLDOUT,):
            rows = indices["train"]
            train, val = stratified_holdout(table.labels[rows], self.holdout_fraction, self.seed)
            indices["train"], indices["val"] = rows[train], rows[val]
        return indices

    def split_info(self, split: str) -> SplitInfo:
        """Labels of ``split``; FER2013 skips no rows (bad rows are errors)."""
        return SplitInfo(labels=self.table.labels[self.split_indices(split)])

    def load(self, split: str, index: int) -> RawSample:
        """The 48x48 uint8 image and label of sample ``index`` of ``split``."""
        row = self.split_indices(split)[index]
        return RawSample(image=self.table.images[row], label=int(self.table.labels[row]))
