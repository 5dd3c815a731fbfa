"""What makes a cell or an effect untrustworthy, for the verdicts (docs/reporting.md,
"Warnings in the verdicts").

- A cell is *at chance* when its accuracy or its mean-class accuracy is within noise of
  1/K (K classes): within the cell's 95 % interval over seeds, or within 1.96 binomial
  standard errors of a classifier at chance on the split's faces (from the confusion
  matrix in results.json). Mean-class accuracy is 1/K for any classifier that ignores the
  image, however unbalanced the classes, so it also catches a net that learned the class
  frequencies only.
- A run *predicts one class* when every face of the split falls in one column of its
  confusion matrix (rows: true class, columns: predicted class).
- An effect is *confounded* with a config key when the key also differs within some of
  its pairs and is not set by the axis value alone: on a grid that is not factorial
  (``optimizer.lr`` changed in one cell only) the difference then holds two changes.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from fer_lightning.keys import SEED, is_bookkeeping
from fer_lightning.report.axes import UNSET, canonical, flatten
from fer_lightning.report.discover import Run

#: The normal quantile of a two-sided 95 % band.
Z95 = 1.959963984540054
#: Metrics whose chance level is 1/K.
CHANCE_METRICS = ("acc", "mean_class_acc")
#: Fewer pairs than this: an effect's interval and spread rest on too few differences.
MIN_PAIRS = 3


def confusion(run: Run, split: str) -> list[list[int]]:
    """The run's confusion matrix on ``split`` (rows: true class), [] when not recorded."""
    return run.results[split].get("confusion_matrix") or []


def only_class(matrix: list[list[int]], class_names: Sequence[str]) -> str | None:
    """The class a run predicted for every face (None when it predicted several, or
    without a confusion matrix)."""
    predicted = [column for column in range(len(matrix))
                 if any(row[column] for row in matrix)]
    if len(predicted) != 1:
        return None
    column = predicted[0]
    return class_names[column] if column < len(class_names) else f"class {column}"


def _chance_variances(matrix: list[list[int]], chance: float) -> tuple[float, float] | None:
    """Binomial variances of acc and of mean-class acc of a classifier at chance on the
    faces of ``matrix`` (None without faces)."""
    per_class = [sum(row) for row in matrix if sum(row) > 0]
    if not per_class:
        return None
    spread = chance * (1 - chance)
    mean_class = sum(spread / n for n in per_class) / len(per_class) ** 2
    return spread / sum(per_class), mean_class


def at_chance(summaries: dict[str, dict[str, Any]], runs: list[Run], split: str,
              num_classes: int) -> list[str]:
    """The metrics of ``CHANCE_METRICS`` on which a cell (its ``summaries`` by metric name
    and its ``runs``) is within noise of 1/K."""
    if num_classes < 2:
        return []
    chance = 1.0 / num_classes
    variances = [v for run in runs if (v := _chance_variances(confusion(run, split), chance))]
    found = []
    for index, name in enumerate(CHANCE_METRICS):
        summary = summaries[name]
        in_interval = summary["ci_low"] is not None and \
            summary["ci_low"] <= chance <= summary["ci_high"]
        binomial = False
        if variances:
            error = math.sqrt(sum(v[index] for v in variances) / len(variances) / len(runs))
            binomial = abs(summary["mean"] - chance) <= Z95 * error
        if in_interval or binomial:
            found.append(name)
    return found


def cell_label(cell: dict[str, Any]) -> str:
    """``landmarks=none, head=gap`` (``all runs`` for a block without axes)."""
    return ", ".join(f"{key}={_text(value)}" for key, value in cell["axes"].items()) \
        or "all runs"


def cell_warnings(cell: dict[str, Any], split: str, num_classes: int) -> list[str]:
    """The block's warning lines about one cell: at chance, runs that predict one class."""
    label = f"cell {cell_label(cell)}" if cell["axes"] else "all runs"
    warnings = []
    for name in cell["at_chance"]:
        summary = cell["metrics"][f"{split}/{name}"]
        shown = "acc" if name == "acc" else "mean-class acc"
        interval = "" if summary["ci_low"] is None else \
            f" [{100 * summary['ci_low']:.1f}, {100 * summary['ci_high']:.1f}]"
        warnings.append(f"{label}: at chance, {split} {shown} {100 * summary['mean']:.1f} %"
                        f"{interval} vs 1/{num_classes} = {100 / num_classes:.1f} %")
    if cell["one_class_runs"]:
        classes = sorted({item["class"] for item in cell["one_class_runs"]})
        warnings.append(f"{label}: {len(cell['one_class_runs'])} of {cell['n']} runs predict "
                        f"one class for every {split} face ({', '.join(classes)})")
    return warnings


def one_class_runs(runs: list[Run], split: str, class_names: Sequence[str]
                   ) -> list[dict[str, str]]:
    """``{"path", "class"}`` of each run that predicted one class for every face."""
    found = []
    for run in runs:
        name = only_class(confusion(run, split), class_names)
        if name is not None:
            found.append({"path": str(run.path), "class": name})
    return found


def treatment_keys(runs: list[Run], ignore: tuple[str, ...]) -> list[dict[str, str]]:
    """Each run's config keys that may define a treatment (no bookkeeping, no seed), as
    canonical values."""
    return [{key: canonical(value) for key, value in flatten(run.config or {}).items()
             if key != SEED and not is_bookkeeping(key, ignore)} for run in runs]


def confounds(axis: str, pairs: list[tuple[int, int, str]], values: list[dict[str, Any]],
              keys: list[dict[str, str]]) -> list[dict[str, Any]]:
    """The config keys that differ within some of an effect's ``pairs`` (indices into
    ``values`` / ``keys``) without being set by the axis value alone: ``{"key", "pairs"}``
    with the number of pairs in which the key differs."""
    members = sorted({index for i, j, _ in pairs for index in (i, j)})
    differing: dict[str, int] = defaultdict(int)
    for i, j, _ in pairs:
        for key in keys[i].keys() | keys[j].keys():
            if key != axis and keys[i].get(key, UNSET) != keys[j].get(key, UNSET):
                differing[key] += 1
    found = []
    for key, count in sorted(differing.items()):
        by_value: dict[str, set[str]] = defaultdict(set)
        for index in members:
            by_value[canonical(values[index][axis])].add(keys[index].get(key, UNSET))
        if any(len(seen) > 1 for seen in by_value.values()):
            found.append({"key": key, "pairs": count})
    return found


def effect_cautions(effect: dict[str, Any], cells: list[dict[str, Any]]) -> list[str]:
    """Why an effect's verdict needs care: fewer than 3 pairs, cells at chance or with
    one-class runs among those it compares, keys that change with it in some pairs."""
    cautions = []
    if effect["n_pairs"] < MIN_PAIRS:
        cautions.append(f"only {effect['n_pairs']} pair{'s' * (effect['n_pairs'] != 1)} "
                        f"(fewer than {MIN_PAIRS})")
    chance = [cell for cell in cells if cell["at_chance"]]
    if chance:
        cautions.append(f"{_count(chance, cells)} at chance ({_labels(chance)})")
    collapsed = [cell for cell in cells if cell["one_class_runs"]]
    if collapsed:
        cautions.append(f"{_count(collapsed, cells)} with runs that predict one class "
                        f"({_labels(collapsed)})")
    pairs = effect["n_pairs"]
    for item in effect.get("confounds", []):
        cautions.append(f"confounded: {item['key']} also differs in {item['pairs']} of "
                        f"{pairs} pairs")
    return cautions


def is_degenerate(cells: list[dict[str, Any]]) -> bool:
    """True when a compared cell is at chance or has a run that predicts one class: an
    effect's spread then says nothing about how many seeds a real difference needs."""
    return any(cell["at_chance"] or cell["one_class_runs"] for cell in cells)


def _count(some: list[dict[str, Any]], cells: list[dict[str, Any]]) -> str:
    return f"{len(some)} of its {len(cells)} cells"


def _labels(cells: list[dict[str, Any]], limit: int = 3) -> str:
    labels = [cell_label(cell) for cell in cells]
    shown = "; ".join(labels[:limit])
    return shown + (f"; and {len(labels) - limit} more" if len(labels) > limit else "")


def _text(value: Any) -> str:
    if value is None or value == UNSET:
        return "–"
    return f"{value:g}" if isinstance(value, float) else str(value)
