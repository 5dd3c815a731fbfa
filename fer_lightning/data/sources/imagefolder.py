"""Class-per-folder image trees (``data=imagefolder data.root=<dir>``).

Two layouts are read::

    root/                         root/
      train/                        angry/
        angry/ 0001.jpg ...           0001.jpg ...
        happy/ ...                  happy/ ...
      val/   (or valid/, validation/)
      test/

Class names are the class folder names, sorted (the union over the split folders).
Without split folders the samples are split by seeded, stratified ``split_fractions``
(a test fraction of 0 means no test split); with split folders but no val folder, val is
a stratified ``val_fraction`` hold-out of train; with no test folder, test is the val
split (logged). Files are found recursively inside each class folder.

Counted as skipped, per reason: files without an image extension, files outside a class
folder, hidden files and folders (``.DS_Store``, the macOS ``._*`` files), and symlinked
folders that point at the root, above it or inside it (following them would read images
twice or loop). Symlinks to folders elsewhere (data on another disk) are followed. A class
folder of train (or of the root) without any image is an error: it would be a class
nobody can learn. So are (``class_problems``, reported with the other dataset problems)
a class folder of val or test that train lacks, and class folders whose names differ
only in case (``train/happy`` beside ``val/Happy``): both make a class with no training
samples.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fer_lightning.data.sources.base import (
    SPLITS,
    DatasetError,
    ListedImage,
    RawSample,
    SplitInfo,
    SplitUnavailableError,
)
from fer_lightning.data.sources.holdout import stratified_holdout, stratified_partition
from fer_lightning.data.sources.io import (
    IMAGE_EXTENSIONS,
    hidden_reason,
    is_hidden,
    layout_error,
    read_image,
    require,
)

log = logging.getLogger(__name__)

#: Accepted folder names (case-insensitive) for each split.
SPLIT_FOLDERS = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}
# Skip reasons of this source, as counted in SplitInfo.skipped.
NON_IMAGE = "non_image_file"
OUTSIDE_CLASS = "outside_class_folder"
LINK_TO_ROOT = "symlink_to_root_or_above"
LINK_INSIDE = "symlink_inside_root"

LAYOUT = """\
root/
  <class name>/<image>.jpg|.jpeg|.png|.bmp   (one folder per class), or
  train/<class name>/<image>...   (+ optional val/ | valid/ | validation/, test/)"""


def _count(skipped: dict[str, int], reason: str) -> None:
    skipped[reason] = skipped.get(reason, 0) + 1


class ImageFolder:
    """A class-per-folder tree, with or without train/val/test split folders.

    ``split_fractions`` (train, val, test; summing to 1, train and val > 0) splits a tree
    without split folders; ``val_fraction`` holds val out of train when split folders have
    no val folder; both are stratified and seeded by ``seed``. Images are decoded per
    ``load`` as RGB uint8.
    """

    def __init__(self, root: str | os.PathLike, split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
                 val_fraction: float = 0.1, seed: int = 0) -> None:
        self.root = require(Path(root), "image folder root", LAYOUT, directory=True)
        self._real_root = self.root.resolve()
        if len(split_fractions) != 3:
            raise ValueError(f"data.source.split_fractions must be [train, val, test], got "
                             f"{list(split_fractions)}")
        self.split_fractions = tuple(float(f) for f in split_fractions)
        if min(self.split_fractions) < 0 or not np.isclose(sum(self.split_fractions), 1.0) \
                or self.split_fractions[0] <= 0 or self.split_fractions[1] <= 0:
            raise ValueError(f"data.source.split_fractions must be [train, val, test] >= 0 "
                             f"summing to 1 with train and val > 0, got "
                             f"{list(self.split_fractions)}")
        self.val_fraction, self.seed = val_fraction, seed
        self._paths: dict[str, list[str]] = {}
        self._labels: dict[str, np.ndarray] = {}
        self._skipped: dict[str, dict[str, int]] = {split: {} for split in SPLITS}
        self._unavailable: dict[str, str] = {}
        self._class_folders: dict[str, list[Path]] = {}  # split -> its class folders
        split_dirs = self._split_dirs()
        if split_dirs:
            self._read_split_layout(split_dirs)
            folders = ", ".join(f"{s}={p.name}/" for s, p in split_dirs.items())
            held = "" if "val" in split_dirs else \
                f"; val = stratified {self.val_fraction:g} hold-out of train (seed {seed})"
            same = "" if "test" in split_dirs else "; test = val"
            self._layout = f"split folders {folders}{held}{same}"
        else:
            self._read_flat_layout()
            self._layout = (f"class folders split by stratified fractions "
                            f"{list(self.split_fractions)} (seed {seed})")

    # -- Source protocol ---------------------------------------------------------------

    def split_info(self, split: str) -> SplitInfo:
        """Labels of ``split`` from the folder names; skipped files counted by reason."""
        self._check_split(split)
        return SplitInfo(labels=self._labels[split].copy(), skipped=dict(self._skipped[split]))

    def load(self, split: str, index: int) -> RawSample:
        """Decode image ``index`` of ``split`` (RGB uint8)."""
        self._check_split(split)
        image = read_image(self.path(split, index))
        return RawSample(image=image, label=int(self._labels[split][index]))

    # -- helpers beyond the protocol ---------------------------------------------------

    def path(self, split: str, index: int) -> Path:
        """The image file of sample ``index`` of ``split``."""
        return self.root / self._paths[split][index]


    def image_files(self, split: str) -> list[ListedImage]:
        """The image file of every sample of ``split``."""
        self._check_split(split)
        return [ListedImage(self.root / path) for path in self._paths[split]]

    def describe(self) -> str:
        """One line: what is read and how the splits are formed (for summaries)."""
        return f"{self.root}: {self._layout}"

    def class_problems(self) -> list[str]:
        """Class folders that make a class training never sees: names differing only in
        case (read as two classes), and class folders of val / test that train lacks."""
        problems = []
        by_case: dict[str, list[str]] = {}
        for name in self.class_names:
            by_case.setdefault(name.lower(), []).append(name)
        for names in by_case.values():
            if len(names) > 1:
                folders = [str(folder.relative_to(self.root)) for split_folders in
                           self._class_folders.values() for folder in split_folders
                           if folder.name in names]
                problems.append(f"class folders {', '.join(folders)} differ only in case, so "
                                f"they are {len(names)} classes; rename them to one spelling")
        trained = {folder.name for folder in self._class_folders.get("train", [])}
        for split, folders in self._class_folders.items():
            lacking = [str(folder.relative_to(self.root)) for folder in folders
                       if folder.name not in trained and folder.name.lower() not in
                       {name.lower() for name in trained}]
            if split != "train" and lacking:
                problems.append(f"class folder(s) {', '.join(lacking)} of split '{split}' have "
                                f"no counterpart in train/: a class without training samples "
                                f"cannot be learned; add its training images or remove it")
        return problems

    # -- internals ---------------------------------------------------------------------

    def _check_split(self, split: str) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
        if split in self._unavailable:
            raise SplitUnavailableError(self._unavailable[split])

    def _visible_dirs(self, folder: Path, skipped: dict[str, int], warn: bool = True
                      ) -> list[Path]:
        """Sub-folders of ``folder`` to read, hidden ones and unsafe symlinks counted (and
        the symlinks logged, with ``warn``)."""
        return [entry for entry in sorted(folder.iterdir())
                if entry.is_dir() and self._follow(entry, skipped, warn)]

    def _follow(self, folder: Path, skipped: dict[str, int], warn: bool = True) -> bool:
        """Whether sub-folder ``folder`` is read; a hidden one or an unsafe symlink is
        counted in ``skipped`` (and the symlink logged, with ``warn``)."""
        if is_hidden(folder.name):
            _count(skipped, hidden_reason(folder.name))
            return False
        reason = self._link_problem(folder)
        if reason:
            _count(skipped, reason)
            if warn:
                log.warning("%s: not followed (%s)", folder, reason.replace("_", " "))
            return False
        return True

    def _link_problem(self, folder: Path) -> str | None:
        """Why symlinked ``folder`` must not be followed: it points at the root or above
        (a loop, or the whole dataset again as one class), or inside the root (its images
        would be read twice); None for plain folders and links to elsewhere."""
        if not folder.is_symlink():
            return None
        target = folder.resolve()
        if target == self._real_root or target in self._real_root.parents:
            return LINK_TO_ROOT
        if self._real_root in target.parents:
            return LINK_INSIDE
        return None

    def _split_dirs(self) -> dict[str, Path]:
        """Split name -> folder, when the root holds split folders; {} for a flat tree."""
        names = {alias: split for split, aliases in SPLIT_FOLDERS.items() for alias in aliases}
        found: dict[str, Path] = {}
        others = []
        for folder in self._visible_dirs(self.root, {}, warn=False):
            split = names.get(folder.name.lower())
            if split is None:
                others.append(folder.name)
            elif split in found:
                raise ValueError(f"{self.root} has two {split} folders: {found[split].name}/ "
                                 f"and {folder.name}/; keep one")
            else:
                found[split] = folder
        if found and others:
            splits = sorted(p.name for p in found.values())
            raise ValueError(f"{self.root} mixes split folders {splits} "
                             f"with other folders {others}; expected either split folders or "
                             f"class folders at the top:\n{LAYOUT}")
        if found and "train" not in found:
            raise layout_error(self.root / "train", "train folder", LAYOUT)
        return found

    def _scan(self, folder: Path, skipped: dict[str, int], defines_classes: bool,
              split: str = "train") -> dict[str, list[str]]:
        """Class name -> image paths (relative to root) under ``folder``'s class folders
        (remembered as ``split``'s).

        With ``defines_classes`` (train, or the root of a flat tree) a class folder
        without images is an error."""
        classes: dict[str, list[str]] = {}
        for entry in sorted(folder.iterdir()):
            if not entry.is_dir():
                _count(skipped, hidden_reason(entry.name) if is_hidden(entry.name)
                       else OUTSIDE_CLASS)
        for class_dir in self._visible_dirs(folder, skipped):
            self._class_folders.setdefault(split, []).append(class_dir)
            classes[class_dir.name] = self._images_in(class_dir, skipped)
            if defines_classes and not classes[class_dir.name]:
                raise DatasetError(
                    f"class folder {class_dir} holds no images ({', '.join(IMAGE_EXTENSIONS)}); "
                    f"every folder there is a class: add its images or remove it")
        if not classes:
            raise layout_error(folder / "<class name>", "class folders", LAYOUT)
        return classes

    def _images_in(self, class_dir: Path, skipped: dict[str, int]) -> list[str]:
        """Image paths (relative to root) found recursively in ``class_dir``, sorted."""
        images, seen = [], set()
        for directory, subdirs, files in os.walk(class_dir, followlinks=True):
            here = Path(directory)
            real = here.resolve()
            if real in seen:  # two links to one folder outside the root: read it once
                subdirs[:] = []
                continue
            seen.add(real)
            # os.walk listed this folder already: decide on its sub-folders, no re-listing
            subdirs[:] = [name for name in sorted(subdirs) if self._follow(here / name, skipped)]
            for name in sorted(files):
                if is_hidden(name):
                    _count(skipped, hidden_reason(name))
                elif Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                    images.append(str((here / name).relative_to(self.root)))
                else:
                    _count(skipped, NON_IMAGE)
        return images

    def _set_classes(self, trees: Sequence[dict[str, list[str]]]) -> None:
        self.class_names = sorted({name for tree in trees for name in tree})

    def _flatten(self, tree: dict[str, list[str]]) -> tuple[list[str], np.ndarray]:
        paths, labels = [], []
        for label, name in enumerate(self.class_names):
            paths += tree.get(name, [])
            labels += [label] * len(tree.get(name, []))
        return paths, np.asarray(labels, dtype=np.int64)

    def _assign(self, split: str, paths: list[str], labels: np.ndarray,
                index: np.ndarray | None = None) -> None:
        index = np.arange(len(paths)) if index is None else index
        self._paths[split] = [paths[i] for i in index]
        self._labels[split] = labels[index]

    def _read_split_layout(self, split_dirs: dict[str, Path]) -> None:
        trees = {split: self._scan(folder, self._skipped[split], split == "train", split)
                 for split, folder in split_dirs.items()}
        self._set_classes(list(trees.values()))
        flat = {split: self._flatten(tree) for split, tree in trees.items()}
        paths, labels = flat["train"]
        if "val" in flat:
            self._assign("train", paths, labels)
            self._assign("val", *flat["val"])
        else:
            train_idx, val_idx = stratified_holdout(labels, self.val_fraction, self.seed)
            self._assign("train", paths, labels, train_idx)
            self._assign("val", paths, labels, val_idx)
        if "test" in flat:
            self._assign("test", *flat["test"])
        else:
            log.warning("%s has no test folder: the test split is the val split", self.root)
            self._paths["test"], self._labels["test"] = self._paths["val"], self._labels["val"]

    def _read_flat_layout(self) -> None:
        tree = self._scan(self.root, self._skipped["train"], defines_classes=True)
        self._set_classes([tree])
        paths, labels = self._flatten(tree)
        parts = stratified_partition(labels, self.split_fractions, self.seed)
        for split, index in zip(SPLITS, parts, strict=True):
            self._assign(split, paths, labels, index)
        if self.split_fractions[2] == 0:
            self._unavailable["test"] = (f"data.source.split_fractions={list(self.split_fractions)}"
                                         f" gives the test split no share of {self.root}")
