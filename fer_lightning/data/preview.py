"""A contact sheet of any source: one row per class, landmarks drawn as coloured dots.

Looking at the data is the cheapest test there is: wrong label order, flipped
landmarks or broken crops show at a glance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from fer_lightning.data.dataset import FERDataset
from fer_lightning.data.landmarks.schema import GROUPS, NUM_POINTS

#: Dot colour per landmark group, so a swapped left/right or a misplaced group shows.
GROUP_COLOURS: dict[str, tuple[int, int, int]] = {
    "jaw": (255, 220, 0),
    "right_brow": (255, 80, 80),
    "left_brow": (80, 160, 255),
    "nose_bridge": (0, 230, 120),
    "nose_lower": (0, 230, 120),
    "right_eye": (255, 80, 80),
    "left_eye": (80, 160, 255),
    "outer_lip": (255, 0, 255),
    "inner_lip": (0, 255, 255),
}
#: The legend under the sheet: one swatch per colour of GROUP_COLOURS, named.
LEGEND: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("jaw", GROUP_COLOURS["jaw"]),
    ("subject's right brow + eye", GROUP_COLOURS["right_eye"]),
    ("left brow + eye", GROUP_COLOURS["left_eye"]),
    ("nose (all of 5-point sets)", GROUP_COLOURS["nose_bridge"]),
    ("outer lip", GROUP_COLOURS["outer_lip"]),
    ("inner lip", GROUP_COLOURS["inner_lip"]),
)
ROW_KEY = "rows: class index and name, n = its samples in this split"
_LABEL_WIDTH = 90
_PAD = 2
_LINE = 14


def pick_indices(labels: np.ndarray, num_classes: int, per_class: int) -> list[list[int]]:
    """The first ``per_class`` indices of each class (fewer when a class has fewer)."""
    return [np.flatnonzero(labels == c)[:per_class].tolist() for c in range(num_classes)]


def _cell(image: np.ndarray, landmarks: np.ndarray | None, scale: int) -> Image.Image:
    """One sample upscaled by ``scale`` (nearest, so pixels stay honest), dots on top."""
    mode = "L" if image.ndim == 2 else "RGB"
    cell = Image.fromarray(image, mode).convert("RGB")
    height, width = image.shape[:2]
    cell = cell.resize((width * scale, height * scale), Image.NEAREST)
    if landmarks is None:
        return cell
    draw = ImageDraw.Draw(cell)
    radius = max(1.0, scale / 2.5)
    groups = GROUPS.items() if len(landmarks) == NUM_POINTS else [("nose_bridge", (0, None))]
    for name, (start, stop) in groups:
        for x, y in landmarks[start:stop]:
            cx, cy = x * width * scale, y * height * scale
            draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius],
                         fill=GROUP_COLOURS[name])  # fmt: skip
    return cell


def write_preview(
    dataset: FERDataset,
    path: str | Path,
    per_class: int = 8,
    draw_landmarks: bool = True,
    scale: int = 3,
) -> Path:
    """Write a PNG grid of one split: one row per class, ``per_class`` samples each.

    Samples come through ``FERDataset``, so the sheet shows what training sees: the face
    crop, the network's input size, and the landmarks of the configured backend (or the
    source's own). Rows are labelled with the class name and its count in the split. Each
    sample is upscaled ``scale`` times; with ``draw_landmarks`` its valid landmarks are
    drawn as small dots coloured by facial part (subject's right red, left blue; 5-point
    landmarks in one colour), and a legend under the grid names the colours and the row
    labels. Rows of rare classes are filled as far as they go. Returns the written path.
    """
    if per_class < 1 or scale < 1:
        raise ValueError(f"per_class and scale must be >= 1, got {per_class} and {scale}")
    labels = np.asarray(dataset.labels)
    class_names = list(dataset.source.class_names)
    rows = pick_indices(labels, len(class_names), per_class)
    cells = [[_sample_cell(dataset[position], draw_landmarks, scale) for position in row]
             for row in rows]
    sheet = _with_legend(_compose(cells, class_names, labels, per_class), draw_landmarks)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def _sample_cell(sample: dict[str, torch.Tensor], draw_landmarks: bool,
                 scale: int) -> Image.Image:
    image = (sample["image"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    image = image[..., 0] if image.shape[-1] == 1 else image
    valid = draw_landmarks and "landmarks" in sample and bool(sample["landmarks_valid"])
    return _cell(image, sample["landmarks"].numpy() if valid else None, scale)


def _compose(
    cells: list[list[Image.Image]], class_names: list[str], labels: np.ndarray, per_class: int
) -> Image.Image:
    """Paste the cells into a labelled grid; empty rows keep their label."""
    sample = next((cell for row in cells for cell in row), None)
    cell_w, cell_h = sample.size if sample is not None else (48, 48)
    width = _LABEL_WIDTH + per_class * (cell_w + _PAD) + _PAD
    height = len(cells) * (cell_h + _PAD) + _PAD
    sheet = Image.new("RGB", (width, height), (32, 32, 32))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for r, row in enumerate(cells):
        top = _PAD + r * (cell_h + _PAD)
        count = int(np.sum(labels == r))
        draw.text((4, top + cell_h // 2 - 10), f"{r} {class_names[r]}", fill=(255, 255, 255),
                  font=font)  # fmt: skip
        draw.text((4, top + cell_h // 2 + 2), f"n={count}", fill=(170, 170, 170), font=font)
        for c, cell in enumerate(row):
            sheet.paste(cell, (_LABEL_WIDTH + _PAD + c * (cell_w + _PAD), top))
    return sheet


def _legend_entries(draw_landmarks: bool) -> list[tuple[str, tuple[int, int, int] | None]]:
    entries: list[tuple[str, tuple[int, int, int] | None]] = [(ROW_KEY, None)]
    if draw_landmarks:
        return [*entries, *LEGEND]
    return [*entries, ("landmarks not drawn", None)]


def _with_legend(sheet: Image.Image, draw_landmarks: bool) -> Image.Image:
    """``sheet`` with a legend strip below it: the row labels' meaning and one coloured
    swatch per landmark colour, wrapped to the sheet's width. The strip's height depends
    on the width only, so sheets with and without landmarks have the same size."""
    font = ImageFont.load_default()
    measure = ImageDraw.Draw(sheet)
    swatch = 8

    def layout(entries: list[tuple[str, tuple[int, int, int] | None]]
               ) -> list[tuple[int, int, str, tuple[int, int, int] | None]]:
        placed, x, y = [], 4, 4
        for text, colour in entries:
            width = int(measure.textlength(text, font=font)) + swatch + 12
            if x > 4 and x + width > sheet.width:
                x, y = 4, y + _LINE
            placed.append((x, y, text, colour))
            x += width
        return placed

    lines = max(len({y for _, y, _, _ in layout(_legend_entries(flag))}) for flag in (True, False))
    strip = lines * _LINE + 6
    out = Image.new("RGB", (sheet.width, sheet.height + strip), (32, 32, 32))
    out.paste(sheet, (0, 0))
    draw = ImageDraw.Draw(out)
    for x, y, text, colour in layout(_legend_entries(draw_landmarks)):
        top = sheet.height + y
        if colour is not None:
            draw.rectangle([x, top + 2, x + swatch, top + 2 + swatch], fill=colour)
            x += swatch + 4
        draw.text((x, top), text, fill=(220, 220, 220), font=font)
    return out
