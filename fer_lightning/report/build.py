"""Assemble the report: blocks of cells, paired effects per axis, per-class deltas and
validation curves, with the warnings of ``flags`` (cells at chance, one-class runs, few
pairs, confounds), in the JSON shape of docs/reporting.md ("report.json")."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fer_lightning.report import flags
from fer_lightning.report.axes import Axis, canonical, constant_settings, find_axes, split_blocks
from fer_lightning.report.discover import METRICS, SPLITS, Run, discover, read_curve
from fer_lightning.report.stats import paired_effect, summarize

__all__ = ["METRICS", "METRIC_LABELS", "SPLITS", "Options", "build_report", "build_block"]

METRIC_LABELS = {"acc": "acc", "mean_class_acc": "mean-class acc", "macro_f1": "macro-F1"}
#: results.json fields copied into each run's entry (and runs.csv row).
RUN_FIELDS = ("num_parameters", "wall_time_s", "epochs", "global_step", "package_version",
              "git_commit", "started_at", "finished_at")


@dataclass
class Options:
    """What the report compares and how (the CLI's flags)."""

    metric: str = "acc"                  # the verdicts' and plots' metric
    split: str | None = None             # None: test when a run has it, else val
    effect_points: float = 1.0           # effect size of the power calculation, in points
    baselines: dict[str, str] = field(default_factory=dict)
    ignore: tuple[str, ...] = ()         # extra config keys that are never axes


def points(fraction: float) -> float:
    """A metric difference in percentage points."""
    return 100.0 * fraction


def verdict(axis: str, a: Any, b: Any, metric: str, effect: dict[str, Any],
            effect_points: float, cautions: list[str] | None = None,
            estimate_seeds: bool = True) -> str:
    """One line: the difference with its interval and pairs, "no detectable difference"
    when the interval covers 0, the seeds a given effect would need at this spread
    (unless ``estimate_seeds`` is false: a compared cell learned nothing), then the
    ``cautions`` (few pairs, cells at chance, confounds)."""
    label = METRIC_LABELS.get(metric.split("/")[-1], metric)
    head = f"{axis}={b} vs {a}: {points(effect['diff_mean']):+.1f} points {label}"
    if effect["ci_low"] is None:
        text = f"{head}, 1 pair: no interval (run more seeds)"
    else:
        low, high = points(effect["ci_low"]), points(effect["ci_high"])
        text = f"{head} [{low:+.1f}, {high:+.1f}], {effect['n_pairs']} pairs"
        if effect["ci_low"] <= 0 <= effect["ci_high"]:
            text += ": no detectable difference"
    size = f"{effect_points:g} point" + ("" if effect_points == 1 else "s")
    if not estimate_seeds:
        text += "; no seeds estimate (a compared cell learned nothing)"
    elif effect.get("seeds_needed"):
        text += (f"; detecting {size} needs {effect['seeds_needed']} seeds "
                 f"({effect['pairs_needed']} pairs) at this spread")
    elif effect.get("sd") is not None and effect.get("pairs_needed") is None:
        text += f"; detecting {size} is out of reach at this spread"
    if cautions:
        text += "; caution: " + "; ".join(cautions)
    return text


def split_of_block(runs: list[Run], wanted: str | None) -> str:
    """The split a block is compared on: ``wanted``, else test when any run has it."""
    if wanted:
        return wanted
    return "test" if any("test" in (run.results or {}) for run in runs) else "val"


def _run_metrics(run: Run, split: str) -> dict[str, float]:
    return {name: float(run.results[split]["metrics"][name]) for name in METRICS}


def _per_class(run: Run, split: str) -> dict[str, float]:
    return {name: float(value) for name, value in
            (run.results[split].get("per_class_acc") or {}).items()}


def _drop_duplicates(runs: list[Run], values: list[dict[str, Any]]
                     ) -> tuple[list[int], list[dict[str, str]]]:
    """Indices of the runs to keep (the newest of each cell and seed) and why the others go."""
    newest: dict[str, int] = {}
    for index, run in enumerate(runs):
        key = canonical([values[index], run.seed])
        if key not in newest or run.finished > runs[newest[key]].finished:
            newest[key] = index
    kept = sorted(newest.values())
    dropped = []
    for index, run in enumerate(runs):
        winner = newest[canonical([values[index], run.seed])]
        if winner != index:
            dropped.append({"path": str(run.path), "why": f"same cell and seed={run.seed} as "
                            f"{runs[winner].path}, which finished later and is used"})
    return kept, dropped


def _value_position(axis: Axis, value: Any) -> int:
    wanted = canonical(value)
    return next(i for i, candidate in enumerate(axis.values) if canonical(candidate) == wanted)


def _cells(axes: list[Axis], runs: list[Run], values: list[dict[str, Any]], split: str,
           metric: str, class_names: list[str]
           ) -> tuple[list[dict[str, Any]], list[list[int]]]:
    """One entry per combination of axis values that has runs, in axis value order, with
    whether it is degenerate (at chance, one-class runs); and the indices of its runs."""
    members: dict[str, list[int]] = defaultdict(list)
    for index, run_values in enumerate(values):
        members[canonical(run_values)].append(index)
    order = sorted(members.values(), key=lambda indices: [
        _value_position(axis, values[indices[0]][axis.name]) for axis in axes])
    cells = []
    for indices in order:
        cell_axes = {axis.name: values[indices[0]][axis.name] for axis in axes}
        cell_runs = sorted((runs[i] for i in indices), key=lambda run: seed_order(run.seed))
        metrics = [_run_metrics(run, split) for run in cell_runs]
        classes = [_per_class(run, split) for run in cell_runs]
        summaries = {name: summarize([m[name] for m in metrics]) for name in METRICS}
        cells.append({
            "axes": cell_axes,
            "n": len(cell_runs),
            "seeds": [run.seed for run in cell_runs],
            "metrics": {f"{split}/{name}": summaries[name] for name in METRICS},
            "chance": 1.0 / len(class_names) if class_names else None,
            "at_chance": flags.at_chance(summaries, cell_runs, split, len(class_names)),
            "one_class_runs": flags.one_class_runs(cell_runs, split, class_names),
            "per_class_acc": {name: float(np.mean([c[name] for c in classes if name in c]))
                              for name in classes[0]},
            "num_parameters": _common([run.results.get("num_parameters") for run in cell_runs]),
            "wall_time_s": _mean([run.results.get("wall_time_s") for run in cell_runs]),
            "epochs": _mean([run.results.get("epochs") for run in cell_runs]),
            "runs": [str(run.path) for run in cell_runs],
            "curve": _curve(cell_runs, f"val/{metric}"),
        })
    return cells, order


def seed_order(seed: Any) -> tuple:
    """Seeds in numeric order (1, 2, 10), other values after them as text."""
    is_number = isinstance(seed, int | float) and not isinstance(seed, bool)
    return (0, seed, "") if is_number else (1, 0, str(seed))


def _common(values: list[Any]) -> Any:
    present = [value for value in values if value is not None]
    if not present:
        return None
    return present[0] if all(value == present[0] for value in present) else \
        float(np.mean(present))


def _mean(values: list[Any]) -> float | None:
    present = [float(value) for value in values if value is not None]
    return float(np.mean(present)) if present else None


def _curve(runs: list[Run], metric: str) -> dict[str, list[float]]:
    """Mean and std over seeds per epoch of ``metric`` during training."""
    by_epoch: dict[int, list[float]] = defaultdict(list)
    for run in runs:
        for epoch, value in read_curve(run.path, metric):
            by_epoch[epoch].append(value)
    epochs = sorted(by_epoch)
    return {"metric": metric, "epochs": epochs,
            "mean": [float(np.mean(by_epoch[e])) for e in epochs],
            "std": [float(np.std(by_epoch[e], ddof=1)) if len(by_epoch[e]) > 1 else 0.0
                    for e in epochs],
            "n": [len(by_epoch[e]) for e in epochs]}


def _pairs(axis: Axis, a: Any, b: Any, axes: list[Axis], runs: list[Run],
           values: list[dict[str, Any]]) -> list[tuple[int, int, str]]:
    """(index of the a run, index of the b run, key of the other axes' values) for runs
    that differ only in ``axis`` (a vs b): equal on every other axis and on seed."""
    others = [other.name for other in axes if other.name != axis.name]
    by_key: dict[Any, dict[str, int]] = {canonical(a): {}, canonical(b): {}}
    for index, run_values in enumerate(values):
        side = canonical(run_values[axis.name])
        if side in by_key:
            stratum = canonical({name: run_values[name] for name in others})
            by_key[side][canonical([stratum, runs[index].seed])] = index
    a_runs, b_runs = by_key[canonical(a)], by_key[canonical(b)]
    pairs = []
    for key in sorted(set(a_runs) & set(b_runs)):
        stratum = canonical({name: values[a_runs[key]][name] for name in others})
        pairs.append((a_runs[key], b_runs[key], stratum))
    return pairs


def _effects(axes: list[Axis], runs: list[Run], values: list[dict[str, Any]], split: str,
             options: Options, notes: list[str], cells: list[dict[str, Any]],
             members: list[list[int]]) -> list[dict[str, Any]]:
    """Paired effect of every non-baseline value of every axis against its baseline, for
    each metric; with per-class deltas, the effect within each other axis value, the keys
    confounded with it and the cautions of its verdict."""
    difference = options.effect_points / 100.0
    metrics = [_run_metrics(run, split) for run in runs]
    classes = [_per_class(run, split) for run in runs]
    keys = flags.treatment_keys(runs, options.ignore)
    effects = []
    for axis in axes:
        unpaired = []
        for b in axis.values[1:]:
            a = axis.baseline
            pairs = _pairs(axis, a, b, axes, runs, values)
            if not pairs:
                unpaired.append(b)
                continue
            strata = len({stratum for _, _, stratum in pairs})
            compared = _compared_cells(pairs, cells, members)
            confounds = flags.confounds(axis.name, pairs, values, keys)
            degenerate = flags.is_degenerate(compared)
            for name in METRICS:
                effect = paired_effect([metrics[i][name] for i, _, _ in pairs],
                                       [metrics[j][name] for _, j, _ in pairs], difference)
                needed = effect["pairs_needed"]
                effect["seeds_needed"] = math.ceil(needed / strata) if needed and \
                    not degenerate else None
                entry = {"axis": axis.name, "a": a, "b": b, "metric": f"{split}/{name}",
                         **effect, "strata": strata, "confounds": confounds}
                entry["cautions"] = flags.effect_cautions(entry, compared)
                entry["verdict"] = verdict(axis.name, a, b, entry["metric"], effect,
                                           options.effect_points, entry["cautions"],
                                           estimate_seeds=not degenerate)
                if name == options.metric:
                    entry["per_class"] = _class_deltas(pairs, classes)
                    entry["by"] = _conditional(axis, pairs, axes, values, metrics, name)
                effects.append(entry)
        if unpaired:
            shown = ", ".join(str(value) for value in unpaired[:5]) + \
                (f" and {len(unpaired) - 5} more" if len(unpaired) > 5 else "")
            notes.append(f"{axis.name}={shown} vs {axis.baseline}: no runs that differ only "
                         f"in {axis.name} (same other axes and seed), so no paired effect")
    return effects


def _compared_cells(pairs: list[tuple[int, int, str]], cells: list[dict[str, Any]],
                    members: list[list[int]]) -> list[dict[str, Any]]:
    """The cells an effect's pairs come from (``members``: each cell's run indices)."""
    paired = {index for i, j, _ in pairs for index in (i, j)}
    return [cell for cell, indices in zip(cells, members, strict=True)
            if paired.intersection(indices)]


def _class_deltas(pairs: list[tuple[int, int, str]], classes: list[dict[str, float]]
                  ) -> dict[str, dict[str, Any]]:
    deltas = {}
    paired = [index for i, j, _ in pairs for index in (i, j)]
    for name in [n for n in classes[pairs[0][0]] if all(n in classes[k] for k in paired)]:
        effect = paired_effect([classes[i][name] for i, _, _ in pairs],
                               [classes[j][name] for _, j, _ in pairs])
        deltas[name] = {key: effect[key] for key in ("diff_mean", "ci_low", "ci_high", "n_pairs")}
    return deltas


def _conditional(axis: Axis, pairs: list[tuple[int, int, str]], axes: list[Axis],
                 values: list[dict[str, Any]], metrics: list[dict[str, float]], name: str
                 ) -> list[dict[str, Any]]:
    """The effect within each value of each other axis (interactions)."""
    conditional = []
    for other in axes:
        if other.name == axis.name:
            continue
        for value in other.values:
            subset = [(i, j) for i, j, _ in pairs
                      if canonical(values[i][other.name]) == canonical(value)]
            if not subset:
                continue
            effect = paired_effect([metrics[i][name] for i, _ in subset],
                                   [metrics[j][name] for _, j in subset])
            conditional.append({"given": {other.name: value},
                                **{key: effect[key] for key in
                                   ("n_pairs", "diff_mean", "ci_low", "ci_high")}})
    return conditional


def build_block(identity: dict[str, Any], runs: list[Run], options: Options
                ) -> tuple[dict[str, Any] | None, list[dict[str, str]]]:
    """One block of the report and the runs it had to leave out (with why)."""
    split = split_of_block(runs, options.split)
    left_out = [{"path": str(run.path),
                 "why": f"no {split} split: results.json holds "
                        f"{', '.join(s for s in SPLITS if s in run.results) or 'no'} metrics "
                        f"only; the other runs of its block are compared on {split}"}
                for run in runs if split not in run.results]
    runs = [run for run in runs if split in run.results]
    if not runs:
        return None, left_out
    axes, values = find_axes(runs, options.ignore, options.baselines)
    kept, duplicates = _drop_duplicates(runs, values)
    runs, values = [runs[i] for i in kept], [values[i] for i in kept]
    notes: list[str] = []
    if split == "val":
        notes.append("no run of this block has a test split: the metrics are on val, the "
                     "split that chose each run's best checkpoint (optimistic)")
    if any(run.results.get("git_dirty") for run in runs):
        notes.append("some runs had uncommitted changes to the code (git_dirty)")
    unknown = sorted(set(options.baselines) - {axis.name for axis in axes})
    if unknown:
        notes.append(f"--baseline for {', '.join(unknown)}: not an axis of this block")
    class_names = list(runs[0].results.get("class_names") or [])
    cells, members = _cells(axes, runs, values, split, options.metric, class_names)
    warnings = [line for cell in cells for line in flags.cell_warnings(
        cell, split, len(class_names))]
    effects = _effects(axes, runs, values, split, options, notes, cells, members)
    block = {
        "fixed": {**identity, **constant_settings(runs, axes)},
        "split": split,
        "metric": f"{split}/{options.metric}",
        "axes": [axis.name for axis in axes],
        "axis_details": [{"name": axis.name, "values": axis.values, "baseline": axis.baseline,
                          "covarying": axis.covarying} for axis in axes],
        "class_names": class_names,
        "n_runs": len(runs),
        "cells": cells,
        "effects": effects,
        "warnings": warnings,
        "notes": notes,
        "runs": [{"path": str(run.path), "seed": run.seed, "axes": values[index],
                  "metrics": _run_metrics(run, split), "per_class_acc": _per_class(run, split),
                  **{key: run.results.get(key) for key in RUN_FIELDS}}
                 for index, run in enumerate(runs)],
    }
    return block, left_out + duplicates


def build_report(paths: list[str | Path], options: Options | None = None) -> dict[str, Any]:
    """The whole report of the runs under ``paths`` (see docs/reporting.md for the shape)."""
    options = options or Options()
    if options.metric not in METRICS:
        raise ValueError(f"metric must be one of {list(METRICS)}, got {options.metric!r}")
    runs, others = discover(paths)
    incomplete = [{"path": str(run.path), "why": run.why} for run in runs if run.why]
    blocks = []
    for identity, members in split_blocks([run for run in runs if run.results is not None]):
        block, left_out = build_block(identity, members, options)
        incomplete += left_out
        if block is not None:
            blocks.append(block)
    return {"paths": [str(path) for path in paths], "n_runs_found": len(runs),
            "other_outputs": others,
            "options": {"metric": options.metric, "split": options.split,
                        "effect_points": options.effect_points, "confidence": 0.95},
            "blocks": blocks, "incomplete": incomplete}
