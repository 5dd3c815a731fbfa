"""The contract every dataset source fulfils: one on-disk (or generated) format -> records.

A source knows its class names (in its own order) and, per split, how many samples
there are, their hard labels, and how to load one sample. It knows nothing about
networks, augmentation or landmark encodings (DESIGN.md, "one path for data").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

SPLITS = ("train", "val", "test")


class SplitUnavailableError(ValueError):
    """The requested split does not exist in this form of the dataset (e.g. no labels)."""


@dataclass
class RawSample:
    """One sample as a source returns it, before any transform.

    ``image`` is uint8, (H, W) for grayscale or (H, W, 3) for colour.
    ``landmarks`` is (68, 2) float32 in [0, 1] image coordinates (x, y), or None when
    the source carries no landmarks of its own.
    """

    image: np.ndarray
    label: int
    landmarks: np.ndarray | None = None
    landmarks_valid: bool = False
    target: np.ndarray | None = None


@dataclass
class SplitInfo:
    """What a source says about one split without loading images."""

    labels: np.ndarray  # (N,) int64 hard labels, used for counts, weights and samplers
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> rows skipped


class Source(Protocol):
    """A dataset format. Implementations live one per file in ``data/sources``.

    Optional, beyond the protocol: ``sample_digest(split, index) -> bytes``, a fast
    digest of the bytes sample ``index``'s image comes from (e.g. BLAKE2b of its image
    file, of its csv row's pixels, or, for generated data, of the config and index). It
    must change whenever ``load(split, index).image`` can change. The landmark cache
    keys its rows by it; without it the cache hashes the decoded image, which is always
    right but decodes every image (docs/landmarks.md, "The cache").
    """

    class_names: list[str]

    def split_info(self, split: str) -> SplitInfo:
        """Labels (and skip counts) of ``split`` without decoding images."""
        ...

    def load(self, split: str, index: int) -> RawSample:
        """Sample ``index`` of ``split``; deterministic for a given source config."""
        ...
