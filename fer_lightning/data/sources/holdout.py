"""Seeded, stratified splits of one labelled partition into parts (e.g. train -> train + val).

Datasets without an official validation split (RAF-DB, AffectNet's public releases,
class-per-folder trees) carve one out of their training data. Stratifying keeps every
class's share the same in each part, which matters on imbalanced data (RAF-DB's fear and
disgust are under 6 % of train). The result depends only on the labels and the seed, so
every process, worker and rerun sees the same split.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _check_labels(labels: np.ndarray | Sequence[int]) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"labels must be a 1-D integer array, got dtype {array.dtype} "
                         f"and shape {array.shape}")
    return array.astype(np.int64, copy=False)


def stratified_partition(labels: np.ndarray | Sequence[int], fractions: Sequence[float],
                         seed: int) -> list[np.ndarray]:
    """Split indices of ``labels`` into ``len(fractions)`` parts, class by class.

    Within each class the indices are shuffled by a generator seeded with ``seed``, then
    cut at ``round(cumsum(fractions) * n_class)``; so each part holds about its fraction
    of every class (a class of a few samples may get none in a small part). ``fractions``
    must be non-negative and sum to 1. Returns sorted int64 index arrays, one per part.
    """
    labels = _check_labels(labels)
    fractions = np.asarray(fractions, dtype=np.float64)
    if fractions.ndim != 1 or fractions.size < 1 or (fractions < 0).any() \
            or not np.isclose(fractions.sum(), 1.0):
        raise ValueError(f"fractions must be non-negative and sum to 1, got {fractions.tolist()}")
    rng = np.random.default_rng(seed)
    cuts = np.cumsum(fractions)
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        bounds = np.concatenate([[0], np.rint(cuts * len(members)).astype(np.int64)])
        bounds[-1] = len(members)
        for part, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
            parts[part].append(members[start:stop])
    return [np.sort(np.concatenate(chunks)) if chunks else np.zeros(0, np.int64)
            for chunks in parts]


def stratified_holdout(labels: np.ndarray | Sequence[int], fraction: float,
                       seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train_idx, val_idx)``: a seeded hold-out of about ``fraction`` of every class.

    ``fraction`` must lie strictly between 0 and 1. Per class, ``round(fraction * n)``
    samples go to val (so with ``fraction < 0.5`` a class of one sample stays in train);
    a hold-out that would be empty is an error, not an empty val split.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.floating)) \
            or not 0.0 < float(fraction) < 1.0:
        raise ValueError(f"the hold-out fraction must be a number in (0, 1), got {fraction!r}")
    labels = _check_labels(labels)
    train_idx, val_idx = stratified_partition(labels, (1.0 - fraction, fraction), seed)
    if len(labels) and not len(val_idx):
        largest = np.unique(labels, return_counts=True)[1].max()
        raise ValueError(f"a hold-out of fraction {fraction} from {len(labels)} samples "
                         f"(largest class {largest}) holds out nothing; raise the fraction")
    return train_idx, val_idx
