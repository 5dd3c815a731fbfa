"""Writers of tiny FER2013 / FER+ fixtures in the exact on-disk formats they ship in.

FER2013 (Kaggle): fer2013.csv ``emotion,pixels,Usage``; icml_face_data.csv
``emotion, Usage, pixels`` (leading spaces in the header); train.csv ``emotion,pixels`` +
test.csv ``pixels``. FER+: fer2013new.csv ``Usage,Image name,<10 vote columns>`` aligned
with fer2013.csv, and the folder release (FER2013Train/Valid/Test with 48x48 PNGs and a
header-less label.csv of ``name,"(left, top, right, bottom)",<10 votes>``, 12 fields, e.g.
``fer0000000.png,"(0, 0, 48, 48)",4,0,0,1,3,2,0,0,0,0``), as microsoft/FERPlus ships it.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

FERPLUS_VOTE_COLUMNS = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust",
                        "fear", "contempt", "unknown", "NF"]
FERPLUS_FOLDERS = {"Training": "FER2013Train", "PublicTest": "FER2013Valid",
                   "PrivateTest": "FER2013Test"}


@dataclass
class FERRows:
    """Rows of a FER2013 csv: labels, 48x48 uint8 images and Usage, in file order."""

    labels: list[int]
    images: np.ndarray
    usage: list[str]


def make_rows(per_usage: dict[str, int] | None = None, seed: int = 0) -> FERRows:
    """Random images with labels cycling 0..6 per Usage (every class present in order)."""
    per_usage = per_usage or {"Training": 14, "PublicTest": 7, "PrivateTest": 7}
    rng = np.random.default_rng(seed)
    labels, usage = [], []
    for name, count in per_usage.items():
        labels += [i % 7 for i in range(count)]
        usage += [name] * count
    images = rng.integers(0, 256, size=(len(labels), 48, 48), dtype=np.uint8)
    images[:, 0, 0] = np.arange(len(labels)) % 256  # a per-row marker
    return FERRows(labels, images, usage)


def pixel_string(image: np.ndarray) -> str:
    """48x48 uint8 -> the csv's 2304 space-separated integers, row-major."""
    return " ".join(map(str, image.reshape(-1).tolist()))


def _write(path: Path, header: list[str] | None, rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        if header is not None:
            writer.writerow(header)
        writer.writerows(rows)
    return path


def write_fer2013_csv(folder: Path, rows: FERRows, name: str = "fer2013.csv") -> Path:
    """fer2013.csv: ``emotion,pixels,Usage``."""
    body = [[str(label), pixel_string(image), usage]
            for label, image, usage in zip(rows.labels, rows.images, rows.usage, strict=True)]
    return _write(folder / name, ["emotion", "pixels", "Usage"], body)


def write_icml_csv(folder: Path, rows: FERRows) -> Path:
    """icml_face_data.csv: ``emotion, Usage, pixels`` (note the spaces in the header)."""
    body = [[str(label), usage, " " + pixel_string(image)]
            for label, image, usage in zip(rows.labels, rows.images, rows.usage, strict=True)]
    return _write(folder / "icml_face_data.csv", ["emotion", " Usage", " pixels"], body)


def write_kaggle_train_test(folder: Path, rows: FERRows) -> tuple[Path, Path]:
    """train.csv (``emotion,pixels``, the Training rows) + test.csv (``pixels`` only)."""
    train = [[str(label), pixel_string(image)]
             for label, image, usage in zip(rows.labels, rows.images, rows.usage, strict=True)
             if usage == "Training"]
    test = [[pixel_string(image)] for image, usage in zip(rows.images, rows.usage, strict=True)
            if usage != "Training"]
    return (_write(folder / "train.csv", ["emotion", "pixels"], train),
            _write(folder / "test.csv", ["pixels"], test))


def ferplus_names(usage: list[str], empty: set[int] = frozenset()) -> list[str]:
    """Image names as the release numbers them (fer0000000.png ...); rows in ``empty``
    get an empty name, as 173 rows of fer2013new.csv do."""
    return ["" if i in empty else f"fer{i:07d}.png" for i in range(len(usage))]


def write_ferplus_csv(folder: Path, rows: FERRows, names: list[str],
                      votes: list[list[int]]) -> tuple[Path, Path]:
    """fer2013.csv + fer2013new.csv (``Usage,Image name,<10 vote columns>``), aligned."""
    pixels = write_fer2013_csv(folder, rows)
    body = [[usage, name, *map(str, vote)]
            for usage, name, vote in zip(rows.usage, names, votes, strict=True)]
    new = _write(folder / "fer2013new.csv", ["Usage", "Image name", *FERPLUS_VOTE_COLUMNS], body)
    return pixels, new


def write_ferplus_folders(folder: Path, rows: FERRows, names: list[str],
                          votes: list[list[int]]) -> Path:
    """The folder release as generate_training_data.py writes it: rows with an empty
    name are left out (so names are not contiguous); each folder gets its PNGs and a
    header-less label.csv whose second field is the quoted face box of the whole image."""
    labels: dict[str, list[list[str]]] = {usage: [] for usage in FERPLUS_FOLDERS}
    for image, usage, name, vote in zip(rows.images, rows.usage, names, votes, strict=True):
        if not name:
            continue
        target = folder / FERPLUS_FOLDERS[usage]
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(target / name, compress_level=0)
        height, width = image.shape[:2]
        labels[usage].append([name, f"(0, 0, {width}, {height})", *map(str, vote)])
    for usage, body in labels.items():
        _write(folder / FERPLUS_FOLDERS[usage] / "label.csv", None, body)
    return folder
