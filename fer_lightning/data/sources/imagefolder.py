"""Class-per-folder image trees, and the file helpers every photo source shares.

Two layouts are read (``data=imagefolder data.root=<dir>``)::

    root/                         root/
      train/                        angry/
        angry/ 0001.jpg ...           0001.jpg ...
        happy/ ...                  happy/ ...
      val/   (or valid/, validation/)
      test/

Class names are the class folder names, sorted (the union over the split folders).
Without split folders the samples are split by seeded, stratified ``split_fractions``;
with split folders but no val folder, val is a stratified ``val_fraction`` hold-out of
train; with no test folder, test is the val split (logged). Files are found recursively
inside each class folder; those without an image extension are counted as skipped.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from fer_lightning.data.sources.base import SPLITS, RawSample, SplitInfo
from fer_lightning.data.sources.holdout import stratified_holdout, stratified_partition

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
#: Accepted folder names (case-insensitive) for each split.
SPLIT_FOLDERS = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}
#: How many missing files an error message lists before "...".
MAX_LISTED = 5

LAYOUT = """\
root/
  <class name>/<image>.jpg|.jpeg|.png|.bmp   (one folder per class), or
  train/<class name>/<image>...   (+ optional val/ | valid/ | validation/, test/)"""


# ---------------------------------------------------------------------------------------
# Helpers shared by the photo sources (RAF-DB, AffectNet, folders)
# ---------------------------------------------------------------------------------------


def layout_error(path: Path, what: str, layout: str) -> FileNotFoundError:
    """A FileNotFoundError naming the missing ``path`` and drawing the expected layout."""
    return FileNotFoundError(f"{what} not found: {path}\nExpected layout:\n{layout}")


def require(path: Path, what: str, layout: str, directory: bool = False) -> Path:
    """``path`` if it exists (as a directory when ``directory``), else a layout_error."""
    if not (path.is_dir() if directory else path.is_file()):
        raise layout_error(path, what, layout)
    return path


def read_rgb(path: Path, where: str = "") -> np.ndarray:
    """Decode one image file to uint8 (H, W, 3).

    A missing, unreadable, truncated or otherwise undecodable file raises an error naming
    ``path`` and ``where`` it was listed (e.g. ``" (listed at labels.txt:12)"``).
    """
    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise FileNotFoundError(f"image file {path}{where} does not exist") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ValueError(f"cannot decode image file {path}{where}: {error}") from error


def check_files_exist(paths: Sequence[Path], listed_at: Sequence[str], what: str) -> None:
    """Raise FileNotFoundError listing the first missing ``paths`` with where each was
    listed; each directory is listed once instead of one stat per file."""
    contents: dict[Path, set[str]] = {}
    missing = []
    for i, path in enumerate(paths):
        parent = path.parent
        if parent not in contents:
            contents[parent] = set(os.listdir(parent)) if parent.is_dir() else set()
        if path.name not in contents[parent]:
            missing.append(i)
    if missing:
        shown = "\n".join(f"  {paths[i]} ({listed_at[i]})" for i in missing[:MAX_LISTED])
        more = f"\n  ... and {len(missing) - MAX_LISTED} more" if len(missing) > MAX_LISTED else ""
        raise FileNotFoundError(
            f"{len(missing)} of {len(paths)} {what} are missing:\n{shown}{more}")


def fingerprint_of(*parts: object) -> str:
    """A short stable hash of ``parts`` (their repr), for cache keys."""
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------
# The source
# ---------------------------------------------------------------------------------------


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


class ImageFolder:
    """A class-per-folder tree, with or without train/val/test split folders.

    ``split_fractions`` (train, val, test; summing to 1) splits a tree without split
    folders; ``val_fraction`` holds val out of train when split folders have no val
    folder; both are stratified and seeded by ``seed``. Images are decoded per
    ``load`` as RGB uint8.
    """

    def __init__(self, root: str | os.PathLike, split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
                 val_fraction: float = 0.1, seed: int = 0) -> None:
        self.root = require(Path(root), "image folder root", LAYOUT, directory=True)
        if len(split_fractions) != 3:
            raise ValueError(f"data.source.split_fractions must be [train, val, test], got "
                             f"{list(split_fractions)}")
        self.split_fractions = tuple(float(f) for f in split_fractions)
        if min(self.split_fractions) < 0 or not np.isclose(sum(self.split_fractions), 1.0) \
                or self.split_fractions[0] <= 0:
            raise ValueError(f"data.source.split_fractions must be [train, val, test] >= 0 "
                             f"summing to 1 with train > 0, got {list(self.split_fractions)}")
        self.val_fraction, self.seed = val_fraction, seed
        self._paths: dict[str, list[str]] = {}
        self._labels: dict[str, np.ndarray] = {}
        self._skipped: dict[str, dict[str, int]] = {split: {} for split in SPLITS}
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
        image = read_rgb(self.path(split, index))
        return RawSample(image=image, label=int(self._labels[split][index]))

    # -- helpers beyond the protocol ---------------------------------------------------

    def path(self, split: str, index: int) -> Path:
        """The image file of sample ``index`` of ``split``."""
        return self.root / self._paths[split][index]

    def sample_digest(self, split: str, index: int) -> bytes:
        """BLAKE2b of the image file's bytes (landmark cache content key)."""
        return hashlib.blake2b(self.path(split, index).read_bytes(), digest_size=16).digest()

    def describe(self) -> str:
        """One line: what is read and how the splits are formed (for summaries)."""
        return f"{self.root}: {self._layout}"

    def fingerprint(self) -> str:
        """Hash of the file lists, labels and split settings (landmark cache keys)."""
        return fingerprint_of("imagefolder", self.class_names, self.split_fractions,
                              self.val_fraction, self.seed,
                              *[(self._paths[s], self._labels[s].tolist()) for s in SPLITS])

    # -- internals ---------------------------------------------------------------------

    def _check_split(self, split: str) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")

    def _split_dirs(self) -> dict[str, Path]:
        """Split name -> folder, when the root holds split folders; {} for a flat tree."""
        names = {alias: split for split, aliases in SPLIT_FOLDERS.items() for alias in aliases}
        found: dict[str, Path] = {}
        others = []
        for folder in _visible_dirs(self.root):
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

    def _scan(self, folder: Path, skipped: dict[str, int]) -> dict[str, list[str]]:
        """Class name -> image paths (relative to root) under ``folder``'s class folders."""
        classes: dict[str, list[str]] = {}
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith("."):
                continue
            if not entry.is_dir():
                skipped["outside_class_folder"] = skipped.get("outside_class_folder", 0) + 1
                continue
            images = classes.setdefault(entry.name, [])
            for directory, subdirs, files in os.walk(entry):
                subdirs.sort()
                for name in sorted(files):
                    if Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                        images.append(str(Path(directory, name).relative_to(self.root)))
                    else:
                        skipped["non_image_file"] = skipped.get("non_image_file", 0) + 1
        if not classes:
            raise layout_error(folder / "<class name>", "class folders", LAYOUT)
        return classes

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
        trees = {split: self._scan(folder, self._skipped[split])
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
        tree = self._scan(self.root, self._skipped["train"])
        self._set_classes([tree])
        paths, labels = self._flatten(tree)
        parts = stratified_partition(labels, self.split_fractions, self.seed)
        for split, index in zip(SPLITS, parts, strict=True):
            self._assign(split, paths, labels, index)
