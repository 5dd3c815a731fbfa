"""A tiny source and a fake, fast landmark extractor for the cache tests (importable by
the subprocesses of the concurrency test: numpy and the cache only, no torch)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from fer_lightning.data.landmarks.cache import LandmarkCache, LandmarkPipeline
from fer_lightning.data.sources.base import SPLITS, RawSample, SplitInfo

SIZES = {"train": 10, "val": 6, "test": 5}


class TinySource:
    """``sizes`` samples per split; sample i's image is filled with value
    ``i + 10 * split number`` (changeable with ``set_value``), its label is i % 3."""

    class_names = ["a", "b", "c"]

    def __init__(self, root: str | Path = "/tiny", seed: int = 0,
                 sizes: dict[str, int] | None = None) -> None:
        self.root, self.seed = Path(root), seed
        self._sizes = dict(sizes or SIZES)
        self._values = {split: [index + 10 * SPLITS.index(split) for index in range(n)]
                        for split, n in self._sizes.items()}

    def set_value(self, split: str, index: int, value: int) -> None:
        self._values[split][index] = value

    def split_info(self, split: str) -> SplitInfo:
        return SplitInfo(labels=np.arange(self._sizes[split]) % 3)

    def load(self, split: str, index: int) -> RawSample:
        image = np.full((8, 8), self._values[split][index], np.uint8)
        return RawSample(image=image, label=index % 3)


class CountingExtractor:
    """Points derived from the image value; a face is "missed" where value % 4 == 3.
    Counts calls; raises after ``fail_after`` calls (a simulated interruption); sleeps
    ``delay`` seconds per image (so concurrent processes overlap)."""

    name = "counting"
    num_points = 68

    def __init__(self, scale: float = 0.01, fail_after: int | None = None,
                 delay: float = 0.0) -> None:
        self.scale, self.fail_after, self.delay, self.calls = scale, fail_after, delay, 0

    @property
    def settings(self) -> dict:
        return {"scale": self.scale}

    @property
    def extra_shapes(self) -> dict:
        return {"box": (4,)}

    def extract(self, image: np.ndarray, face_box=None):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("interrupted")
        self.calls += 1
        time.sleep(self.delay)
        value = int(image[0, 0])
        if value % 4 == 3:
            return None, {"box": np.full(4, np.nan, np.float32)}
        points = np.full((68, 2), value * self.scale, np.float32)
        return points, {"box": np.full(4, value, np.float32)}


def make_cache(root: Path, extractor: CountingExtractor, split: str = "train",
               source: TinySource | None = None, chunk_size: int = 4,
               **kwargs) -> LandmarkCache:
    return LandmarkCache(root, source or TinySource(), split, LandmarkPipeline(extractor),
                         chunk_size=chunk_size, progress=False, **kwargs)


def extract_in_subprocess(root: str, out: str, delay: str) -> None:
    """What each process of the concurrency test runs: extract, then save the arrays."""
    source = TinySource(sizes={"train": 40})
    cache = make_cache(Path(root), CountingExtractor(delay=float(delay)), source=source)
    extracted = cache.compute()
    arrays = cache.load()
    np.savez(out, points=arrays.points, valid=arrays.valid, box=arrays.extra["box"],
             extracted=extracted)
