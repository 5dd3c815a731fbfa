"""A DDP rank for tests/test_data_path.py: which training indices the batched path gives
this rank (a module of its own, so spawned ranks import torch but not Lightning)."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from fer_lightning.data.arrays import BatchLoader, EpochBatchSampler, decode_in_memory, split_arrays
from fer_lightning.data.dataset import FERDataset
from fer_lightning.data.sources.synthetic import SyntheticFaces


def rank_indices(rank: int, world: int, port: int, out: str) -> None:
    """Join a gloo group of ``world`` ranks, iterate epoch 2 of a 30-sample synthetic
    train split at batch 4, and have rank 0 save every rank's source indices to ``out``."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        dataset = FERDataset(SyntheticFaces(train_size=30, val_size=8, test_size=8), "train",
                             48, 1, with_landmarks=False)
        sampler = EpochBatchSampler(len(dataset), 4, shuffle=True, seed=5)  # ranks from DDP
        loader = BatchLoader(split_arrays(dataset, decode_in_memory(dataset)), sampler)
        sampler.set_epoch(2)
        indices = torch.cat([batch["index"] for batch in loader])
        gathered = [torch.zeros_like(indices) for _ in range(world)]
        dist.all_gather(gathered, indices)
        if rank == 0:
            torch.save(gathered, out)
    finally:
        dist.destroy_process_group()
