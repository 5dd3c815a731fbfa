"""The ablation grid on synthetic faces: family x landmarks x head, one fixed small budget.

    python -m benchmarks.compare                       # every family, appends to RESULTS.md
    python -m benchmarks.compare --families mini_xception mba --epochs 3

Each cell is one ``python -m fer_lightning`` run (in-process, same code path) on the
embedded synthetic faces with the same data, budget and seed; a family that cannot honour
a choice shows the config error instead of a number. CPU only; this is a benchmark, so it
never runs in the test suite.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from fer_lightning.config import ConfigError, compose_config
from fer_lightning.train import train

from .run import RESULTS, machine

#: family -> the overrides that select it at a CPU-friendly size.
FAMILIES: dict[str, tuple[str, ...]] = {
    "mini_xception": ("model=mini_xception",),
    "mba": ("model=mba", "head.hidden=[]"),  # MBA (Colaco & Han): a single FC layer
    "vgg_cbam": ("model=vgg_cbam",),
    "timm_resnet18": ("model=timm", "model.name=resnet18"),
    "ms_fpn": ("model=ms_fpn", "model.backbone=resnet18", "data.image_size=96"),
}
AXES = [(landmarks, head) for landmarks in ("none", "groundtruth") for head in ("gap", "fc")]


def budget_overrides(train_size: int, epochs: int, seed: int) -> list[str]:
    """The fixed budget every cell gets."""
    return [f"data.source.train_size={train_size}", "data.source.val_size=500",
            "data.source.test_size=1000", f"trainer.max_epochs={epochs}", "trainer=cpu",
            f"seed={seed}", "logger=none", "callbacks.progress_bar=null",
            "callbacks.model_summary=null", "callbacks.confusion_matrix=null"]


def run_cell(overrides: Sequence[str]) -> str:
    """Train one cell; a markdown fragment: test acc | test mean class acc | minutes."""
    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        try:
            results = train(compose_config(overrides, Path(scratch)))
        except ConfigError as error:
            return f"n/a: {error} | | "
        minutes = (time.perf_counter() - start) / 60
    metrics = results["test"]["metrics"]
    return f"{metrics['acc']:.3f} | {metrics['mean_class_acc']:.3f} | {minutes:.1f}"


def main() -> None:
    """Run the grid and append a table to RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", choices=list(FAMILIES), default=list(FAMILIES))
    parser.add_argument("--train-size", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    budget = budget_overrides(args.train_size, args.epochs, args.seed)
    command = (f"python -m benchmarks.compare --families {' '.join(args.families)} "
               f"--train-size {args.train_size} --epochs {args.epochs} --seed {args.seed}")
    lines = [f"\n## Synthetic ablation grid — `{command}`", f"machine: {machine()}", "",
             "| family | landmarks | head | test acc | test mean class acc | minutes |",
             "|---|---|---|---|---|---|"]
    for family in args.families:
        for landmarks, head in AXES:
            cell = run_cell([*FAMILIES[family], *budget, f"landmarks={landmarks}",
                             f"head={head}"])
            lines.append(f"| {family} | {landmarks} | {head} | {cell} |")
            print(lines[-1], flush=True)
    with args.out.open("a") as handle:
        handle.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
