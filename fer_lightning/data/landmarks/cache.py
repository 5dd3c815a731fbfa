"""Landmarks computed once per (dataset, split, backend, settings) and cached on disk.

Layout of one cache entry, ``<cache_dir>/<Source>-<split>-<backend>-<key>/``:

- ``key.json``: what the key hashes (source fingerprint, split, sample count, backend
  name and settings, face-crop settings, code version);
- ``chunk_00000.npz`` ...: ``chunk_size`` samples each, every file written to a temporary
  name and renamed (``os.replace``), so a killed run leaves only whole chunks and the
  next run computes just the missing ones;
- when every chunk exists they are merged into ``points.npy``, ``valid.npy``,
  ``crop_box.npy`` and one ``extra_<name>.npy`` per backend extra (e.g. the 478-point
  MediaPipe mesh), then ``done.json`` is written last. A run that finds ``done.json``
  extracts nothing.

Per sample: ``points`` (P, 2) in [0, 1] of the (cropped) face image, NaN when no face was
found; ``valid``; ``crop_box`` xyxy pixels of the original image (photo datasets) or
NaN (pre-cropped datasets: the whole image is the face).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fer_lightning import __version__
from fer_lightning.checks import check_choice
from fer_lightning.data.landmarks.base import Extractor
from fer_lightning.data.landmarks.face_crop import FaceCropper
from fer_lightning.data.sources.base import Source

log = logging.getLogger(__name__)

#: Bumped whenever a change here or in a backend changes what gets cached.
CACHE_VERSION = 1
POLICIES = ("mean_shape", "drop")
_BASE_KEYS = ("points", "valid", "crop_box")


# -- keys ------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """``value`` as JSON-able data, or raise TypeError (arrays and objects are not)."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    raise TypeError(type(value).__name__)


def _path_stats(value: Any) -> Any:
    """(size, mtime) of a file, or the top-level listing with them of a folder."""
    path = Path(value)
    if path.is_file():
        stat = path.stat()
        return [stat.st_size, stat.st_mtime_ns]
    if path.is_dir():
        return sorted((entry.name, *_path_stats(entry)) if entry.is_file() else (entry.name,)
                      for entry in os.scandir(path))
    return None


def source_fingerprint(source: Source) -> str:
    """The source's own ``fingerprint()`` when it has one; else a hash of its class name,
    its public plain-valued attributes (config) and the size and mtime of the files and
    folders they name. Large arrays and private attributes (lazy caches) are left out,
    so the key does not change once a source has loaded its data."""
    if callable(getattr(source, "fingerprint", None)):
        return str(source.fingerprint())
    config: dict[str, Any] = {}
    for name, value in sorted(vars(source).items()):
        if name.startswith("_"):
            continue
        try:
            config[name] = _jsonable(value)
        except TypeError:
            continue
        if isinstance(value, (str, os.PathLike)) and os.path.exists(value):
            config[name + ":stat"] = _path_stats(value)
    text = json.dumps([type(source).__module__, type(source).__qualname__, config],
                      sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


# -- one sample ------------------------------------------------------------------------


class LandmarkPipeline:
    """Extractor (+ face cropper for photos): image -> the arrays cached for one sample."""

    def __init__(self, extractor: Extractor, cropper: FaceCropper | None = None) -> None:
        self.extractor, self.cropper = extractor, cropper

    @property
    def num_points(self) -> int:
        return int(self.extractor.num_points)

    @property
    def settings(self) -> dict[str, Any]:
        return {"backend": self.extractor.name, "extractor": self.extractor.settings,
                "precropped": self.cropper is None,
                "crop": None if self.cropper is None else self.cropper.settings}

    def empty(self) -> dict[str, np.ndarray]:
        """The record of a sample whose face was not found."""
        record = {"points": np.full((self.num_points, 2), np.nan, np.float32),
                  "valid": np.array(False), "crop_box": np.full(4, np.nan, np.float32)}
        record.update({k: np.full(s, np.nan, np.float32)
                       for k, s in self.extractor.extra_shapes.items()})
        return record

    def __call__(self, image: np.ndarray) -> dict[str, np.ndarray]:
        record = self.empty()
        face_box = None
        if self.cropper is not None:
            found = self.cropper(image)
            if found is None:
                return record
            image, record["crop_box"], face_box = found
        points, extra = self.extractor.extract(image, face_box=face_box)
        if points is None:
            return record
        points = np.asarray(points, np.float32)
        if points.shape != (self.num_points, 2):
            raise ValueError(f"landmark backend {self.extractor.name} returned points of shape "
                             f"{points.shape}; expected ({self.num_points}, 2)")
        record.update({k: np.asarray(v, np.float32) for k, v in extra.items()})
        record["points"], record["valid"] = points, np.array(True)
        return record


# -- arrays and the missing-face policy ------------------------------------------------


@dataclass
class LandmarkArrays:
    """The cached landmarks of one split (see the module docstring)."""

    points: np.ndarray  # (N, P, 2) float32, NaN where not valid
    valid: np.ndarray  # (N,) bool
    crop_box: np.ndarray  # (N, 4) float32 pixels, NaN for pre-cropped
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # memory-mapped

    def __len__(self) -> int:
        return len(self.valid)


def canonical_mean_shape(num_points: int) -> np.ndarray:
    """A neutral frontal face in [0, 1] image coordinates: the synthetic source's mean face
    centred like a FER2013 crop (68 points), or its 5 MTCNN points (eye centres, nose
    tip 30, mouth corners 48 and 54, in image order)."""
    from fer_lightning.data.sources.synthetic import mean_face

    face = (mean_face() + np.array([0.5, 0.47])).astype(np.float32)
    if num_points == 68:
        return face
    if num_points == 5:
        return np.stack([face[36:42].mean(0), face[42:48].mean(0), face[30], face[48],
                         face[54]]).astype(np.float32)
    raise ValueError(f"no canonical mean shape for {num_points} points (68 or 5)")


def mean_shape(arrays: Iterable[LandmarkArrays], num_points: int) -> np.ndarray:
    """Mean of the valid shapes over ``arrays``; the canonical mean face when none is valid."""
    valid = [a.points[a.valid] for a in arrays if a.valid.any()]
    if not valid:
        return canonical_mean_shape(num_points)
    return np.concatenate(valid).mean(axis=0).astype(np.float32)


def detection_report(valid: np.ndarray) -> dict[str, float | int]:
    """``{"detected": n, "missed": m, "rate": n / (n + m)}`` for one split."""
    detected = int(np.count_nonzero(valid))
    total = int(len(valid))
    return {"detected": detected, "missed": total - detected,
            "rate": detected / total if total else 0.0}


def apply_policy(arrays: LandmarkArrays, policy: str, fallback: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(points with misses filled by ``fallback``, valid, kept sample indices).

    ``mean_shape`` keeps every sample (``landmarks_valid`` False on misses); ``drop``
    keeps only samples with a detected face.
    """
    check_choice("landmarks.on_missing", policy, POLICIES)
    points = arrays.points.copy()
    points[~arrays.valid] = fallback
    kept = np.arange(len(arrays)) if policy == "mean_shape" else np.flatnonzero(arrays.valid)
    return points, arrays.valid.copy(), kept


# -- the cache -------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _init_worker(source: Source, split: str, pipeline: LandmarkPipeline) -> None:
    """Per worker process: keep the source and pipeline (the model loads on first use)."""
    try:
        import torch

        torch.set_num_threads(1)  # the processes are the parallelism
    except ImportError:
        pass
    _WORKER.update(source=source, split=split, pipeline=pipeline)


def _worker_chunk(path: str, start: int, stop: int) -> tuple[int, int]:
    _compute_chunk(_WORKER["source"], _WORKER["split"], _WORKER["pipeline"], Path(path),
                   start, stop)
    return start, stop


def _compute_chunk(source: Source, split: str, pipeline: LandmarkPipeline, path: Path,
                   start: int, stop: int) -> None:
    records = [pipeline(source.load(split, index).image) for index in range(start, stop)]
    arrays = {key: np.stack([r[key] for r in records]) for key in records[0]}
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    os.replace(tmp, path)


class LandmarkCache:
    """Compute (once), resume and load the landmarks of one split of one source."""

    def __init__(self, root: str | os.PathLike, source: Source, split: str,
                 pipeline: LandmarkPipeline, chunk_size: int = 256, num_workers: int = 1,
                 progress: bool = True) -> None:
        if chunk_size < 1:
            raise ValueError(f"landmarks.chunk_size must be >= 1, got {chunk_size}")
        if num_workers < 0:
            raise ValueError(f"landmarks.num_workers must be >= 0, got {num_workers}")
        self.source, self.split, self.pipeline = source, split, pipeline
        self.chunk_size, self.num_workers, self.progress = chunk_size, num_workers, progress
        self.size = len(source.split_info(split).labels)
        self.key_data = {
            "cache_version": CACHE_VERSION, "fer_lightning": __version__,
            "source": source_fingerprint(source), "source_class": type(source).__qualname__,
            "split": split, "size": self.size, **pipeline.settings,
        }
        digest = hashlib.sha1(json.dumps(self.key_data, sort_keys=True).encode()).hexdigest()
        self.key = digest[:16]
        name = f"{type(source).__name__}-{split}-{pipeline.extractor.name}-{self.key}"
        self.directory = Path(root) / name

    # -- state -------------------------------------------------------------------------

    @property
    def complete(self) -> bool:
        return (self.directory / "done.json").is_file()

    def chunks(self) -> list[tuple[int, int, Path]]:
        """Every chunk as (start, stop, file)."""
        return [(start, min(start + self.chunk_size, self.size),
                 self.directory / f"chunk_{start // self.chunk_size:05d}.npz")
                for start in range(0, self.size, self.chunk_size)]

    def missing_chunks(self) -> list[tuple[int, int, Path]]:
        return [chunk for chunk in self.chunks() if not chunk[2].is_file()]

    # -- compute -----------------------------------------------------------------------

    def compute(self) -> int:
        """Extract whatever is not cached yet; returns the number of samples extracted."""
        if self.complete:
            return 0
        self.directory.mkdir(parents=True, exist_ok=True)
        _write_json(self.directory / "key.json", self.key_data)
        todo = self.missing_chunks()
        samples = sum(stop - start for start, stop, _ in todo)
        if todo:
            done = self.size - samples
            log.info("Landmarks %s/%s: extracting %d of %d samples with %s (%d worker(s)) "
                     "into %s", type(self.source).__name__, self.split, samples, self.size,
                     self.pipeline.extractor.name, max(1, self.num_workers), self.directory)
            with _progress(self.progress, f"landmarks {self.split}", self.size, done) as advance:
                if self.num_workers <= 1:
                    for start, stop, path in todo:
                        _compute_chunk(self.source, self.split, self.pipeline, path, start, stop)
                        advance(stop - start)
                else:
                    self._compute_parallel(todo, advance)
        self._merge()
        return samples

    def _compute_parallel(self, todo: list[tuple[int, int, Path]], advance: Any) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # no fork after torch / OpenMP use
        with ProcessPoolExecutor(self.num_workers, mp_context=context,
                                 initializer=_init_worker,
                                 initargs=(self.source, self.split, self.pipeline)) as pool:
            futures = [pool.submit(_worker_chunk, str(path), start, stop)
                       for start, stop, path in todo]
            for future in futures:
                start, stop = future.result()
                advance(stop - start)

    def _merge(self) -> None:
        """Chunks -> one .npy per array (memory-mapped writes), then done.json."""
        chunks = self.chunks()
        if not chunks:
            record = self.pipeline.empty()
            for key, value in record.items():
                _save_npy(self.directory / _file(key), np.zeros((0, *value.shape), value.dtype))
        else:
            with np.load(chunks[0][2]) as first:
                specs = {key: (first[key].dtype, first[key].shape[1:]) for key in first.files}
            outputs = {}
            for key, (dtype, shape) in specs.items():
                tmp = self.directory / f"{_file(key)}.tmp{os.getpid()}"
                outputs[key] = (tmp, np.lib.format.open_memmap(
                    tmp, mode="w+", dtype=dtype, shape=(self.size, *shape)))
            for start, stop, path in chunks:
                with np.load(path) as chunk:
                    for key, (_, array) in outputs.items():
                        array[start:stop] = chunk[key]
            for key, (tmp, array) in outputs.items():
                array.flush()
                del array
                os.replace(tmp, self.directory / _file(key))
        valid = np.load(self.directory / "valid.npy")
        _write_json(self.directory / "done.json", detection_report(valid))
        for _, _, path in chunks:
            path.unlink(missing_ok=True)

    # -- load --------------------------------------------------------------------------

    def load(self) -> LandmarkArrays:
        """The cached arrays (``compute`` first); extras are memory-mapped."""
        if not self.complete:
            raise FileNotFoundError(f"landmark cache {self.directory} is incomplete; run "
                                    f"the DataModule's prepare_data() (or compute()) first")
        files = {path.name: path for path in self.directory.glob("*.npy")}
        extra = {name[len("extra_"):-len(".npy")]: np.load(path, mmap_mode="r")
                 for name, path in files.items() if name.startswith("extra_")}
        arrays = LandmarkArrays(
            points=np.load(files["points.npy"]), valid=np.load(files["valid.npy"]).astype(bool),
            crop_box=np.load(files["crop_box.npy"]), extra=extra)
        if len(arrays) != self.size:
            raise ValueError(f"landmark cache {self.directory} holds {len(arrays)} samples, "
                             f"the split has {self.size}; delete the folder to recompute")
        return arrays

    def clear(self) -> None:
        """Delete this entry (all chunks and arrays)."""
        shutil.rmtree(self.directory, ignore_errors=True)


def _file(key: str) -> str:
    return f"{key}.npy" if key in _BASE_KEYS else f"extra_{key}.npy"


def _save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as handle:
        np.save(handle, array)
    os.replace(tmp, path)


def _write_json(path: Path, content: Mapping[str, Any]) -> None:
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(content, indent=2, sort_keys=True))
    os.replace(tmp, path)


class _progress:
    """A rich progress bar (or nothing) whose context value advances it."""

    def __init__(self, enabled: bool, title: str, total: int, completed: int) -> None:
        self.enabled, self.title, self.total, self.completed = enabled, title, total, completed
        self.bar: Any = None

    def __enter__(self) -> Any:
        if not self.enabled:
            return lambda n: None
        from rich.progress import Progress

        self.bar = Progress(transient=False)
        self.bar.start()
        task = self.bar.add_task(self.title, total=self.total, completed=self.completed)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


# -- from the `landmarks` config group -------------------------------------------------


def plain(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """A shallow plain-dict copy of a landmarks config (OmegaConf nodes converted; objects
    that Hydra already instantiated, such as the extractor, kept as they are)."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    out: dict[str, Any] = {}
    for key, value in (config or {}).items():
        if isinstance(value, (DictConfig, ListConfig)):
            value = OmegaConf.to_container(value, resolve=True)
        out[str(key)] = value
    return out


def build_pipeline(config: Mapping[str, Any], precropped_default: bool | None = None
                   ) -> LandmarkPipeline:
    """The extractor (``landmarks.extractor``: a ``_target_`` mapping or an object) and, for
    photo datasets (``landmarks.precropped`` false), the face cropper
    (``face_detector``, ``crop_margin``, ``face_select``)."""
    from hydra.utils import instantiate

    extractor = config.get("extractor")
    if extractor is None:
        raise ValueError(f"landmarks={config.get('name')} has no `extractor` entry")
    if isinstance(extractor, Mapping):
        extractor = instantiate(dict(extractor))
    precropped = config.get("precropped")
    if precropped is None:
        precropped = True if precropped_default is None else precropped_default
    cropper = None if precropped else FaceCropper(
        detector=config.get("face_detector", "hog"), margin=config.get("crop_margin", 0.25),
        select=config.get("face_select", "largest"))
    return LandmarkPipeline(extractor, cropper)


def caches_for(config: Mapping[str, Any], source: Source, splits: Iterable[str],
               precropped_default: bool | None = None, progress: bool = True
               ) -> dict[str, LandmarkCache]:
    """One ``LandmarkCache`` per split, as configured by the ``landmarks`` group."""
    if not config.get("cache_dir"):
        raise ValueError(f"landmarks={config.get('name')} needs landmarks.cache_dir (where the "
                         f"extracted landmarks are cached)")
    pipeline = build_pipeline(config, precropped_default)
    return {split: LandmarkCache(config["cache_dir"], source, split, pipeline,
                                 chunk_size=int(config.get("chunk_size", 256)),
                                 num_workers=int(config.get("num_workers", 1)),
                                 progress=progress)
            for split in splits}


def resolve(caches: Mapping[str, LandmarkCache], policy: str
            ) -> tuple[dict[str, LandmarkArrays], dict[str, np.ndarray], dict[str, dict]]:
    """Load every split, fill misses with the training split's mean valid shape (or the
    canonical mean face) and apply ``policy``.

    Returns (arrays per split with misses filled, kept source indices per split, report
    ``{split: {"detected", "missed", "rate", "dropped"}}``).
    """
    check_choice("landmarks.on_missing", policy, POLICIES)
    loaded = {}
    for split, cache in caches.items():
        if not cache.complete:
            cache.compute()
        loaded[split] = cache.load()
    num_points = next(iter(caches.values())).pipeline.num_points if caches else 68
    reference = [loaded["train"]] if "train" in loaded and loaded["train"].valid.any() \
        else list(loaded.values())
    fallback = mean_shape(reference, num_points)
    arrays, kept, report = {}, {}, {}
    for split, raw in loaded.items():
        points, valid, kept[split] = apply_policy(raw, policy, fallback)
        arrays[split] = LandmarkArrays(points, valid, raw.crop_box, raw.extra)
        report[split] = {**detection_report(raw.valid), "dropped": len(raw) - len(kept[split])}
        if report[split]["missed"]:
            action = (f"dropped {report[split]['dropped']} samples" if policy == "drop"
                      else "kept with the mean shape, landmarks_valid=False")
            log.warning("Landmarks %s: no face found in %d of %d %s samples (%s)",
                        raw_name(caches[split]), report[split]["missed"], len(raw), split, action)
    return arrays, kept, report


def raw_name(cache: LandmarkCache) -> str:
    """``<Source>/<backend>`` for messages."""
    return f"{type(cache.source).__name__}/{cache.pipeline.extractor.name}"
