"""One LightningDataModule for every dataset: a Source, splits, loaders, batch transforms."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from fer_lightning.checks import check_choice
from fer_lightning.data.arrays import (
    ArraySplit,
    BatchLoader,
    EpochBatchSampler,
    EpochSampler,
    decode_in_memory,
    split_arrays,
    step_seed,
)
from fer_lightning.data.dataset import FERDataset
from fer_lightning.data.decode_cache import DecodeCache
from fer_lightning.data.landmarks.cache import LandmarkCache, caches_for
from fer_lightning.data.landmarks.config import LandmarksConfig
from fer_lightning.data.landmarks.content import digest_method
from fer_lightning.data.landmarks.policy import resolve
from fer_lightning.data.sources import validate
from fer_lightning.data.sources.base import SPLITS, Source, SplitUnavailableError
from fer_lightning.data.transforms import BatchTransform
from fer_lightning.losses import inverse_frequency_weights

log = logging.getLogger(__name__)

ON_DEVICE = ("auto", "true", "false")
DECODE_CACHE = ("auto", "on", "off")
#: ``data.on_device=auto`` keeps a split on the GPU when it takes at most this fraction
#: of the GPU's free memory (else in pinned host memory).
ON_DEVICE_FRACTION = 0.25


def keep_on_device(on_device: str, nbytes: int, free: int) -> bool:
    """Whether a split of ``nbytes`` lives on the GPU (``data.on_device``: ``true``,
    ``false``, or ``auto``: when it takes at most ``ON_DEVICE_FRACTION`` of the ``free``
    GPU memory)."""
    return on_device == "true" or (on_device == "auto" and nbytes <= ON_DEVICE_FRACTION * free)


def _local_rank() -> int:
    """This process's rank on its node (torchrun / Lightning's DDP launcher, SLURM); 0 when
    not launched as one of several processes."""
    for name in ("LOCAL_RANK", "SLURM_LOCALID"):
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 0


class FERDataModule(L.LightningDataModule):
    """Wraps a dataset Source for Lightning.

    Exposes ``class_names``, per-split ``class_counts`` and the training-split class
    counts that ``loss=weighted_ce`` turns into weights. Batches are augmented and encoded
    after transfer to the device (``on_after_batch_transfer``), so the pipeline runs on
    the GPU where there is one. It knows nothing about networks: the caller says which
    landmark encoding to render.

    ``landmarks``: the landmark settings (a ``LandmarksConfig``, or the ``landmarks``
    group's mapping, validated into one; None: landmarks off). With a backend
    (dlib, mediapipe, mtcnn) ``prepare_data`` extracts and caches the landmarks;
    ``precropped``: the dataset's declaration that its images already are face crops
    (``landmarks.precropped`` follows it unless set).

    Before any work, the dataset is checked (``sources.validate``): every split holds
    samples, there are two classes or more, and the image files the splits list pass the
    ``check_images`` check (``none | header | full``); a problem raises DatasetError
    naming the dataset, split and reason, before landmark extraction or the first epoch.

    The data path (docs/data-flow.md): every split is decoded once into one uint8 array
    at the training size and served as whole batches gathered by index (``arrays``):
    in memory for array datasets (FER2013, FER+'s csv, AffectNet's npy), through the
    on-disk ``decode_cache`` under ``cache_dir`` for the rendered synthetic faces and the
    photo datasets (``decode_cache``: ``auto`` = those two, ``on`` = every dataset,
    ``off`` = none: photo datasets are then read per sample, the synthetic faces rendered
    once per run in memory). ``on_device``: ``auto`` keeps a split on the GPU when it
    takes at most ``ON_DEVICE_FRACTION`` of its free memory, else in pinned host memory;
    ``true`` always on the GPU, ``false`` never. ``seed`` (default: torch's initial seed,
    which ``seed_everything`` set) seeds each training epoch's draw with seed + epoch.
    """

    def __init__(self, source: Source, image_size: int = 48, channels: int = 1,
                 batch_size: int = 32, num_workers: int = 0,
                 augment: Mapping[str, Any] | None = None, balanced_sampler: bool = False,
                 pin_memory: bool = False,
                 landmarks: LandmarksConfig | Mapping[str, Any] | None = None,
                 landmark_encoding: str | None = None, precropped: bool | None = None,
                 root: str | None = None, mean: float | Sequence[float] = 0.5,
                 std: float | Sequence[float] = 0.5, check_images: str = "header",
                 on_device: str | bool = "auto", decode_cache: str = "auto",
                 cache_dir: str | None = None, seed: int | None = None) -> None:
        super().__init__()
        on_device = str(on_device).lower()
        check_choice("data.on_device", on_device, ON_DEVICE)
        check_choice("data.decode_cache", decode_cache, DECODE_CACHE)
        self.on_device, self.decode_cache = on_device, decode_cache
        self.cache_dir = None if cache_dir is None else str(cache_dir)
        self.seed = torch.initial_seed() % 2**62 if seed is None else int(seed)
        #: split -> its ArraySplit (batched path), decoded when its loader is first asked
        #: for (``split_arrays``), so ``setup`` alone (data summary, preview) decodes
        #: nothing.
        self.arrays: dict[str, ArraySplit] = {}
        self._placed: dict[str, ArraySplit] = {}
        #: Where batched splits are placed when no Trainer is attached (benchmarks,
        #: notebooks; None: the CPU). With a Trainer, its root device.
        self.placement_device: torch.device | None = None
        self._samplers: dict[str, EpochBatchSampler] = {}
        self.root = root  # where the dataset lives (the source reads data.source.root)
        check_choice("data.check_images", check_images, validate.IMAGE_CHECKS)
        self.check_images = check_images
        self._checked: set[tuple[str, bool]] = set()  # (images, fit) checks passed
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be a positive integer, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {num_workers}")
        if channels not in (1, 3):
            raise ValueError(f"data.channels must be 1 or 3, got {channels}")
        self.source = source
        self.image_size, self.channels = image_size, channels
        self.batch_size, self.num_workers = batch_size, num_workers
        self.balanced_sampler, self.pin_memory = balanced_sampler, pin_memory
        self.landmarks = LandmarksConfig.from_mapping(landmarks)
        self.precropped = precropped
        self.batch_transform = BatchTransform(
            landmark_encoding if self.use_landmarks else None, self.landmarks,
            augment=augment or None, mean=mean, std=std)
        self.datasets: dict[str, FERDataset] = {}
        self._landmark_caches: dict[str, LandmarkCache] | None = None
        #: {split: {"detected", "missed", "filtered", "rate", "dropped"}} after setup
        #: (extracted landmarks; see landmarks/policy.py).
        self.landmark_report: dict[str, dict[str, Any]] = {}
        self._available_splits: list[str] | None = None
        #: split -> why this form of the dataset does not have it
        self.unavailable_splits: dict[str, str] = {}

    @property
    def use_landmarks(self) -> bool:
        """Samples carry landmarks (``landmarks.enabled``)."""
        return self.landmarks.enabled

    @property
    def class_names(self) -> list[str]:
        """Class names in the source's label order; they travel into the checkpoint."""
        return list(self.source.class_names)

    def class_counts(self, split: str = "train") -> list[int]:
        """Samples per class in ``split``, in label order (zeros included); after setup,
        of the samples kept (``landmarks.on_missing=drop`` removes some)."""
        labels = self.datasets[split].labels if split in self.datasets \
            else self.source.split_info(split).labels
        return np.bincount(labels, minlength=len(self.class_names)).tolist()

    def class_weights(self) -> torch.Tensor:
        """The weights ``loss=weighted_ce`` uses: w_c = N / (K N_c) over the training split
        (VGG16-CBAM (Ghimire et al.), Eq. 5), in label order."""
        return inverse_frequency_weights(self.class_counts("train"))

    @property
    def available_splits(self) -> list[str]:
        """The splits this form of the dataset has (FER2013's train.csv form has no
        labelled test split); asking a loader for another raises SplitUnavailableError."""
        if self._available_splits is None:
            self._available_splits = [split for split in SPLITS if self._has_split(split)]
        return self._available_splits

    def _has_split(self, split: str) -> bool:
        try:
            self.source.split_info(split)
        except SplitUnavailableError as error:
            self.unavailable_splits[split] = str(error)
            return False
        return True

    def landmark_caches(self) -> dict[str, LandmarkCache]:
        """The landmark cache of every split, or {} when no backend is configured."""
        if not self.landmarks.extracts:
            return {}
        if self._landmark_caches is None:
            self._landmark_caches = caches_for(self.landmarks, self.source,
                                               self.available_splits, self.precropped)
        return self._landmark_caches

    def dataset_problems(self, images: str | None = None, fit: bool = False) -> list[str]:
        """What would stop training on this dataset (``sources.validate``): empty splits,
        fewer than two classes, unreadable images (checked as ``images``, by default
        ``check_images``); with ``fit``, a missing val split too. A check that passes is
        not repeated by ``prepare_data`` / ``setup`` (nor are the weaker ones it covers)."""
        images = self.check_images if images is None else images
        problems = validate.dataset_problems(
            self.source, self.available_splits, self.unavailable_splits,
            required=("train", "val") if fit else ("train",), images=images)
        if not problems:
            covered = validate.IMAGE_CHECKS[: validate.IMAGE_CHECKS.index(images) + 1]
            self._checked.update((check, need_val) for check in covered
                                 for need_val in {False, fit})
        return problems

    def check(self, fit: bool = False) -> None:
        """Raise DatasetError listing every ``dataset_problems`` (the data summary's
        problems), checking images as ``check_images`` says; training calls it before
        the net is built, so a one-class folder stops there, not inside a metric. A
        source that fails to read its files (a bad label file, a missing column) stops
        with its message as a DatasetError, the line the summary prints. Under DDP the
        image files are checked by each node's first process only (as ``prepare_data``
        would), the other processes check the splits and classes."""
        images = self.check_images if _local_rank() == 0 else "none"
        try:
            self._check(images, fit=fit)
        except (ValueError, OSError) as error:
            known = validate.user_error(error)
            if known is None or known is error:
                raise
            raise known from None

    def _check(self, images: str, fit: bool = False) -> None:
        """Raise DatasetError listing ``dataset_problems``, unless that check passed."""
        if (images, fit) not in self._checked:
            problems = self.dataset_problems(images=images, fit=fit)
            if problems:
                raise validate.error(self.source, problems)

    def prepare_data(self) -> None:
        """Check the dataset and its image files, then extract, verify and repair the
        landmark cache (Lightning runs this on rank 0 only; other jobs on the same cache
        folder wait for or share the work)."""
        self._check(self.check_images)
        for cache in self.landmark_caches().values():
            cache.compute()

    def setup(self, stage: str | None = None) -> None:
        self._check("none", fit=stage == "fit")
        missing = [split for split in self.available_splits if split not in self.datasets]
        arrays, kept = {}, {}
        if missing and self.landmark_caches():
            arrays, kept, self.landmark_report = resolve(self.landmark_caches(), self.landmarks)
        for split in missing:
            self.datasets[split] = FERDataset(self.source, split, self.image_size,
                                              self.channels, self.use_landmarks,
                                              landmarks=arrays.get(split), indices=kept.get(split))
        if missing:
            self._report_path(missing)

    def data_path(self, split: str) -> str:
        """How ``split`` is served: ``memory`` or ``decode cache`` (batched path, decoded
        in memory each run or read from the on-disk cache) or ``per sample``."""
        size = len(self.source.split_info(split).labels)
        method = digest_method(self.source, split, size)
        photo, generated = method == "image files", method == "sample_digest"
        if self.decode_cache == "off":
            return "per sample" if photo else "memory"
        wanted = self.decode_cache == "on" or photo or generated
        if wanted and self.cache_dir is not None:
            return "decode cache"
        return "per sample" if photo else "memory"

    def _decode(self, dataset: FERDataset) -> dict[str, np.ndarray] | None:
        path = self.data_path(dataset.split)
        if path == "per sample":
            return None
        if path == "memory":
            return decode_in_memory(dataset)
        crops = None if dataset.cached is None else dataset.cached.crop_box
        return DecodeCache(self.cache_dir, self.source, dataset.split, self.image_size,
                           self.channels, crop_boxes=crops).load()

    def split_arrays(self, split: str) -> ArraySplit | None:
        """``split`` as an ArraySplit (decoded on first use), or None on the per-sample
        path."""
        if split not in self.arrays:
            decoded = self._decode(self.datasets[split])
            if decoded is None:
                return None
            self.arrays[split] = split_arrays(self.datasets[split], decoded)
        return self.arrays[split]

    def _report_path(self, splits: list[str]) -> None:
        paths = {split: self.data_path(split) for split in splits}
        batched = [split for split, path in paths.items() if path != "per sample"]
        log.info("Data path: %s%s", ", ".join(f"{split} {path}" for split, path in paths.items()),
                 f"; batches gathered by index from uint8 arrays ({', '.join(batched)})"
                 if batched else "; samples read one by one (data.decode_cache=off)")

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader | BatchLoader:
        if split in self.unavailable_splits:
            raise SplitUnavailableError(self.unavailable_splits[split])
        placed = self.placed_split(split)
        if placed is not None:
            return BatchLoader(placed, self._sampler(split, shuffle),
                               self._batches_done if shuffle else None)
        sampler = None
        if shuffle:
            self._warn_if_resumed_mid_epoch()
            sampler, shuffle = EpochSampler(len(self.datasets[split]), self._weights(split),
                                            seed=self.seed), False
        return DataLoader(
            self.datasets[split], batch_size=self.batch_size, shuffle=shuffle, sampler=sampler,
            num_workers=self.num_workers, pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0, drop_last=False,
        )

    def _weights(self, split: str) -> np.ndarray | None:
        """Per-sample draw weights of the balanced sampler (1 / class count), or None."""
        if not self.balanced_sampler:
            return None
        labels = self.datasets[split].labels
        counts = np.bincount(labels, minlength=len(self.class_names)).astype(np.float64)
        return 1.0 / counts[labels]

    def _sampler(self, split: str, shuffle: bool) -> EpochBatchSampler:
        """The split's batch sampler (one per split and rank; Lightning sets its epoch)."""
        if split not in self._samplers:
            self._samplers[split] = EpochBatchSampler(
                len(self.arrays[split]), self.batch_size, shuffle=shuffle,
                weights=self._weights(split) if shuffle else None, seed=self.seed)
        return self._samplers[split]

    def _batches_done(self) -> int:
        """Batches of the current training epoch already trained (restored on resume)."""
        if self.trainer is None:
            return 0
        return int(self.trainer.fit_loop.epoch_loop.batch_progress.current.ready)

    def _batch_count(self) -> int:
        """Training batches before this one, over all epochs (restored on resume)."""
        return int(self.trainer.fit_loop.epoch_loop.batch_progress.total.ready)

    def _warn_if_resumed_mid_epoch(self) -> None:
        done = self._batches_done()
        if done:
            log.warning("Resumed %d batches into epoch %d on the per-sample data path: the "
                        "rest of that epoch is drawn anew (it will not match the "
                        "uninterrupted run's)", done, self.trainer.current_epoch)

    def placed_split(self, split: str) -> ArraySplit | None:
        """``split`` where its batches are gathered: on the GPU (``on_device``) or in
        (pinned, with a GPU) host memory; None on the per-sample path."""
        if self.split_arrays(split) is None:
            return None
        if split not in self._placed:
            arrays = self.arrays[split]
            device = self.trainer.strategy.root_device if self.trainer is not None \
                else torch.device(self.placement_device or "cpu")
            if device.type == "cuda":
                free = torch.cuda.mem_get_info(device)[0]
                on_device = keep_on_device(self.on_device, arrays.nbytes, free)
                arrays = arrays.to(device) if on_device else arrays.pin_memory()
                log.info("Data path: %s split (%.1f MB) %s", split, arrays.nbytes / 1e6,
                         f"on {device}" if on_device else "in pinned host memory")
            self._placed[split] = arrays
        return self._placed[split]

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def on_after_batch_transfer(self, batch: dict[str, torch.Tensor], dataloader_idx: int
                                ) -> dict[str, torch.Tensor]:
        training = self.trainer is not None and self.trainer.training
        if training:  # each batch's augmentation and dropout follow from (seed, batch)
            torch.manual_seed(step_seed(self.seed, self._batch_count()))
        return self.batch_transform(batch, training=training)  # uint8 -> [0, 1] floats there
