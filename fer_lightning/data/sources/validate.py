"""What training needs of a dataset, checked before it starts.

One place for the checks that ``FERDataModule`` runs before the first epoch (so a run
fails in seconds, naming the dataset, split and reason) and that ``python -m
fer_lightning.data summary`` runs to exit non-zero:

- at least two classes, and training samples of at least two of them;
- whatever the source's own ``class_problems()`` reports, where it has one (image
  folders: class folders differing only in case, val / test classes train lacks);
- every split this form of the dataset has holds samples after its skips (a split the
  form does not have, such as FER2013 train.csv's test split, is not a problem here);
- with ``required`` splits (``val`` when fitting), that they exist;
- every image file a split lists can be read: a header check (``images="header"``:
  signature and end marker, see ``io.header_problem``) or a full decode
  (``images="full"``); face boxes must overlap their image.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from fer_lightning.checks import check_choice
from fer_lightning.data.sources import io
from fer_lightning.data.sources.base import DatasetError, ImageFileSource, ListedImage, Source
from fer_lightning.errors import ConfigError

#: How thoroughly listed image files are checked: not at all, by their header, decoded.
IMAGE_CHECKS = ("none", "header", "full")
#: How many problems an error message lists before "... and N more".
MAX_SHOWN = 10


def split_problems(source: Source, splits: Sequence[str],
                   unavailable: Mapping[str, str] | None = None,
                   required: Iterable[str] = ()) -> list[str]:
    """Problems with the classes and the sample counts of ``splits`` (those the source
    has); ``required`` splits missing from ``splits`` are problems too, with the reason
    from ``unavailable``."""
    problems = []
    names = list(source.class_names)
    if len(names) < 2:
        problems.append(f"{len(names)} class ({', '.join(names)}); a classifier needs at "
                        f"least two")
    class_problems = getattr(source, "class_problems", None)
    if callable(class_problems):
        problems += class_problems()
    for split in required:
        if split not in splits:
            why = (unavailable or {}).get(split, "the source does not provide it")
            problems.append(f"split '{split}' is needed but unavailable: {why}")
    for split in splits:
        info = source.split_info(split)
        if len(info.labels) == 0:
            problems.append(f"split '{split}' has no samples{_after_skips(info.skipped)}")
        elif split == "train" and len(names) >= 2:
            present = np.unique(info.labels)
            if len(present) < 2:
                problems.append(f"split 'train' holds samples of one class only "
                                f"({names[int(present[0])]}); a classifier needs at least two")
    return problems


def _after_skips(skipped: Mapping[str, int]) -> str:
    total = sum(skipped.values())
    if not total:
        return ""
    reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(skipped.items()))
    return f" after skipping {total} rows ({reasons})"


def listed_images(source: Source, splits: Sequence[str]) -> list[ListedImage]:
    """Every listing of an image file by ``splits``, each once (splits may share their
    listings: test = val)."""
    if not isinstance(source, ImageFileSource):
        return []
    return list(dict.fromkeys(image for split in splits for image in source.image_files(split)))


def image_problems(source: Source, splits: Sequence[str], images: str = "header") -> list[str]:
    """``"<file> (<where listed>): <why>"`` for every image of ``splits`` that training
    could not read, checked as ``images`` says (one of IMAGE_CHECKS)."""
    check_choice("data.check_images", images, IMAGE_CHECKS)
    if images == "none":
        return []
    return io.image_problems(listed_images(source, splits), full=images == "full")


def dataset_problems(source: Source, splits: Sequence[str],
                     unavailable: Mapping[str, str] | None = None,
                     required: Iterable[str] = (), images: str = "header") -> list[str]:
    """Every problem ``split_problems`` and ``image_problems`` find, all at once, so one
    pass over a broken copy shows everything to fix."""
    return split_problems(source, splits, unavailable, required) + \
        image_problems(source, splits, images)


def causes(error: BaseException) -> list[BaseException]:
    """``error`` and the errors it was raised from, outermost first (Hydra's
    InstantiationException wraps what a source's constructor raised)."""
    chain: list[BaseException] = []
    while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


def user_error(error: BaseException) -> ValueError | None:
    """The one-line error a user gets for ``error``, raised while a dataset was read,
    or None when it is a defect to show with its traceback.

    A ConfigError or DatasetError in the chain is returned as it is; a ValueError,
    UnicodeError or OSError raised by a source (a bad label file, a missing column, an
    unreadable file) becomes a DatasetError with the same message, unless its message
    names a config key (``data.<key> ...``), which makes it a ConfigError. The data
    summary and training both go through here, so they stop on the same line.
    """
    chain = causes(error)
    for link in chain:
        if isinstance(link, (ConfigError, DatasetError)):
            return link
    innermost = chain[-1]
    if not isinstance(innermost, (ValueError, OSError)):
        return None
    message = str(innermost)
    if message.startswith("data."):
        return ConfigError(message)
    return DatasetError(message)


def describe(source: Source) -> str:
    """The dataset as the source describes itself (files read, split protocol)."""
    describe_fn = getattr(source, "describe", None)
    return describe_fn() if callable(describe_fn) else type(source).__name__


def error(source: Source, problems: Sequence[str]) -> DatasetError:
    """One DatasetError listing ``problems`` (the first MAX_SHOWN) under the dataset."""
    shown = "\n".join(f"  - {problem}" for problem in problems[:MAX_SHOWN])
    more = len(problems) - MAX_SHOWN
    tail = (f"\n  ... and {more} more (python -m fer_lightning.data summary lists them all)"
            if more > 0 else "")
    return DatasetError(f"{type(source).__name__} ({describe(source)}) cannot be trained on:\n"
                        f"{shown}{tail}")
