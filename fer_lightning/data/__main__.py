"""``python -m fer_lightning.data COMMAND [--options] [config overrides]``: dataset tools.

Commands:
  preview   write a PNG grid of samples per class with their landmarks drawn
            (options: --out PATH --split train|val|test --per-class N)
  summary   per-split, per-class counts, skipped rows (by reason), the landmark
            detection rate when the datamodule reports one, and every problem that
            would stop training (empty splits, one class, unreadable images); exits 1
            when there is one (options: --format text|json; --verify-images decodes
            every listed image instead of checking its header; JSON shape in
            fer_lightning/data/summary.py)

This tool's own options are ``--flags``; every bare ``key=value`` is a config override,
the same as for training, e.g. ``data.source.seed=3``. The old spelling of the options
(``out=PATH``, ``format=json``) still works for one release, with a note on stderr.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hydra.errors import InstantiationException

from fer_lightning.config import compose_config
from fer_lightning.data.sources.validate import user_error

if TYPE_CHECKING:  # imported where used, so that the usage page answers at once
    from fer_lightning.data.datamodule import FERDataModule
    from fer_lightning.data.dataset import FERDataset

COMMANDS = ("preview", "summary")
OPTIONS = {"out": "preview.png", "split": "train", "per_class": "8", "format": "text"}
#: Flags without a value: flag -> (option name, the value it sets).
FLAGS = {"--verify-images": ("images", "full")}
USAGE = (f"usage: python -m fer_lightning.data {{{','.join(COMMANDS)}}} [--out PATH] "
         f"[--split train] [--per-class 8] [--format text] [--verify-images] [overrides]")


def _flag_option(arg: str, rest: list[str]) -> tuple[str, str]:
    """(option name, value) of ``--name VALUE`` / ``--name=VALUE`` (``--per-class`` is
    ``per_class``); the value is taken from ``rest`` when not joined by ``=``."""
    name, joined, value = arg[2:].partition("=")
    name = name.replace("-", "_")
    if name not in OPTIONS:
        raise SystemExit(f"unknown option {arg.partition('=')[0]}\n{USAGE}")
    if not joined:
        if not rest or rest[0].startswith("--"):
            raise SystemExit(f"{arg} needs a value\n{USAGE}")
        value = rest.pop(0)
    return name, value


def parse(argv: Sequence[str]) -> tuple[str, dict[str, str], list[str]]:
    """Split ``argv`` into command, this tool's options (``--flags``; the old bare
    ``out=...`` spelling with a deprecation note) and Hydra overrides."""
    if not argv or argv[0] not in COMMANDS:
        raise SystemExit(f"{USAGE}\n{__doc__}")
    options, overrides, old_spelling = dict(OPTIONS), [], []
    rest = list(argv[1:])
    while rest:
        arg = rest.pop(0)
        key, _, value = arg.partition("=")
        if arg in FLAGS:
            name, flag_value = FLAGS[arg]
            options[name] = flag_value
        elif arg.startswith("--"):
            name, flag_value = _flag_option(arg, rest)
            options[name] = flag_value
        elif key in OPTIONS:
            options[key] = value
            old_spelling.append(arg)
        else:
            overrides.append(arg)
    if old_spelling:
        flags = " ".join(f"--{a.partition('=')[0].replace('_', '-')} {a.partition('=')[2]}"
                         for a in old_spelling)
        print(f"note: {' '.join(old_spelling)} is the old spelling of this tool's options; "
              f"write {flags} (the old spelling goes in the next release)", file=sys.stderr)
    return argv[0], options, overrides


def datamodule_from_overrides(overrides: list[str]) -> FERDataModule:
    """The FERDataModule that ``python -m fer_lightning <overrides>`` would train on."""
    from fer_lightning.build import build_datamodule_or_hint

    return build_datamodule_or_hint(compose_config(overrides, Path.cwd()))


def print_summary(overrides: list[str], fmt: str, images: str | None = None) -> int:
    """Print the dataset summary; returns 1 when training on it would fail. A dataset
    that cannot even be counted exits with its message, not a traceback."""
    from fer_lightning.data.summary import render, summarize

    try:
        summary = summarize(datamodule_from_overrides(overrides), images=images)
    except (OSError, ValueError, InstantiationException) as error:
        known = user_error(error)  # the line training stops on
        if known is None:
            raise
        raise SystemExit(known.line()) from None
    print(render(summary, fmt))
    return 1 if summary.get("problems") else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    command, options, overrides = parse(sys.argv[1:] if argv is None else argv)
    if command == "summary":
        return print_summary(overrides, options["format"], options.get("images"))
    from fer_lightning.data.preview import write_preview

    dataset = preview_dataset(datamodule_from_overrides(overrides), options["split"])
    path = write_preview(dataset, Path(options["out"]), per_class=int(options["per_class"]))
    print(f"wrote {path}")
    return 0


def preview_dataset(datamodule: FERDataModule, split: str) -> FERDataset:
    """The split as training sees it: with a landmark backend configured, its cached
    landmarks (extracted first if needed); otherwise the source's own, if it ships any."""
    from fer_lightning.data.dataset import FERDataset

    if datamodule.use_landmarks:
        datamodule.prepare_data()
        datamodule.setup("fit")
        return datamodule.datasets[split]
    ships_landmarks = datamodule.source.load(split, 0).landmarks is not None
    return FERDataset(datamodule.source, split, datamodule.image_size, datamodule.channels,
                      with_landmarks=ships_landmarks)


if __name__ == "__main__":
    sys.exit(main())
