"""Splits decoded once into one uint8 array at the training size, cached on disk.

The rendered synthetic faces and the photo datasets (RAF-DB, AffectNet's csv release,
image folders, FER+'s folder release) cost a render or a JPEG decode per sample; served
per sample, every epoch pays it again. Here a split is decoded once, after the landmark
crop, into ``<cache_dir>/<Source>-<split>-<size>px<channels>-<key>/images.npy``, an
(N, size, size[, 3]) uint8 array read back memory-mapped. The key hashes the layout
version, the source's identity (class, resolved root, settings, so for the synthetic
faces the generator version, seed, size and split sizes), the content digest of every
sample (each image file, or the source's own ``sample_digest``; the landmark cache's
``content.sample_digests``), the size, the channels and the crop boxes. Any change gives
a new entry; nothing is ever reused for other content.

The array is written to a temporary file chunk by chunk (never more than a chunk of
images in memory, so an AffectNet-size split needs no more RAM than a small one), by
several processes when the split is large, then renamed; ``done.json``, written last,
commits the entry. Concurrent jobs on one entry serialise on its lock (the ``filelock``
package): the first decodes, the others wait and read. This module imports no torch, so
its worker processes start fast.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock, Timeout
from PIL import Image

from fer_lightning.data.landmarks.content import (
    FileDigestMemo,
    identity_hash,
    sample_digests,
    source_identity,
)
from fer_lightning.data.landmarks.face_crop import apply_crop
from fer_lightning.data.pools import spawn_pool
from fer_lightning.data.sources.base import Source
from fer_lightning.errors import ConfigError
from fer_lightning.launch import available_cpus

log = logging.getLogger(__name__)

#: Version of the on-disk layout and of the decoding below (part of the key).
DECODE_FORMAT = 1
#: Images decoded per chunk (one chunk in memory per process).
CHUNK = 512
#: Splits this large or larger are decoded by several processes.
PARALLEL_FROM = 4 * CHUNK


def to_training_pixels(image: np.ndarray, size: int, channels: int) -> np.ndarray:
    """uint8 (H, W) or (H, W, 3) -> uint8 (size, size) grey or (size, size, 3) colour.

    Colour is converted to luminance and grey replicated to 3 channels as needed (PIL's
    conversions), other sizes resized with bilinear filtering. The per-sample path's
    float image is exactly this array / 255, so both paths see the same pixels.
    """
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"a source returned an image of dtype {image.dtype} and shape "
                         f"{image.shape}; expected uint8 (H, W) or (H, W, 3)")
    pil = Image.fromarray(image).convert("L" if channels == 1 else "RGB")
    if pil.size != (size, size):
        pil = pil.resize((size, size), Image.BILINEAR)
    return np.asarray(pil, dtype=np.uint8)


def sample_fields(source: Source, split: str) -> dict[str, tuple[tuple[int, ...], Any]]:
    """The per-sample arrays besides the image that ``source`` returns for ``split``,
    as {name: (shape, dtype)}: ``target`` (soft labels) and ground-truth ``landmarks``
    with ``landmarks_valid``, judged from its first sample (sources return the same
    fields for every sample)."""
    if not len(source.split_info(split).labels):
        return {}
    raw = source.load(split, 0)
    fields: dict[str, tuple[tuple[int, ...], Any]] = {}
    if raw.target is not None:
        fields["target"] = (np.shape(raw.target), np.float32)
    if raw.landmarks is not None:
        fields["landmarks"] = (np.shape(raw.landmarks), np.float32)
        fields["landmarks_valid"] = ((), np.bool_)
    return fields


def decode_rows(source: Source, split: str, rows: np.ndarray, size: int, channels: int,
                crop_boxes: np.ndarray | None,
                fields: dict[str, tuple[tuple[int, ...], Any]]) -> dict[str, np.ndarray]:
    """The training pixels (``image``) and ``fields`` of samples ``rows`` of ``split``,
    each image cropped first to its ``crop_boxes`` row where that row is finite (photo
    datasets with a landmark backend)."""
    shape = (size, size) if channels == 1 else (size, size, 3)
    out = {"image": np.empty((len(rows), *shape), np.uint8)}
    out.update({name: np.zeros((len(rows), *field_shape), dtype)
                for name, (field_shape, dtype) in fields.items()})
    for position, index in enumerate(rows):
        raw = source.load(split, int(index))
        image = raw.image
        if crop_boxes is not None and np.isfinite(crop_boxes[index]).all():
            image = apply_crop(image, crop_boxes[index])
        out["image"][position] = to_training_pixels(image, size, channels)
        for name in fields:
            out[name][position] = getattr(raw, name)
    return out


def _digest(array: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(array).tobytes(), digest_size=16).hexdigest()


class DecodeCache:
    """The decoded uint8 images (and soft targets / ground-truth landmarks, when the
    source has them) of one split of one source; see the module docstring.

    ``crop_boxes``: (N, 4) integer xyxy boxes per sample (NaN rows: not cropped), the
    landmark cache's ``crop_box``; ``workers``: processes decoding a large split the
    first time (default: the CPUs this process may use, at most 8).
    """

    def __init__(self, root: str | os.PathLike, source: Source, split: str, size: int,
                 channels: int, crop_boxes: np.ndarray | None = None,
                 workers: int | None = None) -> None:
        self.source, self.split, self.size, self.channels = source, split, size, channels
        self.length = len(source.split_info(split).labels)
        self.crop_boxes = None if crop_boxes is None else np.asarray(crop_boxes)
        self.workers = workers if workers is not None else min(8, available_cpus())
        self.root = Path(root)
        self.prefix = f"{type(source).__name__}-{split}-{size}px{channels}"
        self.fields = sample_fields(source, split)
        self._key: str | None = None

    def shapes(self) -> dict[str, tuple[tuple[int, ...], Any]]:
        """{file stem: (array shape, dtype)} of the entry's arrays."""
        pixels = (self.size, self.size) if self.channels == 1 else (self.size, self.size, 3)
        return {"image": ((self.length, *pixels), np.uint8),
                **{name: ((self.length, *shape), dtype)
                   for name, (shape, dtype) in self.fields.items()}}

    @property
    def nbytes(self) -> int:
        """Disk size of the entry's arrays."""
        return sum(int(np.prod(shape)) * np.dtype(dtype).itemsize
                   for shape, dtype in self.shapes().values())

    def key_data(self) -> dict[str, Any]:
        """What the entry's key hashes (written to ``key.json``)."""
        memo = FileDigestMemo(self.root / f"{self.prefix}-file_digests.json")
        content = sample_digests(self.source, self.split, self.length, memo)
        crops = None if self.crop_boxes is None else _digest(self.crop_boxes.astype(np.float64))
        return {"format": DECODE_FORMAT, "source": source_identity(self.source),
                "split": self.split, "size": self.size, "channels": self.channels,
                "content": _digest(content), "crop_boxes": crops}

    @property
    def directory(self) -> Path:
        """The entry folder (computing the key hashes the split's content once)."""
        if self._key is None:
            self.root.mkdir(parents=True, exist_ok=True)
            self._key_data = self.key_data()
            self._key = identity_hash(self._key_data)
        return self.root / f"{self.prefix}-{self._key}"

    def _done(self) -> bool:
        try:
            done = json.loads((self.directory / "done.json").read_text())
            arrays = {name: np.load(self.directory / f"{name}.npy", mmap_mode="r")
                      for name in self.shapes()}
        except (OSError, ValueError):
            return False
        expected = {name: list(shape) for name, (shape, _) in self.shapes().items()}
        return done.get("shapes") == expected and all(
            array.shape == tuple(expected[name]) for name, array in arrays.items())

    def load(self) -> dict[str, np.ndarray]:
        """The split's arrays by name (``image``, and ``target`` / ``landmarks`` /
        ``landmarks_valid`` where the source has them), memory-mapped read-only; decoded
        first if no complete entry exists (or after the process decoding it is done)."""
        directory = self.directory
        if not self._done():
            directory.mkdir(parents=True, exist_ok=True)
            lock = FileLock(directory / ".lock")
            try:
                lock.acquire(timeout=0)
            except Timeout:
                log.info("Decode cache %s is being written by another process; waiting",
                         directory)
                lock.acquire()
            try:
                if not self._done():
                    self._build()
            finally:
                lock.release()
        return {name: np.load(directory / f"{name}.npy", mmap_mode="r") for name in self.shapes()}

    def _check_free_space(self, directory: Path) -> None:
        """Refuse a build the disk cannot hold: the arrays are memory maps, and a write
        into a map on a full disk kills the process (SIGBUS) with no message."""
        free = shutil.disk_usage(directory).free
        if self.nbytes > free:
            raise ConfigError(
                f"decode cache {directory}: the {self.split} split needs "
                f"{self.nbytes / 1e6:,.1f} MB on disk and {free / 1e6:,.1f} MB are free there; "
                f"set data.cache_dir to a disk with room, or data.decode_cache=off to read "
                f"the images per sample")

    def _build(self) -> None:
        directory = self.directory
        ranges = [(start, min(start + CHUNK, self.length))
                  for start in range(0, self.length, CHUNK)]
        workers = self.workers if self.length >= PARALLEL_FROM else 1
        log.info("Decode cache: writing %d %s images at %dx%d (%.1f MB on disk) with %d "
                 "process(es) into %s", self.length, self.split, self.size, self.size,
                 self.nbytes / 1e6, workers, directory)
        for stale in directory.glob("*.tmp*"):  # a killed build's; the lock is ours now
            log.info("Decode cache: removing %s, left by a build that did not finish", stale)
            stale.unlink(missing_ok=True)
        self._check_free_space(directory)
        (directory / "key.json").write_text(json.dumps(self._key_data, indent=2, sort_keys=True))
        tmp = {name: directory / f"{name}.npy.tmp{os.getpid()}" for name in self.shapes()}
        for name, (shape, dtype) in self.shapes().items():
            if shape[0]:  # the header is written here; rows are filled through fresh maps
                np.lib.format.open_memmap(tmp[name], mode="w+", dtype=dtype, shape=shape).flush()
            else:
                np.save(tmp[name], np.zeros(shape, dtype))
        args = (self.source, self.split, self.size, self.channels, self.crop_boxes,
                self.fields, {name: str(path) for name, path in tmp.items()})
        try:
            if workers <= 1 or len(ranges) == 1:
                for start, stop in ranges:
                    _write_rows(*args, start, stop)
            else:
                with spawn_pool(min(workers, len(ranges)),
                                f"decode cache {directory}") as pool:
                    for future in [pool.submit(_write_rows, *args, a, b) for a, b in ranges]:
                        future.result()
        except BaseException:
            for path in tmp.values():
                path.unlink(missing_ok=True)
            raise
        for name, path in tmp.items():
            os.replace(path, directory / f"{name}.npy")
        done = directory / f"done.json.tmp{os.getpid()}"
        done.write_text(json.dumps({"format": DECODE_FORMAT, "shapes": {
            name: list(shape) for name, (shape, _) in self.shapes().items()}}))
        os.replace(done, directory / "done.json")


def _write_rows(source: Source, split: str, size: int, channels: int,
                crop_boxes: np.ndarray | None, fields: dict[str, Any], paths: dict[str, str],
                start: int, stop: int) -> None:
    """Decode rows [start, stop) into the array files ``paths`` (one worker's chunk)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    rows = decode_rows(source, split, np.arange(start, stop), size, channels, crop_boxes,
                       fields)
    for name, values in rows.items():
        out = np.load(paths[name], mmap_mode="r+")
        out[start:stop] = values
        out.flush()
        del out
