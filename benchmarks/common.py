"""Helpers every benchmark section shares: the results file, the machine line, a
best-of-N rate and a configured net's training-step rate. ``run.py`` (``make bench``)
imports the sections; the sections import only this module."""

from __future__ import annotations

import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from fer_lightning.build import build_net
from fer_lightning.config import compose_config
from fer_lightning.losses import CrossEntropy

RESULTS = Path(__file__).with_name("RESULTS.md")



def best_rate(work: Callable[[], int], repeats: int, warmup: int = 2) -> float:
    """Items per second of the fastest of ``repeats`` calls of ``work`` (returns items)."""
    for _ in range(warmup):
        work()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        items = work()
        rates.append(items / (time.perf_counter() - start))
    return max(rates)



def configured_net(overrides: Sequence[str]) -> torch.nn.Module:
    """The net ``python -m fer_lightning <overrides>`` would train (7 classes)."""
    with tempfile.TemporaryDirectory() as scratch:
        return build_net(compose_config(overrides, scratch), num_classes=7)



def random_inputs(keys: Sequence[str], batch: int, channels: int,
                  size: int) -> dict[str, torch.Tensor]:
    """Random tensors for the batch keys a net consumes (image, landmark encodings)."""
    makers = {
        "image": lambda: torch.randn(batch, channels, size, size),
        "landmark_map": lambda: torch.rand(batch, 1, size, size),
        "coords": lambda: torch.rand(batch, 68, 2),
    }
    return {key: makers[key]() for key in keys}



def train_step_rate(overrides: Sequence[str], size: int = 48, channels: int = 1,
                    batch: int = 32, repeats: int = 10, warmup: int = 2) -> tuple[float, int]:
    """Training images per second (forward, backward, Adam step; fp32, CPU, random inputs,
    no data loading) of the net ``overrides`` configure, and its parameter count."""
    net = configured_net([*overrides, f"data.image_size={size}", f"data.channels={channels}"])
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    loss_fn = CrossEntropy()
    inputs = random_inputs(net.input_keys, batch, channels, size)
    labels = torch.randint(0, 7, (batch,))

    def step() -> int:
        optimizer.zero_grad()
        loss_fn(net(**inputs), labels).backward()
        optimizer.step()
        return batch

    return (best_rate(step, repeats=repeats, warmup=warmup),
            sum(p.numel() for p in net.parameters()))



def machine() -> str:
    """One line naming this machine."""
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads")
