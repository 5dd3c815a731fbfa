"""Landmarks extracted once per (dataset, split, backend settings) and cached on disk.

One cache entry per split, ``<cache_dir>/<Source>-<split>-<backend>-<key>/``, where the
key hashes the layout version, the source's identity (class, resolved root, settings:
``content.source_identity``), the split and the pipeline settings (backend, its settings
and package version, face-crop settings). Inside:

- ``key.json``: what the key hashes, readable;
- ``arrays-<generation>/``: the merged arrays, ``points.npy``, ``valid.npy``,
  ``crop_box.npy``, ``face_box.npy``, one ``extra_<name>.npy`` per backend extra (e.g.
  the 478-point MediaPipe mesh, memory-mapped when read) and ``digests.npy``, the
  content digest of every sample's image bytes (``content.sample_digests``);
- ``file_digests.json``: for image-file datasets, each file's digest with its stat
  signature, so later runs hash only files that changed (``content.FileDigestMemo``);
- ``done.json``: written last, it names the current ``arrays-<generation>`` folder and
  holds the detection report, the chunk size and a BLAKE2b checksum of every chunk of
  rows of every array. Replacing it is the atomic commit of a new generation;
- ``chunk_<start>-<stop>.npz``: rows extracted but not merged yet (an interrupted run
  leaves whole chunks only: each is written to a temporary name and renamed), each
  with the digests of its samples;
- ``.lock`` and ``claims/``: cross-process locks (the ``filelock`` package), one empty
  file per chunk, kept (deleting a lock file races with a process opening it).

Every ``compute`` (``prepare_data``) hashes the split's content and checks the entry:
rows whose digest changed (an edited image, swapped rows), rows of a damaged array
(checksum or header) and damaged chunk files (zip CRC) are named in a warning and
extracted again, chunk by chunk; the rest is kept. Several processes on one entry (a
SLURM array) share the work: each claims free chunks (one lock per chunk), waits for
the chunks others claimed, and one merges under the entry lock; all end with the same
arrays. Entries of the previous layout (no content digests) are not reused: a warning
names them and the split is extracted again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock, Timeout

from fer_lightning.data.landmarks.config import LandmarksConfig
from fer_lightning.data.landmarks.content import (
    FileDigestMemo,
    digest_method,
    identity_hash,
    sample_digests,
    source_identity,
)
from fer_lightning.data.landmarks.pipeline import (  # noqa: F401  (re-exported names)
    BASE_KEYS,
    LandmarkPipeline,
    build_pipeline,
)
from fer_lightning.data.pools import spawn_pool
from fer_lightning.data.sources.base import Source

log = logging.getLogger(__name__)

#: Version of the on-disk layout (part of the key). 1: no content digests (before 0.2).
CACHE_FORMAT = 2
_CHUNK = re.compile(r"chunk_(\d+)-(\d+)\.npz$")
_WARNED_OLD: set[str] = set()


@dataclass
class LandmarkArrays:
    """The cached landmarks of one split (see the module docstring)."""

    points: np.ndarray  # (N, P, 2) float32, NaN where not valid
    valid: np.ndarray  # (N,) bool
    crop_box: np.ndarray  # (N, 4) float32 pixels, NaN for pre-cropped
    face_box: np.ndarray | None = None  # (N, 4) float32 in [0, 1], NaN where none
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # memory-mapped

    def __len__(self) -> int:
        return len(self.valid)


def _file(key: str) -> str:
    return f"{key}.npy" if key in (*BASE_KEYS, "digests") else f"extra_{key}.npy"


def _checksum(array: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(array).tobytes(), digest_size=16).hexdigest()


def _ranges(size: int, chunk_size: int) -> list[tuple[int, int]]:
    return [(start, min(start + chunk_size, size)) for start in range(0, size, chunk_size)]


# -- one chunk ---------------------------------------------------------------------------


def _chunk_path(directory: Path, start: int, stop: int) -> Path:
    return directory / f"chunk_{start:09d}-{stop:09d}.npz"


def _read_chunk(path: Path, keys: Iterable[str], digests: np.ndarray | None
                ) -> dict[str, np.ndarray] | None:
    """The arrays of a chunk file whose rows still hold the content ``digests`` (all of
    them read, so the zip CRC of each is checked); None when it is stale. Raises on a
    damaged file."""
    with np.load(path) as chunk:
        arrays = {key: chunk[key] for key in (*keys, "digests")}
    rows = {len(array) for array in arrays.values()}
    if len(rows) != 1:
        raise ValueError(f"its arrays have different row counts {sorted(rows)}")
    if digests is None or not np.array_equal(arrays["digests"], digests):
        return None
    return arrays


def _compute_chunk(source: Source, split: str, pipeline: LandmarkPipeline, path: Path,
                   start: int, stop: int, digests: np.ndarray) -> None:
    records = [pipeline.detect(source.load(split, index).image) for index in range(start, stop)]
    arrays = {key: np.stack([record[key] for record in records]) for key in pipeline.shapes}
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as handle:
        np.savez(handle, digests=digests, **arrays)
    os.replace(tmp, path)


def _generation(directory: Path) -> int | None:
    try:
        return int(json.loads((directory / "done.json").read_text())["generation"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _claim_and_compute(source: Source, split: str, pipeline: LandmarkPipeline,
                       directory: Path, start: int, stop: int, digests: np.ndarray,
                       generation: int | None, wait: bool) -> int | None:
    """Extract rows [start, stop) unless another process holds their claim (then None,
    or with ``wait`` wait for it), they are already in a chunk file, or another process
    merged a new generation meanwhile (the final merge re-checks everything). Returns
    the number of samples extracted here."""
    claims = directory / "claims"
    claims.mkdir(parents=True, exist_ok=True)
    # Claim files are never deleted: another process may be opening one at any moment.
    lock = FileLock(claims / f"{start:09d}-{stop:09d}.lock")
    try:
        lock.acquire(timeout=-1 if wait else 0)
    except Timeout:
        return None
    try:
        path = _chunk_path(directory, start, stop)
        if _generation(directory) != generation:
            return 0
        if path.is_file():
            try:
                if _read_chunk(path, pipeline.shapes, digests) is not None:
                    return 0
            except Exception:  # noqa: BLE001 - a damaged file is rewritten below
                pass
        _compute_chunk(source, split, pipeline, path, start, stop, digests)
        return stop - start
    finally:
        lock.release()


_WORKER: dict[str, Any] = {}


def _init_worker(source: Source, split: str, pipeline: LandmarkPipeline) -> None:
    """Per worker process: keep the source and pipeline (the model loads on first use)."""
    # The processes are the parallelism: one thread each. Set before a backend imports
    # torch (importing it here would cost every worker seconds even when nothing needs it).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    _WORKER.update(source=source, split=split, pipeline=pipeline)


def _worker_chunk(directory: str, start: int, stop: int, digests: np.ndarray,
                  generation: int | None) -> tuple[int, int, int | None]:
    done = _claim_and_compute(_WORKER["source"], _WORKER["split"], _WORKER["pipeline"],
                              Path(directory), start, stop, digests, generation, wait=False)
    return start, stop, done


# -- the state of an entry ---------------------------------------------------------------


@dataclass
class _State:
    """What an entry holds for the current content: the merged arrays (memory-mapped)
    and the rows they hold correctly, and the usable chunk files."""

    merged: dict[str, np.ndarray] = field(default_factory=dict)
    merged_good: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    chunks: dict[tuple[int, int], Path] = field(default_factory=dict)
    generation: int | None = None

    def covered(self, size: int) -> np.ndarray:
        rows = np.zeros(size, bool)
        rows[: len(self.merged_good)] |= self.merged_good[:size]
        for start, stop in self.chunks:
            rows[start:stop] = True
        return rows


class LandmarkCache:
    """Compute (once), verify, repair and load the landmarks of one split of one source."""

    def __init__(self, root: str | os.PathLike, source: Source, split: str,
                 pipeline: LandmarkPipeline, chunk_size: int = 256, num_workers: int = 1,
                 progress: bool = True) -> None:
        self.source, self.split, self.pipeline = source, split, pipeline
        self.chunk_size, self.num_workers, self.progress = chunk_size, num_workers, progress
        self.size = len(source.split_info(split).labels)
        self.key_data = {"format": CACHE_FORMAT, "source": source_identity(source),
                         "split": split, **pipeline.settings}
        self.key = identity_hash(self.key_data)
        self.prefix = f"{type(source).__name__}-{split}-{pipeline.extractor.name}"
        self.root = Path(root)
        self.directory = self.root / f"{self.prefix}-{self.key}"
        self._digests: np.ndarray | None = None
        #: True once ``compute`` checked the entry against the content in this process.
        self.verified = False

    # -- state -------------------------------------------------------------------------

    @property
    def complete(self) -> bool:
        """The entry has merged arrays (not checked against the content: ``compute``)."""
        return _generation(self.directory) is not None

    def digests(self) -> np.ndarray:
        """(N, 16) uint8 content digests of the split (computed once per object)."""
        if self._digests is None:
            memo = FileDigestMemo(self.directory / "file_digests.json")
            self._digests = sample_digests(self.source, self.split, self.size, memo)
        return self._digests

    def chunks(self) -> list[tuple[int, int]]:
        """Every chunk of rows as (start, stop)."""
        return _ranges(self.size, self.chunk_size)

    def _lock(self) -> FileLock:
        return FileLock(self.directory / ".lock")

    def _locked(self) -> FileLock:
        """The entry lock, acquired (logging when another process holds it)."""
        lock = self._lock()
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log.info("Landmark cache %s is in use by another process; waiting", self.directory)
            lock.acquire()
        return lock

    def _read_merged(self, digests: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray,
                                                         int | None]:
        """(arrays, rows holding the current content correctly, generation); damaged
        arrays and chunks of rows are named in a warning and count as not held."""
        generation = _generation(self.directory)
        none = ({}, np.zeros(self.size, bool), generation)
        try:
            done = json.loads((self.directory / "done.json").read_text())
            folder = self.directory / done["arrays"]
            checksums, chunk_size, size = done["checksums"], int(done["chunk_size"]), \
                int(done["size"])
        except FileNotFoundError:
            return none
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.warning("Landmark cache %s: done.json is damaged (%s: %s); extracting the "
                        "split again", self.directory / "done.json", type(error).__name__,
                        error)
            return none
        expected = {_file(key) for key in (*self.pipeline.shapes, "digests")}
        if set(checksums) != expected:
            log.warning("Landmark cache %s holds arrays %s, expected %s; extracting again",
                        folder, sorted(checksums), sorted(expected))
            return none
        arrays, good = {}, np.ones(size, bool)
        for name, sums in checksums.items():
            path = folder / name
            try:
                array = np.load(path, mmap_mode="r")
                if len(array) != size or len(sums) != len(_ranges(size, chunk_size)):
                    raise ValueError(f"{len(array)} rows, done.json says {size}")
            except Exception as error:  # noqa: BLE001 - any unreadable file is damage
                log.warning("Landmark cache: %s is damaged (%s: %s); extracting its rows "
                            "again", path, type(error).__name__, error)
                return none
            bad = [(start, stop) for (start, stop), expected_sum
                   in zip(_ranges(size, chunk_size), sums, strict=True)
                   if _checksum(array[start:stop]) != expected_sum]
            for start, stop in bad:
                good[start:stop] = False
            if bad:
                log.warning("Landmark cache: %s is damaged: rows %s fail their checksum; "
                            "extracting them again", path,
                            ", ".join(f"{start}-{stop - 1}" for start, stop in bad))
            arrays[name] = array
        stored = arrays["digests.npy"]
        rows = min(size, self.size)
        good = good[:rows] & (np.asarray(stored[:rows]) == digests[:rows]).all(axis=1)
        merged_good = np.zeros(self.size, bool)
        merged_good[:rows] = good
        changed = rows - int(np.count_nonzero(good))
        if changed or size != self.size:
            log.info("Landmark cache %s: %d of %d samples changed content since extraction",
                     self.directory, changed + abs(self.size - size), self.size)
        return arrays, merged_good, generation

    def _scan(self, digests: np.ndarray) -> _State:
        """The entry's state for ``digests`` (call with the entry lock held); stale or
        damaged chunk files are deleted (damaged ones named in a warning)."""
        merged, merged_good, generation = self._read_merged(digests)
        state = _State(merged, merged_good, generation=generation)
        for path in sorted(self.directory.glob("chunk_*.npz")):
            match = _CHUNK.match(path.name)
            start, stop = (int(match[1]), int(match[2])) if match else (0, -1)
            inside = match is not None and 0 <= start < stop <= self.size
            try:
                usable = inside and _read_chunk(path, self.pipeline.shapes,
                                                digests[start:stop]) is not None
            except Exception as error:  # noqa: BLE001 - any unreadable file is damage
                log.warning("Landmark cache: %s is damaged (%s: %s); extracting it again",
                            path, type(error).__name__, error)
                usable = False
            if usable and not merged_good[start:stop].all():
                state.chunks[start, stop] = path
            else:
                path.unlink(missing_ok=True)
        return state

    # -- compute -----------------------------------------------------------------------

    def compute(self) -> int:
        """Bring the entry up to date with the split's content: extract what is missing,
        changed or damaged, then merge. Returns the samples extracted by this process."""
        digests = self.digests()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._warn_old_layouts()
        lock = self._locked()
        try:
            if not (self.directory / "key.json").is_file():
                _write_json(self.directory / "key.json", self.key_data)
            state = self._scan(digests)
            covered = state.covered(self.size)
            if state.merged and covered.all() and not state.chunks:
                self.verified = True
                return 0
            todo = [(a, b) for a, b in self.chunks() if not covered[a:b].all()]
        finally:
            lock.release()
        extracted = self._extract(todo, digests, state.generation)
        lock = self._locked()
        try:
            extracted += self._merge(digests)
        finally:
            lock.release()
        self.verified = True
        return extracted

    def _extract(self, todo: list[tuple[int, int]], digests: np.ndarray,
                 generation: int | None) -> int:
        """Extract the chunks of ``todo`` that no other process is extracting, then wait
        for those (and extract any whose process died)."""
        if not todo:
            return 0
        samples = sum(stop - start for start, stop in todo)
        log.info("Landmarks %s/%s: extracting %d of %d samples with %s (%d worker(s)) into %s",
                 type(self.source).__name__, self.split, samples, self.size,
                 self.pipeline.extractor.name, max(1, self.num_workers), self.directory)
        args = (self.source, self.split, self.pipeline, self.directory)
        extracted, busy = 0, []
        with _progress(self.progress, f"landmarks {self.split}", samples) as advance:
            if self.num_workers <= 1:
                for start, stop in todo:
                    done = _claim_and_compute(*args, start, stop, digests[start:stop],
                                              generation, wait=False)
                    busy += [(start, stop)] if done is None else []
                    extracted += done or 0
                    advance(stop - start)
            else:
                for start, stop, done in self._extract_parallel(todo, digests, generation):
                    busy += [(start, stop)] if done is None else []
                    extracted += done or 0
                    advance(stop - start)
        for start, stop in busy:
            log.info("Landmark cache %s: waiting for rows %d-%d, which another process is "
                     "extracting", self.directory, start, stop - 1)
            extracted += _claim_and_compute(*args, start, stop, digests[start:stop],
                                            generation, wait=True) or 0
        return extracted

    def _extract_parallel(self, todo: list[tuple[int, int]], digests: np.ndarray,
                          generation: int | None) -> Iterable[tuple[int, int, int | None]]:
        with spawn_pool(self.num_workers, f"landmark cache {self.directory}",
                        initializer=_init_worker,
                        initargs=(self.source, self.split, self.pipeline)) as pool:
            futures = [pool.submit(_worker_chunk, str(self.directory), start, stop,
                                   digests[start:stop], generation) for start, stop in todo]
            for future in futures:
                yield future.result()

    def _merge(self, digests: np.ndarray) -> int:
        """Merge the usable chunk files and the still-correct merged rows into a new
        generation (call with the entry lock held); rows that neither holds (a process
        died mid-chunk) are extracted here. Returns the samples extracted here."""
        state = self._scan(digests)
        covered = state.covered(self.size)
        if state.merged and covered.all() and not state.chunks:
            return 0  # another process merged meanwhile
        extracted = 0
        for start, stop in self.chunks():
            if not covered[start:stop].all():
                path = _chunk_path(self.directory, start, stop)
                _compute_chunk(self.source, self.split, self.pipeline, path, start, stop,
                               digests[start:stop])
                state.chunks[start, stop] = path
                extracted += stop - start
        generation = (state.generation or 0) + 1
        folder = self.directory / f"arrays-{generation}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        keep = state.merged_good.copy()
        for start, stop in state.chunks:
            keep[start:stop] = False
        shapes = {**self.pipeline.shapes, "digests": (digests.shape[1],)}
        checksums = {}
        for key, shape in shapes.items():
            dtype = np.uint8 if key == "digests" else (bool if key == "valid" else np.float32)
            out = _open_output(folder / _file(key), dtype, (self.size, *shape))
            if key == "digests":
                out[:] = digests
            else:
                for start, stop in _ranges(self.size, self.chunk_size):
                    rows = keep[start:stop]
                    if rows.any():
                        out[start:stop][rows] = state.merged[_file(key)][start:stop][rows]
                for (start, stop), path in state.chunks.items():
                    with np.load(path) as chunk:
                        out[start:stop] = chunk[key]
            if isinstance(out, np.memmap):
                out.flush()
            checksums[_file(key)] = [_checksum(out[a:b]) for a, b in self.chunks()]
            del out
        valid = np.load(folder / "valid.npy")
        _write_json(self.directory / "done.json", {
            "format": CACHE_FORMAT, "generation": generation, "arrays": folder.name,
            "size": self.size, "chunk_size": self.chunk_size, "checksums": checksums,
            "digests": digest_method(self.source, self.split, self.size),
            "detection": detection_report(valid)})
        for path in state.chunks.values():
            path.unlink(missing_ok=True)
        for old in self.directory.glob("arrays-*"):
            if old != folder:
                shutil.rmtree(old, ignore_errors=True)
        return extracted

    def _warn_old_layouts(self) -> None:
        """Name entries of an older layout for this split and backend (not reused)."""
        for old in self.root.glob(f"{self.prefix}-*"):
            if old == self.directory or str(old) in _WARNED_OLD:
                continue
            try:
                key = json.loads((old / "key.json").read_text())
            except (OSError, ValueError):
                continue
            if key.get("format", 1) < CACHE_FORMAT:
                _WARNED_OLD.add(str(old))
                log.warning("Landmark cache %s has the old layout (no content digests) and "
                            "is not reused: extracting into %s. Delete the old folder to "
                            "free its space.", old, self.directory)

    # -- load --------------------------------------------------------------------------

    def load(self) -> LandmarkArrays:
        """The merged arrays (run ``compute`` first, e.g. in ``prepare_data``); extras are
        memory-mapped. Read under the entry lock, so never half of a new generation."""
        if not self.complete:
            raise FileNotFoundError(f"landmark cache {self.directory} is incomplete; run the "
                                    f"DataModule's prepare_data() (or LandmarkCache.compute()) "
                                    f"first")
        lock = self._locked()
        try:
            try:
                done = json.loads((self.directory / "done.json").read_text())
                folder = self.directory / done["arrays"]
            except (OSError, ValueError, KeyError) as error:
                raise FileNotFoundError(
                    f"landmark cache {self.directory} is incomplete ({error}); run the "
                    f"DataModule's prepare_data() (or LandmarkCache.compute()) first") from None
            extra = {key: np.load(folder / _file(key), mmap_mode="r")
                     for key in self.pipeline.extractor.extra_shapes}
            arrays = LandmarkArrays(
                points=np.load(folder / "points.npy"),
                valid=np.load(folder / "valid.npy").astype(bool),
                crop_box=np.load(folder / "crop_box.npy"),
                face_box=np.load(folder / "face_box.npy"), extra=extra)
        finally:
            lock.release()
        if len(arrays) != self.size:
            raise ValueError(f"landmark cache {self.directory} holds {len(arrays)} samples, "
                             f"the split has {self.size}; run prepare_data() to update it")
        return arrays

    def clear(self) -> None:
        """Delete this entry (all chunks and arrays)."""
        shutil.rmtree(self.directory, ignore_errors=True)


def detection_report(valid: np.ndarray) -> dict[str, float | int]:
    """``{"detected": n, "missed": m, "rate": n / (n + m)}`` for one split."""
    detected = int(np.count_nonzero(valid))
    total = int(len(valid))
    return {"detected": detected, "missed": total - detected,
            "rate": detected / total if total else 0.0}


def _open_output(path: Path, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A writable array saved as ``path`` (memory-mapped; an empty split in memory,
    since an empty file cannot be mapped)."""
    if shape[0] == 0:
        np.save(path, np.zeros(shape, dtype))
        return np.zeros(shape, dtype)
    return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)


def _write_json(path: Path, content: Mapping[str, Any]) -> None:
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(content, indent=2, sort_keys=True))
    os.replace(tmp, path)


class _progress:
    """A rich progress bar (or nothing) whose context value advances it."""

    def __init__(self, enabled: bool, title: str, total: int) -> None:
        self.enabled, self.title, self.total = enabled, title, total
        self.bar: Any = None

    def __enter__(self) -> Any:
        if not self.enabled:
            return lambda n: None
        from rich.progress import Progress

        self.bar = Progress(transient=False)
        self.bar.start()
        task = self.bar.add_task(self.title, total=self.total)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


# -- from a LandmarksConfig --------------------------------------------------------------


def caches_for(config: LandmarksConfig, source: Source, splits: Iterable[str],
               precropped: bool | None = None, progress: bool = True
               ) -> dict[str, LandmarkCache]:
    """One ``LandmarkCache`` per split, as ``config`` says; ``precropped`` is the
    dataset's declaration (``config.precropped`` wins when set)."""
    pipeline = build_pipeline(config, config.resolve_precropped(precropped))
    return {split: LandmarkCache(config.cache_dir, source, split, pipeline,
                                 chunk_size=config.chunk_size, num_workers=config.num_workers,
                                 progress=progress)
            for split in splits}
