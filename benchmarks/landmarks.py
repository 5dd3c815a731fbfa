"""``make bench`` rows for landmarks: extraction, cache reload and loader throughput.

    python -m benchmarks.landmarks    # prints the rows

Everything goes through the path a training run takes: ``compose_config`` ->
``build_datamodule`` -> ``prepare_data()`` (extraction into the landmark cache) ->
``setup()`` (cache load, missing-face policy), on the embedded synthetic faces.

- Extraction: each backend (dlib, mediapipe, mtcnn) on ``EXTRACT_IMAGES`` synthetic
  faces of ``EXTRACT_SIZE`` px (pre-cropped path: the whole image is the face), into a
  fresh cache folder, with ``landmarks.num_workers`` 1 and 2. The time is one
  ``prepare_data()``: model loading included, and with 2 workers also the start-up of
  the spawned processes (each imports torch and loads the model, a few seconds), so on a
  sample this small 2 workers understate the steady-state speed-up. Rendering the
  synthetic images is inside the timing too (thousands per second, a small share).
  The bracketed rate is past start-up: (N - n) / (t_N - t_n), where n is one chunk per
  worker, timed on its own in a fresh cache. ``chunk_size`` is lowered to
  ``EXTRACT_CHUNK`` so the samples split into chunks that both workers can take.
- Cache reload: a second DataModule on the same folder: ``prepare_data()`` + ``setup()``
  with nothing to extract.
- Loader: ``landmarks=groundtruth``, 48 px, batch 32, ``data.num_workers=0``: the train
  DataLoader (synthetic render + collate) followed by the training batch transform
  (augmentation, the encoding, normalisation) that ``on_after_batch_transfer`` applies;
  and the batch transform alone on already-collated batches.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence

import torch
from hydra.utils import instantiate

from fer_lightning.build import build_datamodule
from fer_lightning.config import compose_config
from fer_lightning.data.datamodule import FERDataModule
from fer_lightning.data.landmarks.config import LandmarksConfig

from .common import best_rate

BACKENDS = ("dlib", "mediapipe", "mtcnn")
WORKERS = (1, 2)
EXTRACT_IMAGES, EXTRACT_SIZE, EXTRACT_CHUNK = 512, 96, 32
ENCODINGS = ("none", "overlay", "heatmap", "coords", "regions")
LOADER_SIZE, LOADER_BATCH, LOADER_BATCHES = 48, 32, 16


def _synthetic(size: int, train: int) -> list[str]:
    """Overrides for a synthetic source with ``train`` samples and no val/test split."""
    return ["data=synthetic", f"data.image_size={size}", f"data.source.train_size={train}",
            "data.source.val_size=0", "data.source.test_size=0", "data.num_workers=0"]


def extraction_datamodule(backend: str, workers: int, cache_dir: str,
                          images: int = EXTRACT_IMAGES) -> FERDataModule:
    """The DataModule ``landmarks=<backend>`` builds, caching into ``cache_dir``."""
    cfg = compose_config([*_synthetic(EXTRACT_SIZE, images), f"landmarks={backend}",
                          f"landmarks.cache_dir={cache_dir}", f"landmarks.num_workers={workers}",
                          f"landmarks.chunk_size={EXTRACT_CHUNK}"], cache_dir)
    return build_datamodule(cfg)


def timed_prepare(datamodule: FERDataModule) -> float:
    """Seconds of one ``prepare_data()`` (the extraction)."""
    start = time.perf_counter()
    datamodule.prepare_data()
    return time.perf_counter() - start


def fixed_cost(backend: str, workers: int) -> float:
    """Seconds to extract one chunk per worker: start-up (model load, and with workers > 1
    process spawn) plus one chunk's work."""
    with tempfile.TemporaryDirectory() as cache_dir:
        return timed_prepare(extraction_datamodule(backend, workers, cache_dir,
                                                   images=EXTRACT_CHUNK * workers))


def extraction_rows(backend: str) -> list[str]:
    """Extraction images/s with 1 and 2 workers, detection rate, cache reload time."""
    lines, report, reload_ms = [], {}, float("nan")
    for workers in WORKERS:
        small = fixed_cost(backend, workers)
        with tempfile.TemporaryDirectory() as cache_dir:
            datamodule = extraction_datamodule(backend, workers, cache_dir)
            seconds = timed_prepare(datamodule)
            marginal = (EXTRACT_IMAGES - EXTRACT_CHUNK * workers) / max(seconds - small, 1e-9)
            lines.append(f"| landmarks={backend} extraction, landmarks.num_workers={workers}, "
                         f"{EXTRACT_IMAGES} synthetic faces {EXTRACT_SIZE}x{EXTRACT_SIZE} "
                         f"(pre-cropped): whole prepare_data() incl. model load"
                         f"{' and process spawn' if workers > 1 else ''} [past start-up] | "
                         f"{EXTRACT_IMAGES / seconds:.1f} images / s ({seconds:.1f} s) "
                         f"[{marginal:.0f} images / s; start-up + 1 chunk each "
                         f"{small:.1f} s] |")
            if workers == 1:
                datamodule.setup()  # train only: these sources have no val split
                report = datamodule.landmark_report["train"]
                reloaded = extraction_datamodule(backend, workers, cache_dir)
                start = time.perf_counter()
                reloaded.prepare_data()
                reloaded.setup()
                reload_ms = (time.perf_counter() - start) * 1e3
    lines.append(f"| landmarks={backend} faces detected on the synthetic faces | "
                 f"{report['detected']} / {report['detected'] + report['missed']} "
                 f"({report['rate']:.0%}) |")
    lines.append(f"| landmarks={backend} cache reload ({EXTRACT_IMAGES} samples): "
                 f"prepare_data() + setup(), nothing extracted | {reload_ms:.0f} ms |")
    return lines


def loader_datamodule(encoding: str, scratch: str) -> FERDataModule:
    """The synthetic DataModule (ground-truth landmarks) rendering ``encoding``."""
    landmarks = "none" if encoding == "none" else "groundtruth"
    cfg = compose_config([*_synthetic(LOADER_SIZE, LOADER_BATCH * LOADER_BATCHES),
                          f"landmarks={landmarks}", f"data.batch_size={LOADER_BATCH}"], scratch)
    on = encoding != "none"
    make = instantiate(cfg.data, _partial_=True)
    return make(landmarks=LandmarksConfig.from_mapping(cfg.landmarks),
                landmark_encoding=encoding if on else None)


def _clone(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in batch.items()}


def loader_rates(encoding: str) -> tuple[float, float]:
    """(loader + batch transform samples/s, batch transform alone samples/s)."""
    with tempfile.TemporaryDirectory() as scratch:
        datamodule = loader_datamodule(encoding, scratch)
        datamodule.setup()  # train only: these sources have no val split
        loader = datamodule.train_dataloader()

        def epoch() -> int:
            count = 0
            for batch in loader:
                count += len(datamodule.batch_transform(batch, training=True)["label"])
            return count

        batches = list(loader)

        def transform_only() -> int:
            return sum(len(datamodule.batch_transform(_clone(b), training=True)["label"])
                       for b in batches)

        return (best_rate(epoch, repeats=3, warmup=1),
                best_rate(transform_only, repeats=5, warmup=1))


def rows(backends: Sequence[str] = BACKENDS,
         encodings: Sequence[str] = ENCODINGS) -> list[str]:
    """Markdown table rows ``| what | value |`` for RESULTS.md."""
    lines = []
    for backend in backends:
        lines += extraction_rows(backend)
    for encoding in encodings:
        total, transform = loader_rates(encoding)
        lines.append(f"| loader samples / s, encoding={encoding}, {LOADER_SIZE}x{LOADER_SIZE}, "
                     f"batch {LOADER_BATCH}, 1 process: synthetic render + collate + train "
                     f"transform (transform alone) | {total:.0f} ({transform:.0f}) |")
    return lines


if __name__ == "__main__":
    print("\n".join(rows()))
