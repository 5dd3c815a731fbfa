"""What a configured dataset holds: per-split, per-class counts, skipped rows, landmark rates,
and whatever would stop training on it.

``python -m fer_lightning.data summary data=<name> data.root=<dir> [format=json]
[--verify-images]`` prints ``summarize(datamodule)`` and exits non-zero when the summary
holds ``problems``. The JSON shape is fixed::

    {
      "train": {"<class name>": count, ...},     # one entry per available split, classes
      "val":   {...},                            #   in the source's label order, zeros kept
      "test":  {...},
      "skipped": {"<split>": {"<reason>": rows}},  # rows dropped by a policy, by reason
      "unavailable": {"<split>": "<why>"},       # only when a split does not exist
      "landmarks": {...},                        # only when the datamodule reports them
      "warnings": ["<text>", ...],               # only when something looks wrong
      "problems": ["<text>", ...],               # only when training would fail
      "images": "none|header|full",              # how listed image files were checked
      "source": "<file(s) read and how splits are formed>"
    }

``problems`` are those training stops on before its first epoch (``sources.validate``):
empty splits, fewer than two classes, image files that fail the check. With problems,
landmarks are not extracted.

Split keys are exactly those of ``SPLITS`` that the source can provide; everything else
is an extra field.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from fer_lightning.data.datamodule import FERDataModule
from fer_lightning.data.sources import validate

EXTRA_FIELDS = ("skipped", "unavailable", "landmarks", "warnings", "problems", "images",
                "source")


def landmark_report(datamodule: FERDataModule) -> dict[str, Any] | None:
    """The datamodule's landmark detection report, or None when it has none.

    When the datamodule has landmark caches to fill (``landmarks=<extractor>``), its
    ``prepare_data`` and ``setup`` run first: extraction happens once and is cached, and
    setup fills the report ({split: {"detected", "missed", "rate", "dropped"}}).
    """
    if datamodule.landmark_caches():
        datamodule.prepare_data()
        datamodule.setup("fit")
    return dict(datamodule.landmark_report) or None


def summarize(datamodule: FERDataModule, images: str | None = None) -> dict[str, Any]:
    """Counts of ``datamodule.source`` per split and class, plus the extra fields above.

    ``images`` says how the listed image files are checked (``none | header | full``;
    default: the datamodule's ``check_images``)."""
    source = datamodule.source
    names = list(source.class_names)
    summary: dict[str, Any] = {}
    skipped: dict[str, dict[str, int]] = {}
    for split in datamodule.available_splits:
        info = source.split_info(split)
        counts = np.bincount(info.labels, minlength=len(names))
        summary[split] = {name: int(count) for name, count in zip(names, counts, strict=True)}
        skipped[split] = {reason: int(n) for reason, n in sorted(info.skipped.items())}
    summary["skipped"] = skipped
    if datamodule.unavailable_splits:
        summary["unavailable"] = dict(datamodule.unavailable_splits)
    unlearnable = [name for name, n in summary.get("train", {}).items() if n == 0]
    if unlearnable and sum(summary["train"].values()):
        summary["warnings"] = [f"no training samples of class(es) {', '.join(unlearnable)}"]
    images = datamodule.check_images if images is None else images
    problems = datamodule.dataset_problems(images=images, fit=True)
    if problems:
        summary["problems"] = problems
    else:
        report = landmark_report(datamodule)
        if report is not None:
            summary["landmarks"] = report
    if validate.listed_images(source, datamodule.available_splits):
        summary["images"] = images
    summary["source"] = validate.describe(source)
    return summary


def format_text(summary: dict[str, Any]) -> str:
    """A plain table (classes x splits, with totals) followed by skips and extras."""
    splits = [key for key in summary if key not in EXTRA_FIELDS]
    classes = list(summary[splits[0]]) if splits else []
    width = max([len("class"), *map(len, classes)])
    lines = [f"source: {summary['source']}", ""]
    lines.append("class".ljust(width) + "".join(f"{split:>9}" for split in splits))
    for name in classes:
        lines.append(name.ljust(width) + "".join(f"{summary[s][name]:>9}" for s in splits))
    lines.append("total".ljust(width) + "".join(f"{sum(summary[s].values()):>9}"
                                                 for s in splits))
    lines.append("")
    for split in splits:
        reasons = summary["skipped"].get(split, {})
        detail = ", ".join(f"{reason}: {n}" for reason, n in reasons.items()) or "none"
        lines.append(f"skipped {split}: {sum(reasons.values())} ({detail})")
    for split, why in summary.get("unavailable", {}).items():
        lines.append(f"{split}: unavailable: {why}")
    for split, report in summary.get("landmarks", {}).items():
        lines.append(_landmark_line(split, report))
    lines += [f"warning: {text}" for text in summary.get("warnings", [])]
    checked = {"none": "not checked", "header": "header-checked",
               "full": "fully decoded"}.get(summary.get("images", ""), "")
    problems = summary.get("problems", [])
    if problems:
        lines.append(f"training would fail: {len(problems)} problem(s)")
        lines += [f"  - {problem}" for problem in problems]
    else:
        lines.append("ready to train" + (f" (listed images {checked})" if checked else ""))
    return "\n".join(lines)


def render(summary: dict[str, Any], fmt: str = "text") -> str:
    """``summary`` as ``text`` or ``json``."""
    if fmt == "json":
        return json.dumps(summary, indent=2)
    if fmt == "text":
        return format_text(summary)
    raise ValueError(f"format={fmt!r}; allowed values: ['text', 'json']")


def _landmark_line(split: str, report: Any) -> str:
    """``landmarks train: 32 / 40 faces found (80.0 %), 0 dropped`` (raw JSON otherwise)."""
    if isinstance(report, dict) and {"detected", "missed", "rate"} <= set(report):
        total = report["detected"] + report["missed"]
        return (f"landmarks {split}: {report['detected']} / {total} faces found "
                f"({100 * report['rate']:.1f} %), {report.get('dropped', 0)} dropped")
    return f"landmarks {split}: " + json.dumps(report, sort_keys=True)
