"""The contract every dataset source fulfils: one on-disk (or generated) format -> records.

A source knows its class names (in its own order) and, per split, how many samples
there are, their hard labels, and how to load one sample. It knows nothing about
networks, augmentation or landmark encodings (see docs/data-flow.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from fer_lightning.errors import DatasetError  # noqa: F401  (re-exported)

SPLITS = ("train", "val", "test")


class SplitUnavailableError(ValueError):
    """The requested split does not exist in this form of the dataset (e.g. no labels)."""


# ``DatasetError`` lives on the ground floor (fer_lightning.errors); imported from here too.


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


@dataclass(frozen=True)
class ListedImage:
    """One image file a split reads, with where it was listed (for error messages) and,
    for sources that crop a face box out of it, that box (x, y, width, height).

    ``box_within``: the box must lie inside the image, not merely overlap it (FER+: its
    boxes were written for the 48x48 release images, so a box past the border means the
    images were resized or replaced since).
    """

    path: Path
    where: str = ""
    box: tuple[int, int, int, int] | None = None
    box_within: bool = False


class Source(Protocol):
    """A dataset format. Implementations live one per file in ``data/sources``.

    Optional, beyond the protocol: ``sample_digest(split, index) -> bytes``, a fast
    digest of what sample ``index``'s image is made from (e.g. for generated data, its
    config and index). It must change whenever ``load(split, index).image`` can change.
    The landmark cache keys its rows by it. Sources that read one file per sample
    implement ``ImageFileSource`` instead (the cache hashes those files, remembering each
    digest until the file changes); without either, the cache hashes the decoded image,
    which is always right but decodes every image (docs/landmarks.md, "The cache").

    What the cache and the checks read beyond the methods, each in one function:

    - root: a ``root`` attribute (the dataset folder; absent for generated data), read by
      ``landmarks.content.resolved_root``;
    - description: ``describe() -> str`` (the files read, the split protocol) for
      messages, read by ``sources.validate.describe`` (default: the class name);
    - identity: the class, the resolved root and every public attribute holding plain
      values, read by ``landmarks.content.source_identity`` as the cache's dataset key.
      A setting that changes the samples must therefore be a public attribute; a
      private (``_name``) one is not part of the key.
    """

    class_names: list[str]

    def split_info(self, split: str) -> SplitInfo:
        """Labels (and skip counts) of ``split`` without decoding images."""
        ...

    def load(self, split: str, index: int) -> RawSample:
        """Sample ``index`` of ``split``; deterministic for a given source config."""
        ...


@runtime_checkable
class ImageFileSource(Protocol):
    """A source that reads one image file per sample (the photo datasets and FER+'s
    folder release): the dataset checks read these files' headers before training."""

    def image_files(self, split: str) -> list[ListedImage]:
        """The image file of every sample of ``split``, in sample order."""
        ...
