"""``make bench`` rows for the dataset sources: csv parse time and peak memory, and the
cost of the image-file check every training run makes up front.

    python -m benchmarks.sources      # prints the rows

Writes a full-size synthetic fer2013.csv (35,887 rows: 28,709 Training, 3,589 PublicTest,
3,589 PrivateTest, random 48x48 pixels) and an aligned fer2013new.csv to a temporary
folder, then times what a training run pays before its first batch: the vectorised pixel
parse into one uint8 array, and FER+'s vote processing for every split. Peak memory is
the tracemalloc peak of a separate run (numpy reports its buffers to tracemalloc).

The image check (``data.check_images``) is timed on a folder of 100x100 JPEGs (RAF-DB's
aligned faces; AffectNet's are larger, which costs the header check nothing): the default
header check, the same plus a face box read from each header (AffectNet csv), and the full
decode of ``summary --verify-images``; files are in the page cache (a second pass), so
the numbers are the CPU cost, not the disk's.
"""

from __future__ import annotations

import csv
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from fer_lightning.data.sources.base import ListedImage
from fer_lightning.data.sources.fer2013 import read_fer_csv
from fer_lightning.data.sources.ferplus import VOTE_COLUMNS, FERPlusSource
from fer_lightning.data.sources.io import image_problems

USAGE_COUNTS = {"Training": 28709, "PublicTest": 3589, "PrivateTest": 3589}
DISTINCT_ROWS = 512  # pixel strings are cycled: parse cost is the same, writing is fast


def write_synthetic_fer(folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """Full-size fer2013.csv + fer2013new.csv with random pixels, labels and votes."""
    rng = np.random.default_rng(seed)
    texts = [" ".join(map(str, row)) for row in
             rng.integers(0, 256, (DISTINCT_ROWS, 48 * 48)).tolist()]
    usage = [name for name, count in USAGE_COUNTS.items() for _ in range(count)]
    labels = rng.integers(0, 7, len(usage))
    votes = rng.multinomial(10, [0.3, 0.25, 0.1, 0.1, 0.08, 0.02, 0.03, 0.02, 0.05, 0.05],
                            size=len(usage))
    pixels_csv, votes_csv = folder / "fer2013.csv", folder / "fer2013new.csv"
    with pixels_csv.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["emotion", "pixels", "Usage"])
        writer.writerows([label, texts[i % DISTINCT_ROWS], name]
                         for i, (label, name) in enumerate(zip(labels, usage, strict=True)))
    with votes_csv.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["Usage", "Image name", *VOTE_COLUMNS])
        writer.writerows([name, f"fer{i:07d}.png", *row]
                         for i, (name, row) in enumerate(zip(usage, votes.tolist(), strict=True)))
    return pixels_csv, votes_csv


def timed(work: Callable[[], object], repeats: int = 2) -> float:
    """Seconds of the fastest of ``repeats`` calls."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def peak_mb(work: Callable[[], object]) -> float:
    """Peak traced allocation of one call, in MB."""
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def ferplus_ready(folder: Path, mode: str) -> None:
    """Everything FER+ does before the first batch: pixels, votes, all three splits."""
    source = FERPlusSource(folder, label_mode=mode)
    for split in ("train", "val", "test"):
        source.split_info(split)


CHECK_IMAGES = 2000


def write_jpegs(folder: Path, n: int = CHECK_IMAGES, size: int = 100) -> list[Path]:
    """``n`` distinct ``size`` x ``size`` JPEG faces-to-be (random smooth colour fields)."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((size, size), Image.BILINEAR)
        paths.append(folder / f"{i:05d}.jpg")
        image.save(paths[-1], quality=90)
    return paths


def image_check_rows(folder: Path) -> list[str]:
    """Seconds per 10,000 images of each ``data.check_images`` level."""
    paths = write_jpegs(folder)
    plain = [ListedImage(path) for path in paths]
    boxed = [ListedImage(path, box=(10, 10, 80, 80)) for path in paths]
    cases = [("header (default): signature + end marker", plain, False),
             ("header + face box against the image size (AffectNet csv)", boxed, False),
             ("full decode (summary --verify-images)", plain, True)]
    lines = []
    for what, images, full in cases:
        image_problems(images, full=full)  # page cache warm
        seconds = timed(lambda images=images, full=full: image_problems(images, full=full))
        lines.append(f"| data.check_images, {what}, {len(images):,} 100x100 JPEGs (cached) "
                     f"| {seconds * 10_000 / len(images):.2f} s per 10,000 images |")
    return lines


def rows() -> list[str]:
    """Markdown table rows ``| what | value |`` for RESULTS.md."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        pixels_csv, _ = write_synthetic_fer(folder)
        size_mb = pixels_csv.stat().st_size / 1e6
        n = sum(USAGE_COUNTS.values())
        parse_s = timed(lambda: read_fer_csv(pixels_csv))
        parse_peak = peak_mb(lambda: read_fer_csv(pixels_csv))
        lines = [
            f"| fer2013.csv parse, {n:,} rows ({size_mb:.0f} MB) -> uint8 (N,48,48), "
            f"best of 2 | {parse_s:.2f} s ({n / parse_s:,.0f} rows / s) |",
            f"| fer2013.csv parse peak traced memory (images alone: "
            f"{n * 48 * 48 / 1e6:.0f} MB) | {parse_peak:.0f} MB |",
        ]
        for mode in ("majority", "crossentropy"):
            total = timed(lambda mode=mode: ferplus_ready(folder, mode), repeats=1)
            lines.append(f"| FER+ csv pair, label_mode={mode}: pixels + votes of all splits "
                         f"| {total:.2f} s |")
        images = folder / "images"
        images.mkdir()
        lines += image_check_rows(images)
    return lines


if __name__ == "__main__":
    print("\n".join(rows()))
