"""``make bench`` rows for the MBA network (Colaco & Han): CPU training throughput and size.

    python -m benchmarks.mba          # prints the rows

Each row is the net ``+experiment=mba`` builds (w = d = 0.5, the paper's single FC layer),
with and without the landmark subnetwork, plus the GAP head, at the paper's 48x48, batch
32, fp32 on the CPU: Adam steps on fixed random inputs (no data loading), best of 10.
"""

from __future__ import annotations

from .common import train_step_rate

SIZE, BATCH = 48, 32
EXPERIMENT = ("+experiment=mba", "data=synthetic")
VARIANTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("landmarks on, head=fc (paper)", ("landmarks=groundtruth",)),
    ("landmarks off, head=fc", ("landmarks=none",)),
    ("landmarks on, head=gap", ("landmarks=groundtruth", "head=gap")),
)


def rows() -> list[str]:
    """Markdown table rows ``| what | value |`` for RESULTS.md."""
    lines = []
    for label, overrides in VARIANTS:
        rate, params = train_step_rate([*EXPERIMENT, *overrides], size=SIZE, batch=BATCH)
        lines.append(f"| mba w=d=0.5 {label} ({params:,} params) train images / s, "
                     f"{SIZE}x{SIZE}, batch {BATCH}, fp32 | {rate:.0f} |")
    return lines


if __name__ == "__main__":
    print("\n".join(rows()))
