"""Writers of tiny datasets in the exact on-disk formats of RAF-DB, AffectNet and folders.

Each sample is a small uniform image whose colour encodes its identity (``sample_colour``),
so a test can tell which file a ``load`` decoded even through JPEG compression.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

AFFECTNET_HEADER = ("subDirectory_filePath,face_x,face_y,face_width,face_height,"
                    "facial_landmarks,expression,valence,arousal")


def sample_colour(i: int) -> tuple[int, int, int]:
    """A colour unique for i < 64 and far (>= 16 levels) from the others on some channel."""
    return (16 + 32 * (i % 8), 16 + 32 * (i // 8 % 8), 200)


def write_image(path: Path, colour: Sequence[int], size: tuple[int, int] = (24, 24)) -> Path:
    """A uniform RGB image of ``size`` (width, height); format from the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, tuple(colour)).save(path, quality=95)
    return path


def colour_of(image: np.ndarray) -> np.ndarray:
    """Mean colour of a decoded image, to compare with ``sample_colour``."""
    return image.reshape(-1, 3).mean(axis=0)


# ---------------------------------------------------------------------------------------
# RAF-DB
# ---------------------------------------------------------------------------------------


def rafdb_name(partition: str, i: int) -> str:
    return f"{partition}_{i + 1:05d}.jpg"


def write_rafdb(root: Path, train_labels: Sequence[int], test_labels: Sequence[int],
                variant: str = "aligned") -> Path:
    """RAF-DB basic with 1-based labels; train sample i has colour i, test sample i has
    colour 32 + i. Returns the label file."""
    lines = []
    for partition, labels, base in (("train", train_labels, 0), ("test", test_labels, 32)):
        for i, label in enumerate(labels):
            name = rafdb_name(partition, i)
            lines.append(f"{name} {label}")
            stem = name[:-4]
            file = f"{stem}_aligned.jpg" if variant == "aligned" else name
            write_image(root / "Image" / variant / file, sample_colour(base + i))
    label_file = root / "EmoLabel" / "list_patition_label.txt"
    label_file.parent.mkdir(parents=True, exist_ok=True)
    label_file.write_text("\n".join(lines) + "\n")
    return label_file


# ---------------------------------------------------------------------------------------
# AffectNet
# ---------------------------------------------------------------------------------------


def gradient_image(width: int, height: int) -> np.ndarray:
    """uint8 (H, W, 3) with pixel (r, c) = (c, r, 77): a crop shows where it came from."""
    rows, cols = np.mgrid[0:height, 0:width]
    return np.stack([cols, rows, np.full_like(rows, 77)], axis=-1).astype(np.uint8)


def landmark_string(points: np.ndarray) -> str:
    return ";".join(f"{v:.2f}" for v in np.asarray(points, np.float64).reshape(-1))


def affectnet_row(path: str, box: Sequence[int], points: np.ndarray, expression: int | str,
                  valence: float = 0.1, arousal: float = -0.2) -> str:
    x, y, w, h = box
    return f"{path},{x},{y},{w},{h},{landmark_string(points)},{expression},{valence},{arousal}"


def box_landmarks(box: Sequence[int], seed: int) -> np.ndarray:
    """68 pixel points spread over the box (a few just outside it, as real ones are)."""
    x, y, w, h = box
    rng = np.random.default_rng(seed)
    unit = rng.uniform(-0.05, 1.05, size=(68, 2))
    return unit * (w, h) + (x, y)


def write_affectnet_csv(root: Path, codes: Mapping[str, Sequence[int]],
                        list_dir: bool = True) -> dict[str, list[dict]]:
    """The csv release: ``codes`` maps "train"/"test" to expression codes (0..10).

    Image k of a part is a 40x30 jpg of colour k (train) or 32 + k (test) in folder
    ``<k % 3>/``, with face box (4 + k % 3, 3, 24, 20). Returns, per part, the rows
    written (path, box, points, code), in file order."""
    files = {"train": "training.csv", "test": "validation.csv"}
    folder = root / "Manually_Annotated_file_lists" if list_dir else root
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[dict]] = {}
    for part, part_codes in codes.items():
        base = 0 if part == "train" else 32
        rows, lines = [], [AFFECTNET_HEADER]
        for k, code in enumerate(part_codes):
            rel = f"{k % 3}/{part}_{k:04d}.jpg"
            write_image(root / "Manually_Annotated_Images" / rel, sample_colour(base + k),
                        size=(40, 30))
            box = (4 + k % 3, 3, 24, 20)
            points = box_landmarks(box, seed=base + k)
            lines.append(affectnet_row(rel, box, points, code))
            rows.append({"path": rel, "box": box, "points": points, "code": code})
        (folder / files[part]).write_text("\n".join(lines) + "\n")
        written[part] = rows
    return written


def write_affectnet_npy(root: Path, codes: Mapping[str, Sequence[int]],
                        size: int = 32, string_codes: bool = True) -> dict[str, np.ndarray]:
    """The npy release: ``train_set``/``val_set`` with images/<id>.jpg and annotations.

    Ids are 0, 1, ...; image i of a part has colour i (train) or 32 + i (val_set).
    Expression codes are stored as the release does (a string scalar) unless
    ``string_codes=False``. Returns the (68, 2) pixel landmarks written, per part."""
    dirs = {"train": "train_set", "test": "val_set"}
    written = {}
    for part, part_codes in codes.items():
        base = 0 if part == "train" else 32
        folder = root / dirs[part]
        (folder / "annotations").mkdir(parents=True, exist_ok=True)
        points = []
        for i, code in enumerate(part_codes):
            write_image(folder / "images" / f"{i}.jpg", sample_colour(base + i), (size, size))
            value = np.array(str(code)) if string_codes else np.array(code)
            np.save(folder / "annotations" / f"{i}_exp.npy", value)
            lnd = box_landmarks((0, 0, size, size), seed=base + i)
            np.save(folder / "annotations" / f"{i}_lnd.npy", lnd.reshape(-1))
            np.save(folder / "annotations" / f"{i}_val.npy", np.array("0.25"))
            np.save(folder / "annotations" / f"{i}_aro.npy", np.array("-0.5"))
            points.append(lnd)
        written[part] = np.asarray(points)
    return written


# ---------------------------------------------------------------------------------------
# Image folders
# ---------------------------------------------------------------------------------------


def write_imagefolder(root: Path, counts: Mapping[str, int], split: str | None = None,
                      suffixes: Sequence[str] = (".jpg", ".png", ".jpeg", ".bmp")) -> Path:
    """``counts[class]`` images under ``root[/split]/<class>/``, cycling through
    ``suffixes``; image k of the tree (in class order) has colour k."""
    top = root / split if split else root
    k = 0
    for name in sorted(counts):
        for i in range(counts[name]):
            write_image(top / name / f"img{i:03d}{suffixes[i % len(suffixes)]}",
                        sample_colour(k % 64))
            k += 1
    return top
