"""``make bench`` rows for the FER2013 / FER+ csv sources: parse time and peak memory.

    python -m benchmarks.sources      # prints the rows

Writes a full-size synthetic fer2013.csv (35,887 rows: 28,709 Training, 3,589 PublicTest,
3,589 PrivateTest, random 48x48 pixels) and an aligned fer2013new.csv to a temporary
folder, then times what a training run pays before its first batch: the vectorised pixel
parse into one uint8 array, and FER+'s vote processing for every split. Peak memory is
the tracemalloc peak of a separate run (numpy reports its buffers to tracemalloc).
"""

from __future__ import annotations

import csv
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fer_lightning.data.sources.fer2013 import read_fer_csv
from fer_lightning.data.sources.ferplus import VOTE_COLUMNS, FERPlusSource

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
    return lines


if __name__ == "__main__":
    print("\n".join(rows()))
