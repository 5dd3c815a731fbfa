"""What identifies a dataset split for the landmark cache: its identity and its content.

- ``source_identity``: the source's class, its resolved root and its public settings
  (paths resolved, large arrays and private lazy state left out). It names the cache
  entry, so another copy of a dataset (another root) or other split settings get an
  entry of their own.
- ``sample_digests``: one 16-byte BLAKE2b digest per sample of the bytes its image comes
  from. Stored with the cached landmarks and compared on every run, so an image edited
  in place, or two swapped rows, re-extract exactly the chunks they fall in.

How a sample's digest is made, first match wins:

1. sources that read one image file per sample (``image_files(split)``, the photo
   datasets and FER+'s folder release): BLAKE2b of the file's bytes (and of the face box
   cropped out of it, if any). A ``FileDigestMemo`` stored with the cache entry keeps
   each file's digest with its stat signature (size, modification and change times,
   inode), so a file is read once and hashed again only when it changes: 290 K AffectNet
   images cost one ``stat`` each on later runs, not a read;
2. the source's own ``sample_digest(split, index)`` (e.g. generated data: its config);
3. the decoded image (``load(...).image``: shape, dtype and pixels), which is always
   right but decodes every image (csv datasets hold their pixels in memory: cheap).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fer_lightning.data.sources.base import ImageFileSource, ListedImage, Source

DIGEST_SIZE = 16


def _jsonable(value: Any) -> Any:
    """``value`` as JSON-able data with paths resolved, or raise TypeError."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, os.PathLike):
        return os.path.realpath(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    raise TypeError(type(value).__name__)


def resolved_root(source: Source) -> str | None:
    """The real path of ``source.root`` (symlinks and ``..`` resolved), or None."""
    root = getattr(source, "root", None)
    return None if root is None else os.path.realpath(root)


def source_identity(source: Source) -> dict[str, Any]:
    """Class, resolved root and public plain-valued settings of ``source`` (JSON-able).

    File contents and modification times are deliberately not part of it: they are
    covered sample by sample by ``sample_digests``, so an edited file invalidates only
    its chunk, not the whole entry.
    """
    settings: dict[str, Any] = {}
    for name, value in sorted(vars(source).items()):
        if name.startswith("_"):
            continue
        try:
            settings[name] = _jsonable(value)
        except TypeError:
            continue
    return {"class": f"{type(source).__module__}.{type(source).__qualname__}",
            "root": resolved_root(source), "settings": settings}


def identity_hash(data: Mapping[str, Any]) -> str:
    """A short stable hash of JSON-able ``data``."""
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def image_digest(image: np.ndarray) -> bytes:
    """Digest of a decoded image: its shape, dtype and pixels."""
    image = np.ascontiguousarray(image)
    digest = hashlib.blake2b(digest_size=DIGEST_SIZE)
    digest.update(f"{image.dtype.str}{image.shape}".encode())
    digest.update(memoryview(image).cast("B"))
    return digest.digest()


def sample_digest(source: Source, split: str, index: int) -> bytes:
    """The 16-byte content digest of sample ``index`` of ``split``."""
    own = getattr(source, "sample_digest", None)
    if callable(own):
        value = own(split, index)
        if not isinstance(value, (bytes, bytearray)):
            raise TypeError(f"{type(source).__name__}.sample_digest returned "
                            f"{type(value).__name__}; expected bytes")
        return hashlib.blake2b(bytes(value), digest_size=DIGEST_SIZE).digest()
    return image_digest(source.load(split, index).image)


def digest_method(source: Source, split: str, size: int) -> str:
    """How ``sample_digests`` hashes ``split``: ``image files``, ``sample_digest`` or
    ``decoded image``."""
    if _image_files(source, split, size) is not None:
        return "image files"
    return "sample_digest" if callable(getattr(source, "sample_digest", None)) \
        else "decoded image"


def _stat_signature(stat: os.stat_result) -> tuple[int, int, int, int]:
    return stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino


class FileDigestMemo:
    """File digests remembered with the stat signature they were computed for.

    A file whose size, modification time, change time and inode all match its record is
    not read again (git's index works the same way; the change time cannot be set back by
    a user). Stored as JSON beside the cached arrays; a missing or unreadable memo only
    costs a re-hash.
    """

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = None if path is None else Path(path)
        self.records: dict[str, list] = {}
        self.hashed = 0  # files read and hashed by this memo (the rest were remembered)
        if self.path is not None and self.path.is_file():
            try:
                self.records = json.loads(self.path.read_text())
            except (OSError, ValueError):
                self.records = {}

    def digest(self, path: Path) -> bytes:
        """BLAKE2b of the bytes of ``path``, from the memo while the file is unchanged."""
        key = str(path)
        signature = list(_stat_signature(os.stat(path)))
        record = self.records.get(key)
        if record is not None and record[:4] == signature:
            return bytes.fromhex(record[4])
        digest = hashlib.blake2b(digest_size=DIGEST_SIZE)
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        self.records[key] = [*signature, digest.hexdigest()]
        self.hashed += 1
        return digest.digest()

    def save(self) -> None:
        """Write the memo atomically (a no-op without a path or when nothing was hashed)."""
        if self.path is None or not self.hashed:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(self.records))
        os.replace(tmp, self.path)


def _listed_image_digest(image: ListedImage, memo: FileDigestMemo) -> bytes:
    file_digest = memo.digest(image.path)
    if image.box is None:
        return file_digest
    box = np.asarray(image.box, np.int64).tobytes()
    return hashlib.blake2b(file_digest + box, digest_size=DIGEST_SIZE).digest()


def _image_files(source: Source, split: str, size: int) -> list[ListedImage] | None:
    """The split's image files when the source reads one per sample, else None (FER+'s
    csv form lists none: its pixels are in the csv)."""
    if not isinstance(source, ImageFileSource):
        return None
    images = source.image_files(split)
    if not images and size:
        return None
    if len(images) != size:
        raise ValueError(f"{type(source).__name__}.image_files({split!r}) lists "
                         f"{len(images)} files for {size} samples")
    return images


def sample_digests(source: Source, split: str, size: int,
                   memo: FileDigestMemo | None = None) -> np.ndarray:
    """(size, 16) uint8: the digest of every sample of ``split`` (see the module
    docstring for how); ``memo`` remembers file digests across runs."""
    out = np.zeros((size, DIGEST_SIZE), np.uint8)
    images = _image_files(source, split, size)
    if images is not None:
        memo = memo or FileDigestMemo()
        for index, image in enumerate(images):
            out[index] = np.frombuffer(_listed_image_digest(image, memo), np.uint8)
        memo.save()
        return out
    for index in range(size):
        out[index] = np.frombuffer(sample_digest(source, split, index), np.uint8)
    return out
