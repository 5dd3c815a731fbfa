"""One LightningDataModule for every dataset: a Source, splits, loaders, batch transforms."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, WeightedRandomSampler

from fer_lightning.checks import check_choice
from fer_lightning.data.dataset import FERDataset
from fer_lightning.data.encodings import ENCODINGS
from fer_lightning.data.landmarks import cache as landmark_cache
from fer_lightning.data.sources import validate
from fer_lightning.data.sources.base import SPLITS, Source, SplitUnavailableError
from fer_lightning.data.transforms import BatchTransform, BatchTransformConfig, LandmarkAugment
from fer_lightning.losses import inverse_frequency_weights


class FERDataModule(L.LightningDataModule):
    """Wraps a dataset Source for Lightning.

    Exposes ``class_names``, per-split ``class_counts`` and the training-split class
    counts that ``loss=weighted_ce`` turns into weights. Batches are augmented and encoded
    after transfer to the device (``on_after_batch_transfer``), so the pipeline runs on
    the GPU where there is one. It knows nothing about networks: the caller says which
    landmark encoding to render.

    Before any work, the dataset is checked (``sources.validate``): every split holds
    samples, there are two classes or more, and the image files the splits list pass the
    ``check_images`` check (``none | header | full``); a problem raises DatasetError
    naming the dataset, split and reason, before landmark extraction or the first epoch.
    """

    def __init__(self, source: Source, image_size: int = 48, channels: int = 1,
                 batch_size: int = 32, num_workers: int = 0,
                 augment: Mapping[str, Any] | None = None, balanced_sampler: bool = False,
                 use_landmarks: bool = False, landmark_encoding: str | None = None,
                 overlay_style: str = "points", overlay_groups: Sequence[str] | None = None,
                 heatmap_sigma: float = 1.0,
                 heatmap_style: str = "gaussian", pin_memory: bool = False,
                 landmarks: Mapping[str, Any] | None = None, precropped: bool | None = None,
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
        if use_landmarks and landmark_encoding not in ENCODINGS:
            raise ValueError(f"landmark encoding {landmark_encoding!r} is not available; "
                             f"known encodings: {list(ENCODINGS)}")
        self.source = source
        self.image_size, self.channels = image_size, channels
        self.batch_size, self.num_workers = batch_size, num_workers
        self.balanced_sampler, self.pin_memory = balanced_sampler, pin_memory
        self.use_landmarks = use_landmarks
        self.batch_transform = BatchTransform(BatchTransformConfig(
            augment=LandmarkAugment(**augment) if augment else None,
            landmark_encoding=landmark_encoding if use_landmarks else None,
            overlay_style=overlay_style, heatmap_sigma=heatmap_sigma, heatmap_style=heatmap_style,
            overlay_groups=list(overlay_groups) if overlay_groups else None,
            mean=list(mean) if isinstance(mean, Sequence) else mean,
            std=list(std) if isinstance(std, Sequence) else std,
        ))
        self.datasets: dict[str, FERDataset] = {}
        # `landmarks`: the landmarks config group. With an `extractor` (dlib, mediapipe,
        # mtcnn) prepare_data caches its landmarks; `precropped`: whether the dataset's
        # images already are face crops (the default of landmarks.precropped).
        self.landmarks_config = landmark_cache.plain(landmarks)
        self.precropped = precropped
        check_choice("landmarks.on_missing", self.landmarks_config.get("on_missing", "mean_shape"),
                     landmark_cache.POLICIES)
        self._landmark_caches: dict[str, landmark_cache.LandmarkCache] | None = None
        #: {split: {"detected", "missed", "rate", "dropped"}} after setup (extracted landmarks).
        self.landmark_report: dict[str, dict[str, Any]] = {}
        self._available_splits: list[str] | None = None
        #: split -> why this form of the dataset does not have it
        self.unavailable_splits: dict[str, str] = {}

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

    def landmark_caches(self) -> dict[str, landmark_cache.LandmarkCache]:
        """The landmark cache of every split, or {} when no extractor is configured."""
        if not self.use_landmarks or not self.landmarks_config.get("extractor"):
            return {}
        if self._landmark_caches is None:
            self._landmark_caches = landmark_cache.caches_for(
                self.landmarks_config, self.source, self.available_splits, self.precropped)
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

    def _check(self, images: str, fit: bool = False) -> None:
        """Raise DatasetError listing ``dataset_problems``, unless that check passed."""
        if (images, fit) not in self._checked:
            problems = self.dataset_problems(images=images, fit=fit)
            if problems:
                raise validate.error(self.source, problems)

    def prepare_data(self) -> None:
        """Check the dataset and its image files, then extract and cache landmarks once
        (Lightning runs this on rank 0 only)."""
        self._check(self.check_images)
        for cache in self.landmark_caches().values():
            cache.compute()

    def setup(self, stage: str | None = None) -> None:
        self._check("none", fit=stage == "fit")
        missing = [split for split in self.available_splits if split not in self.datasets]
        arrays, kept = {}, {}
        if missing and self.landmark_caches():
            policy = self.landmarks_config.get("on_missing", "mean_shape")
            arrays, kept, self.landmark_report = landmark_cache.resolve(
                self.landmark_caches(), policy)
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
