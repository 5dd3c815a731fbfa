"""``python -m fer_lightning.data COMMAND [options] [config overrides]``: dataset tools.

Commands:
  preview   write a PNG grid of samples per class with their landmarks drawn
            (options: out=PATH split=train|val|test per_class=N)
  summary   per-split, per-class counts, skipped rows (by reason) and the landmark
            detection rate when the datamodule reports one (options: format=text|json;
            JSON shape in fer_lightning/data/summary.py)

Config overrides are the same as for training, e.g. ``data.source.seed=3``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_module
from hydra.errors import InstantiationException

from fer_lightning.data.datamodule import FERDataModule
from fer_lightning.data.dataset import FERDataset
from fer_lightning.data.preview import write_preview
from fer_lightning.data.summary import render, summarize

COMMANDS = ("preview", "summary")
OPTIONS = {"out": "preview.png", "split": "train", "per_class": "8", "format": "text"}


def parse(argv: Sequence[str]) -> tuple[str, dict[str, str], list[str]]:
    """Split ``argv`` into command, this tool's options and Hydra overrides."""
    if not argv or argv[0] not in COMMANDS:
        raise SystemExit(f"usage: python -m fer_lightning.data {{{','.join(COMMANDS)}}} "
                         f"[out=PATH split=train per_class=8 format=text] [overrides]\n{__doc__}")
    options, overrides = dict(OPTIONS), []
    for arg in argv[1:]:
        key, _, value = arg.partition("=")
        if key in OPTIONS:
            options[key] = value
        else:
            overrides.append(arg)
    return argv[0], options, overrides


def datamodule_from_overrides(overrides: list[str]):
    """The FERDataModule that ``python -m fer_lightning <overrides>`` would train on."""
    from fer_lightning.train import build_datamodule  # registers the config resolvers

    with initialize_config_module(config_module="fer_lightning.conf", version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    return build_datamodule(cfg)


def print_summary(overrides: list[str], fmt: str) -> None:
    """Print the dataset summary; a bad dataset exits with its message, not a traceback."""
    try:
        print(render(summarize(datamodule_from_overrides(overrides)), fmt))
    except (OSError, ValueError, InstantiationException) as error:
        cause = error.__cause__ or error  # Hydra wraps constructor errors
        raise SystemExit(f"error: {cause}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    command, options, overrides = parse(sys.argv[1:] if argv is None else argv)
    if command == "summary":
        print_summary(overrides, options["format"])
        return 0
    if command == "preview":
        dataset = preview_dataset(datamodule_from_overrides(overrides), options["split"])
        path = write_preview(dataset, Path(options["out"]), per_class=int(options["per_class"]))
        print(f"wrote {path}")
    return 0


def preview_dataset(datamodule: FERDataModule, split: str) -> FERDataset:
    """The split as training sees it: with a landmark backend configured, its cached
    landmarks (extracted first if needed); otherwise the source's own, if it ships any."""
    if datamodule.use_landmarks:
        datamodule.prepare_data()
        datamodule.setup("fit")
        return datamodule.datasets[split]
    ships_landmarks = datamodule.source.load(split, 0).landmarks is not None
    return FERDataset(datamodule.source, split, datamodule.image_size, datamodule.channels,
                      with_landmarks=ships_landmarks)


if __name__ == "__main__":
    sys.exit(main())
