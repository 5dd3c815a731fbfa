"""Start-up: CPU seconds a command spends before it answers a config error, a missing
dataset and ``--help`` (the heavy imports, torch and Lightning, are deferred until a
command needs them).

    python -m benchmarks.startup

Each case runs as its own process from a temporary folder, ``repeats`` times; the row is
the median of the process's user + system CPU time (children included), which a busy
machine changes far less than wall time.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile

#: (what, module, arguments): the three answers that should come at once.
CASES = (
    ("config error", "fer_lightning", ["data.batch_size=-1"]),
    ("config error", "fer_lightning", ["+lr=0.1"]),
    ("config error, a node's key (signature cache warm)", "fer_lightning", ["+model.widht=2"]),
    ("missing dataset", "fer_lightning", ["data=fer2013", "data.root=/nonexistent/fer2013"]),
    ("help", "fer_lightning", ["--help"]),
    ("help", "fer_lightning.eval", ["--help"]),
    ("help", "fer_lightning.predict", ["--help"]),
    ("help", "fer_lightning.export", ["--help"]),
)


def cpu_seconds(module: str, arguments: list[str], cwd: str) -> float:
    """User + system CPU seconds of ``python -m module arguments`` and its children."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-m", module, *arguments], cwd=cwd, capture_output=True,
                   env={**os.environ, "PYTHONPATH": os.getcwd()}, timeout=300, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def rows(repeats: int = 3) -> list[str]:
    """The start-up section of RESULTS.md: one table row per case."""
    lines = ["", f"Start-up, CPU s (user + sys, median of {repeats} processes; "
                 f"`python -m benchmarks.startup`):", "", "| command | CPU s |", "|---|---|"]
    with tempfile.TemporaryDirectory() as cwd:
        cpu_seconds(*CASES[2][1:], cwd)  # a first full check fills the signature cache
        for what, module, arguments in CASES:
            seconds = statistics.median(cpu_seconds(module, arguments, cwd)
                                        for _ in range(repeats))
            lines.append(f"| {what}: `python -m {module} {' '.join(arguments)}` | "
                         f"{seconds:.2f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    print("\n".join(rows(parser.parse_args().repeats)))


if __name__ == "__main__":
    main()
