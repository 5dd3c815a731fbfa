"""What identifies a dataset split for the landmark cache: its identity and its content.

- ``source_identity``: the source's class, its resolved root and its public settings
  (paths resolved, large arrays and private lazy state left out). It names the cache
  entry, so another copy of a dataset (another root) or other split settings get an
  entry of their own.
- ``sample_digests``: one 16-byte BLAKE2b digest per sample of the bytes its image comes
  from. Stored with the cached landmarks and compared on every run, so an image edited
  in place, or two swapped rows, re-extract exactly the chunks they fall in.

A source gives its digests fast through the optional ``sample_digest(split, index)``
method (see ``data/sources/base.py``: e.g. the hash of an image file's bytes, or of a
config for generated data); without it the decoded image (``load(...).image``: shape,
dtype and pixels) is hashed, which is always right but decodes every image.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from fer_lightning.data.sources.base import Source

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


def digest_method(source: Source) -> str:
    """``sample_digest`` when the source has its own, else ``decoded image``."""
    return "sample_digest" if callable(getattr(source, "sample_digest", None)) \
        else "decoded image"


def sample_digests(source: Source, split: str, size: int) -> np.ndarray:
    """(size, 16) uint8: the digest of every sample of ``split``."""
    out = np.zeros((size, DIGEST_SIZE), np.uint8)
    for index in range(size):
        out[index] = np.frombuffer(sample_digest(source, split, index), np.uint8)
    return out
