"""``make bench``: throughput numbers for this machine, appended to benchmarks/RESULTS.md.

Timed here, never in tests (shared machines make timed tests flaky). Each section prints
the command that produced it and the machine it ran on.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from pathlib import Path

from benchmarks import data_path, families, inference, landmarks, mba, ms_fpn, sources, startup
from benchmarks.common import RESULTS, best_rate, machine, train_step_rate
from fer_lightning.data.sources.synthetic import SyntheticFaces


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
    for section in (startup.rows, data_path.rows, mba.rows, families.rows,
                    families.overhead_rows, ms_fpn.rows, sources.rows, landmarks.rows,
                    inference.rows):
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
