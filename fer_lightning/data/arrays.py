"""The batched data path: a split held as tensors, batches gathered by index.

A split whose images fit one uint8 array at the training size (FER2013, FER+, AffectNet's
npy release, the synthetic faces and the photo datasets through ``decode_cache``) is an
``ArraySplit``: images (N, C, H, W) uint8 with labels, soft targets and landmarks as
tensors. An ``EpochBatchSampler`` draws each batch's indices (shuffled or class-balanced,
sharded across DDP ranks the way ``DistributedSampler`` does, seeded by seed + epoch so a
resumed run draws what the uninterrupted one drew) and a ``BatchLoader`` gathers them in
one indexing op: no per-sample ``__getitem__``, no collate. Images cross to the device as
uint8; the DataModule turns them into floats there.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from fer_lightning.data.dataset import FERDataset
from fer_lightning.data.decode_cache import decode_rows, sample_fields


@dataclass
class ArraySplit:
    """One split as tensors on one device: ``image`` (N, C, H, W) uint8 and the per-sample
    fields of the sample dict (docs/data-flow.md), ``label``, ``index`` ... each (N, ...).
    ``pinned``: the tensors are in pinned host memory (``pin_memory``)."""

    tensors: dict[str, torch.Tensor]
    pinned: bool = False

    def __len__(self) -> int:
        return len(self.tensors["label"])

    @property
    def nbytes(self) -> int:
        """Memory the split's tensors take."""
        return sum(t.numel() * t.element_size() for t in self.tensors.values())

    @property
    def device(self) -> torch.device:
        """Where the tensors are (and where ``gather`` wants its indices)."""
        return self.tensors["label"].device

    def to(self, device: torch.device | str) -> ArraySplit:
        """The same split on ``device``."""
        return ArraySplit({k: t.to(device) for k, t in self.tensors.items()})

    def pin_memory(self) -> ArraySplit:
        """The same split in pinned host memory, whose batches cross to a GPU
        asynchronously (``gather`` then gathers into pinned memory as well)."""
        return ArraySplit({k: t.pin_memory() for k, t in self.tensors.items()}, pinned=True)

    def gather(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        """The batch of rows ``indices`` as a sample-dict batch (image still uint8).

        Pass indices already on ``device`` (``EpochBatchSampler.batches``): moving them
        here would be a blocking copy per batch, which on a GPU waits for all the work
        queued before it. A pinned split gathers into fresh pinned tensors, so the
        non-blocking copy Lightning makes to the GPU really is asynchronous (PyTorch's
        pinned-memory allocator reuses a buffer only once its copy is done)."""
        indices = indices.to(self.device)
        if self.pinned:
            return {key: torch.index_select(tensor, 0, indices, out=torch.empty(
                        (len(indices), *tensor.shape[1:]), dtype=tensor.dtype, pin_memory=True))
                    for key, tensor in self.tensors.items()}
        return {key: tensor.index_select(0, indices) for key, tensor in self.tensors.items()}


def crop_boxes(dataset: FERDataset) -> np.ndarray | None:
    """The landmark cache's crop box of every source sample of ``dataset``, if any."""
    return None if dataset.cached is None else np.asarray(dataset.cached.crop_box)


def decode_in_memory(dataset: FERDataset) -> dict[str, np.ndarray]:
    """Every sample of ``dataset``'s split decoded once, in memory, by source index (for
    sources whose samples are already arrays: FER2013, FER+'s csv, AffectNet's npy)."""
    source, split = dataset.source, dataset.split
    rows = np.arange(len(source.split_info(split).labels))
    return decode_rows(source, split, rows, dataset.image_size, dataset.channels,
                       crop_boxes(dataset), sample_fields(source, split))


def split_arrays(dataset: FERDataset, decoded: dict[str, np.ndarray]) -> ArraySplit:
    """``dataset``'s kept samples as an ArraySplit. ``decoded``: the split's arrays by
    source index (``decode_in_memory`` or a ``DecodeCache``): ``image`` (N, H, W[, 3])
    uint8 at the training size, and the source's own targets / landmarks. Labels,
    targets and landmarks are those the per-sample path returns (``FERDataset.fields``)."""
    images = np.asarray(decoded["image"][dataset.indices])
    tensor = torch.from_numpy(np.ascontiguousarray(images))
    tensor = tensor[:, None] if tensor.ndim == 3 else tensor.permute(0, 3, 1, 2).contiguous()
    return ArraySplit({"image": tensor, **dataset.fields(decoded)})


def world() -> tuple[int, int]:
    """(rank, number of ranks) of the running process group, (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class EpochBatchSampler:
    """Batches of indices into a split, one epoch at a time.

    ``shuffle``: a fresh permutation each epoch; ``weights``: draw ``len(weights)``
    indices with replacement in proportion to them (the balanced sampler); neither: in
    order. The draw uses a generator seeded by ``seed + epoch`` (``set_epoch``, which
    Lightning calls before every epoch), so epoch e draws the same batches in a run and in
    a run resumed from a checkpoint. With ``num_replicas`` > 1 (default: the DDP world),
    the epoch's indices are padded to a multiple of it by repeating the first ones and
    rank r takes every ``num_replicas``-th from r, as ``DistributedSampler`` does: the
    ranks' shards are disjoint and together cover the split.
    """

    def __init__(self, size: int, batch_size: int, shuffle: bool = False,
                 weights: np.ndarray | None = None, seed: int = 0, drop_last: bool = False,
                 rank: int | None = None, num_replicas: int | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        default_rank, default_world = world()
        self.rank = default_rank if rank is None else rank
        self.num_replicas = default_world if num_replicas is None else num_replicas
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"rank {self.rank} is outside 0..{self.num_replicas - 1}")
        self.size, self.batch_size, self.shuffle, self.drop_last = size, batch_size, shuffle, \
            drop_last
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self.seed, self.epoch = int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        """Draw epoch ``epoch``'s batches next."""
        self.epoch = int(epoch)

    def _shard_size(self) -> int:
        return math.ceil(self.size / self.num_replicas)

    def __len__(self) -> int:
        rows = self._shard_size()
        return rows // self.batch_size if self.drop_last else math.ceil(rows / self.batch_size)

    def epoch_indices(self) -> torch.Tensor:
        """This rank's indices for the current epoch, in batch order."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        if self.weights is not None:
            order = torch.multinomial(self.weights, self.size, replacement=True,
                                      generator=generator)
        elif self.shuffle:
            order = torch.randperm(self.size, generator=generator)
        else:
            order = torch.arange(self.size)
        total = self._shard_size() * self.num_replicas
        if total > self.size and self.size:  # pad with the first indices, as DDP does
            padding = order.repeat(math.ceil(total / self.size))[: total - self.size]
            order = torch.cat([order, padding])
        return order[self.rank:total:self.num_replicas]

    def batches(self, device: torch.device | str | None = None, start: int = 0
                ) -> Iterator[torch.Tensor]:
        """The current epoch's batches of indices from batch ``start`` on, on ``device``:
        the epoch's indices cross there in one copy, not one per batch."""
        indices = self.epoch_indices()
        if device is not None:
            indices = indices.to(device)
        for batch in range(start, len(self)):
            yield indices[batch * self.batch_size:(batch + 1) * self.batch_size]

    def __iter__(self) -> Iterator[torch.Tensor]:
        return self.batches()


def step_seed(seed: int, step: int) -> int:
    """The seed of the global RNG for training batch ``step`` (counted across epochs):
    a 63-bit hash of (seed, step), so augmentation and dropout draw the same numbers for
    that batch in a run and in a run resumed from a checkpoint."""
    digest = hashlib.blake2b(f"{seed}/{step}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class EpochSampler(Sampler[int]):
    """The per-sample path's training sampler: one index at a time, in the order an
    unsharded ``EpochBatchSampler`` draws for the epoch (seed + epoch, shuffled or
    balanced). Under DDP, Lightning shards it with its sampler wrapper."""

    def __init__(self, size: int, weights: np.ndarray | None = None, seed: int = 0) -> None:
        self.draw = EpochBatchSampler(size, 1, shuffle=True, weights=weights, seed=seed,
                                      rank=0, num_replicas=1)

    def set_epoch(self, epoch: int) -> None:
        """Draw epoch ``epoch``'s order next."""
        self.draw.set_epoch(epoch)

    def __len__(self) -> int:
        return self.draw.size

    def __iter__(self) -> Iterator[int]:
        return iter(self.draw.epoch_indices().tolist())


class BatchLoader:
    """What ``train_dataloader`` returns on the batched path: an iterable of batches
    gathered from an ``ArraySplit`` by an ``EpochBatchSampler``. Lightning calls
    ``batch_sampler.set_epoch`` before each epoch and moves each batch to the
    device (a no-op when the split already lives there). ``batches_done``: how many of
    the epoch's batches were trained before this iteration starts (non-zero in a run
    resumed mid-epoch; those are skipped, so the epoch ends as it would have)."""

    def __init__(self, split: ArraySplit, batch_sampler: EpochBatchSampler,
                 batches_done: Callable[[], int] | None = None) -> None:
        self.split, self.batch_sampler = split, batch_sampler
        self.batches_done = batches_done

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        # A run resumed mid-epoch continues with the batches the epoch had not reached.
        done = self.batches_done() if self.batches_done is not None else 0
        for indices in self.batch_sampler.batches(self.split.device, start=done):
            yield self.split.gather(indices)
