"""``make bench``: throughput numbers for this machine, appended to benchmarks/RESULTS.md.

Timed here, never in tests (shared machines make timed tests flaky). Each section prints
the command that produced it and the machine it ran on.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

import torch

from fer_lightning.config import build_net, compose_config
from fer_lightning.data.sources.synthetic import SyntheticFaces
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


def synthetic_render_rate(size: int, count: int = 200) -> float:
    """Samples per second that SyntheticFaces renders at ``size`` px (one process)."""
    source = SyntheticFaces(image_size=size, train_size=count)
    offset = [0]

    def render() -> int:
        for index in range(count // 4):
            source.load("train", (offset[0] + index) % count)
        offset[0] += count // 4
        return count // 4

    return best_rate(render, repeats=3)


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


def main() -> None:
    """Measure and append a dated section to RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    lines = [f"\n## {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC — `make bench`",
             f"machine: {machine()}", "",
             "| what | value |", "|---|---|"]
    for size in (48, 96):
        lines.append(f"| synthetic faces rendered / s, {size}x{size}, 1 process | "
                     f"{synthetic_render_rate(size):.0f} |")
    for head in ("gap", "fc"):
        rate, params = train_step_rate(["model=mini_xception", f"head={head}"])
        lines.append(f"| mini_xception head={head} ({params:,} params) train images / s, "
                     f"48x48, batch 32, fp32 | {rate:.0f} |")
    # Imported here: each module imports this one for its helpers.
    from . import data_path, families, inference, landmarks, mba, ms_fpn, sources

    for section in (data_path.rows, mba.rows, families.rows, families.overhead_rows, ms_fpn.rows,
                    sources.rows, landmarks.rows, inference.rows):
        lines += section()
        print("\n".join(lines[-3:]), flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.out.exists():
        args.out.write_text("# Benchmark results\n\nAppended by `make bench` "
                            "(`python -m benchmarks.run`).\n")
    with args.out.open("a") as handle:
        handle.write(text)


if __name__ == "__main__":
    main()
