"""RAF-DB basic emotions, read as distributed (``data=rafdb data.root=<dir>``).

Layout (see docs/datasets.md)::

    root/
      EmoLabel/list_patition_label.txt    ("partition" misspelt, as shipped)
      Image/aligned/train_00001_aligned.jpg ...   (100x100 RGB; variant=aligned)
      Image/original/train_00001.jpg ...          (variant=original)

Each label-file line is ``<name> <label>`` with labels 1..7 = surprise, fear, disgust,
happiness, sadness, anger, neutral (RAF-DB's order, kept; stored 0-based).

Splits. ``split=official`` (default): the name prefix, ``train_`` (12,271) and ``test_``
(3,068). ``split=resplit``: every listed image pooled and cut again into train and test
at ``resplit_ratio``:1, per class (stratified) with ``seed``, as MS-FPN (Zhang et al.,
Sec. 4.1-4.2) does with a 5:1 split "balanced" over the expressions. RAF-DB has no
validation split: ``val_split=holdout`` (default) holds a seeded, stratified
``val_fraction`` of train out as val; ``val_split=test`` validates on the test split
(as most papers report).

A name that leaves the image folder (``train_/../../x.jpg``, an absolute path) is skipped
and counted as ``path_outside_root`` (with the line in the log), never read.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path

import numpy as np

from fer_lightning.checks import check_choice
from fer_lightning.data.sources.base import SPLITS, ListedImage, RawSample, SplitInfo
from fer_lightning.data.sources.holdout import stratified_holdout, stratified_partition
from fer_lightning.data.sources.io import (
    OUTSIDE_ROOT,
    check_files_exist,
    read_image,
    read_text,
    require,
    under_root,
)

log = logging.getLogger(__name__)

CLASS_NAMES = ["surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral"]
LABEL_FILE = "EmoLabel/list_patition_label.txt"
VARIANTS = ("aligned", "original")
SPLIT_PROTOCOLS = ("official", "resplit")
VAL_SPLITS = ("holdout", "test")
PARTITIONS = ("train", "test")  # file-name prefixes

LAYOUT = """\
root/
  EmoLabel/list_patition_label.txt   lines "train_00001.jpg 5" (labels 1..7)
  Image/aligned/train_00001_aligned.jpg ...   (data.source.variant=aligned)
  Image/original/train_00001.jpg ...          (data.source.variant=original)"""


def _prefix(where: str, name: str) -> str:
    """The partition a label-file name is written with (``train`` / ``test``)."""
    prefix = name.split("_", 1)[0]
    if prefix not in PARTITIONS:
        raise ValueError(f"{where}: image name {name!r} starts with neither 'train_' "
                         f"nor 'test_' (the split is the name prefix)")
    return prefix


def _normalised(where: str, name: str, prefix: str) -> str:
    """``name`` with ``.``, ``..`` and repeated separators resolved, as the file system
    reads it, so the prefix and duplicate checks see the file actually read: written
    ``test_/../train_00001.jpg`` is train_00001.jpg, a train image, and must not count as
    a test image."""
    normal = os.path.normpath(name.replace("\\", "/")).replace(os.sep, "/")
    if normal.split("_", 1)[0] != prefix:
        raise ValueError(f"{where}: image name {name!r} is {normal!r} once '..' and '.' are "
                         f"resolved, so its prefix says '{prefix}_' but the file read is a "
                         f"'{normal.split('_', 1)[0]}_' image; write the name as it is")
    return normal


class RafDB:
    """RAF-DB basic (7 classes) from its label file and aligned or original images.

    The label file is parsed at construction (names, labels, line numbers only); that
    every listed image exists is checked once per split, at its first ``split_info``;
    images are decoded per ``load`` (RGB uint8), and an undecodable one raises an error
    naming the file and its label-file line.
    """

    def __init__(self, root: str | os.PathLike, variant: str = "aligned",
                 val_split: str = "holdout", val_fraction: float = 0.1, seed: int = 0,
                 split: str = "official", resplit_ratio: float = 5.0) -> None:
        check_choice("data.source.variant", variant, VARIANTS)
        check_choice("data.source.val_split", val_split, VAL_SPLITS)
        check_choice("data.source.split", split, SPLIT_PROTOCOLS)
        if isinstance(resplit_ratio, bool) or not isinstance(resplit_ratio, (int, float)) \
                or not resplit_ratio > 0:
            raise ValueError(f"data.source.resplit_ratio must be a number > 0 (train images "
                             f"per test image), got {resplit_ratio!r}")
        self.class_names = list(CLASS_NAMES)
        self.variant, self.val_split = variant, val_split
        self.val_fraction, self.seed = val_fraction, seed
        self.split, self.resplit_ratio = split, float(resplit_ratio)
        self.root = require(Path(root), "RAF-DB root", LAYOUT, directory=True)
        self.label_file = require(self.root / LABEL_FILE, "RAF-DB label file", LAYOUT)
        self.image_dir = self._image_dir()
        self._paths: list[Path] = []
        self._skipped: dict[str, Counter] = {part: Counter() for part in PARTITIONS}
        self._names, self._labels, self._lines, partition = self._parse_labels()
        self._index = self._split_indices(partition)
        self._checked: set[str] = set()

    # -- Source protocol ---------------------------------------------------------------

    def split_info(self, split: str) -> SplitInfo:
        """Labels of ``split`` (0-based) and rows skipped; raises if an image it lists is
        missing."""
        index = self._split(split)
        if split not in self._checked:
            paths = [self._paths[i] for i in index]
            where = [f"{self.label_file}:{self._lines[i]}" for i in index]
            check_files_exist(paths, where, f"RAF-DB {split} images listed in {self.label_file}")
            self._checked.add(split)
        return SplitInfo(labels=self._labels[index].copy(), skipped=self._split_skips(split))

    def load(self, split: str, index: int) -> RawSample:
        """Decode image ``index`` of ``split`` (RGB uint8, no landmarks)."""
        row = int(self._split(split)[index])
        image = read_image(self._paths[row], f" (listed at {self.label_file}:{self._lines[row]})")
        return RawSample(image=image, label=int(self._labels[row]))

    # -- helpers beyond the protocol ---------------------------------------------------

    def path(self, split: str, index: int) -> Path:
        """The image file of sample ``index`` of ``split``."""
        return self._paths[int(self._split(split)[index])]

    def image_files(self, split: str) -> list[ListedImage]:
        """The image file of every sample of ``split``, with its label-file line."""
        return [ListedImage(self._paths[i], f"listed at {self.label_file}:{self._lines[i]}")
                for i in self._split(split)]


    def describe(self) -> str:
        """One line: what is read and how the splits are formed (for summaries)."""
        val = ("val = test split" if self.val_split == "test" else
               f"val = stratified {self.val_fraction:g} hold-out of train (seed {self.seed})")
        split = ("train_/test_ prefixes" if self.split == "official" else
                 f"resplit: all images cut {self.resplit_ratio:g}:1 into train/test, "
                 f"stratified (seed {self.seed})")
        return f"{self.label_file} + {self.image_dir}: {split}; {val}"

    # -- internals ---------------------------------------------------------------------

    def _image_dir(self) -> Path:
        image_dir = self.root / "Image" / self.variant
        if not image_dir.is_dir():
            other = VARIANTS[1 - VARIANTS.index(self.variant)]
            hint = (f"\n{self.root / 'Image' / other} exists: set data.source.variant={other}"
                    if (self.root / "Image" / other).is_dir() else "")
            raise FileNotFoundError(f"RAF-DB image folder not found: {image_dir}{hint}\n"
                                    f"Expected layout:\n{LAYOUT}")
        return image_dir

    def _file_name(self, name: str) -> str:
        if self.variant == "aligned":
            stem, _ = os.path.splitext(name)
            return f"{stem}_aligned.jpg"
        return name

    def _parse_labels(self) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        """Names, 0-based labels, 1-based line numbers and partition ids of every row
        kept; rows naming a path outside the image folder are counted and left out."""
        names, labels, lines, partition = [], [], [], []
        seen: dict[str, int] = {}
        for number, line in enumerate(read_text(self.label_file).splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            where = f"{self.label_file}:{number}"
            if len(fields) != 2:
                raise ValueError(f"{where}: expected '<image name> <label 1..7>', got {line!r}")
            name, label = fields
            if not label.isdigit() or not 1 <= int(label) <= len(CLASS_NAMES):
                raise ValueError(f"{where}: label {label!r} of {name} is not in 1..7 "
                                 f"({', '.join(CLASS_NAMES)})")
            prefix = _prefix(where, name)
            path = under_root(self.image_dir, self._file_name(name))
            if path is None:
                if not any(self._skipped.values()):  # the first such row, not every one
                    log.warning("%s: image name %r leaves %s; such rows are skipped",
                                where, name, self.image_dir)
                self._skipped[prefix][OUTSIDE_ROOT] += 1
                continue
            name = _normalised(where, name, prefix)
            if name in seen:
                raise ValueError(f"{where}: {name} is listed twice (first at line {seen[name]})")
            seen[name] = number
            names.append(name)
            labels.append(int(label) - 1)
            lines.append(number)
            partition.append(PARTITIONS.index(prefix))
            self._paths.append(path)
        if not names and not any(self._skipped.values()):
            raise ValueError(f"{self.label_file} lists no images; expected lines like "
                             f"'train_00001.jpg 5'")
        return (names, np.asarray(labels, np.int64), np.asarray(lines, np.int64),
                np.asarray(partition, np.int64))

    def _split_indices(self, partition: np.ndarray) -> dict[str, np.ndarray]:
        """Rows of each split: train and test from the name prefixes (official) or a
        stratified cut of all rows (resplit); val held out of train or equal to test."""
        if self.split == "official":
            train_rows = np.flatnonzero(partition == 0)
            test_rows = np.flatnonzero(partition == 1)
        else:
            test_share = 1.0 / (self.resplit_ratio + 1.0)
            train_rows, test_rows = stratified_partition(
                self._labels, (1.0 - test_share, test_share), self.seed)
        if self.val_split == "test":
            return {"train": train_rows, "val": test_rows, "test": test_rows}
        keep, held = stratified_holdout(self._labels[train_rows], self.val_fraction, self.seed)
        return {"train": train_rows[keep], "val": train_rows[held], "test": test_rows}

    def _split_skips(self, split: str) -> dict[str, int]:
        """Rows skipped while reading the label file, reported under the split their
        prefix names (under train for a resplit, which pools them); none under val."""
        if split == "val":
            return {}
        if self.split == "resplit":
            pooled = self._skipped["train"] + self._skipped["test"]
            return dict(pooled) if split == "train" else {}
        return dict(self._skipped[split])

    def _split(self, split: str) -> np.ndarray:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
        return self._index[split]
