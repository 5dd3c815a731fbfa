"""One LightningDataModule for every dataset: a Source, splits, loaders, batch transforms."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, WeightedRandomSampler

from fer_lightning.checks import check_choice
from fer_lightning.data.dataset import FERDataset
from fer_lightning.data.landmarks.cache import LandmarkCache, caches_for
from fer_lightning.data.landmarks.config import LandmarksConfig
from fer_lightning.data.landmarks.policy import resolve
from fer_lightning.data.sources import validate
from fer_lightning.data.sources.base import SPLITS, Source, SplitUnavailableError
from fer_lightning.data.transforms import BatchTransform
from fer_lightning.losses import inverse_frequency_weights


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
    """

    def __init__(self, source: Source, image_size: int = 48, channels: int = 1,
                 batch_size: int = 32, num_workers: int = 0,
                 augment: Mapping[str, Any] | None = None, balanced_sampler: bool = False,
                 pin_memory: bool = False,
                 landmarks: LandmarksConfig | Mapping[str, Any] | None = None,
                 landmark_encoding: str | None = None, precropped: bool | None = None,
                 root: str | None = None, mean: float | Sequence[float] = 0.5,
                 std: float | Sequence[float] = 0.5, check_images: str = "header") -> None:
        super().__init__()
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

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader:
        if split in self.unavailable_splits:
            raise SplitUnavailableError(self.unavailable_splits[split])
        sampler = None
        if shuffle and self.balanced_sampler:
            sampler, shuffle = self._balanced_sampler(), False
        return DataLoader(
            self.datasets[split], batch_size=self.batch_size, shuffle=shuffle, sampler=sampler,
            num_workers=self.num_workers, pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0, drop_last=False,
        )

    def _balanced_sampler(self) -> WeightedRandomSampler:
        labels = self.datasets["train"].labels
        counts = np.bincount(labels, minlength=len(self.class_names)).astype(np.float64)
        weights = 1.0 / counts[labels]
        return WeightedRandomSampler(torch.as_tensor(weights), num_samples=len(labels))

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def on_after_batch_transfer(self, batch: dict[str, torch.Tensor], dataloader_idx: int
                                ) -> dict[str, torch.Tensor]:
        training = self.trainer is not None and self.trainer.training
        return self.batch_transform(batch, training=training)
