"""``make bench`` rows for seed 000's MBA network: CPU training throughput and size.

    python -m benchmarks.mba          # prints the rows

Each row is the net ``+experiment=mba`` builds (w = d = 0.5, the paper's single FC layer),
with and without the landmark subnetwork, plus the GAP head, at the paper's 48x48, batch
32, fp32 on the CPU: Adam steps on fixed random inputs (no data loading), best of 10.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fer_lightning.losses import CrossEntropy

from .run import best_rate, configured_net

SIZE, BATCH = 48, 32
EXPERIMENT = ("+experiment=mba", "data=synthetic")
VARIANTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("landmarks on, head=fc (paper)", ("landmarks=groundtruth",)),
    ("landmarks off, head=fc", ("landmarks=none",)),
    ("landmarks on, head=gap", ("landmarks=groundtruth", "head=gap")),
)


def train_rate(overrides: Sequence[str]) -> tuple[float, int]:
    """Training images / s of the configured MBA net and its parameter count."""
    net = configured_net([*EXPERIMENT, *overrides, f"data.image_size={SIZE}"])
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    loss_fn = CrossEntropy()
    batch = {"image": torch.randn(BATCH, 1, SIZE, SIZE),
             "landmark_map": torch.rand(BATCH, 1, SIZE, SIZE)}
    labels = torch.randint(0, 7, (BATCH,))

    def step() -> int:
        optimizer.zero_grad()
        loss_fn(net(**{key: batch[key] for key in net.input_keys}), labels).backward()
        optimizer.step()
        return BATCH

    return best_rate(step, repeats=10), sum(p.numel() for p in net.parameters())


def rows() -> list[str]:
    """Markdown table rows ``| what | value |`` for RESULTS.md."""
    lines = []
    for label, overrides in VARIANTS:
        rate, params = train_rate(overrides)
        lines.append(f"| mba w=d=0.5 {label} ({params:,} params) train images / s, "
                     f"{SIZE}x{SIZE}, batch {BATCH}, fp32 | {rate:.0f} |")
    return lines


if __name__ == "__main__":
    print("\n".join(rows()))
