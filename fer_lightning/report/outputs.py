"""Write the report: ``report.md``, ``runs.csv``, ``report.json`` and the terminal tables."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from fer_lightning.report.build import METRIC_LABELS, METRICS, points

DASH = "–"


def fmt_value(value: Any) -> str:
    """An axis or setting value as shown in tables."""
    if value is None or value == "<unset>":
        return DASH
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def fmt_metric(summary: dict[str, Any]) -> str:
    """``72.1 ± 0.8 [70.2, 74.0]`` in points; the interval only with two or more seeds."""
    text = f"{points(summary['mean']):.1f}"
    if summary["std"] is not None:
        text += f" ± {points(summary['std']):.1f}"
    if summary["ci_low"] is not None:
        text += f" [{points(summary['ci_low']):.1f}, {points(summary['ci_high']):.1f}]"
    return text


def fmt_diff(effect: dict[str, Any]) -> tuple[str, str]:
    """(mean difference, interval) in points."""
    mean = f"{points(effect['diff_mean']):+.2f}"
    if effect["ci_low"] is None:
        return mean, DASH
    return mean, f"[{points(effect['ci_low']):+.2f}, {points(effect['ci_high']):+.2f}]"


def fmt_interval(low: float | None, high: float | None, digits: int = 1) -> str:
    """``[+1.2, +3.4]`` of a difference in points, ``–`` without an interval."""
    if low is None or high is None:
        return DASH
    return f"[{points(low):+.{digits}f}, {points(high):+.{digits}f}]"


def fmt_p(value: float | None) -> str:
    return DASH if value is None else (f"{value:.3f}" if value >= 0.001 else "<0.001")


def fmt_count(value: Any) -> str:
    if value is None:
        return DASH
    return f"{value / 1e6:.2f} M" if value >= 1e6 else f"{int(value):,}"


def fmt_seconds(value: float | None) -> str:
    if value is None:
        return DASH
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.1f} min"


def block_title(index: int, block: dict[str, Any]) -> str:
    fixed = block["fixed"]
    parts = [f"data={fmt_value(fixed.get('data'))}", f"model={fmt_value(fixed.get('model'))}"]
    commit = fixed.get("git_commit")
    version = f"v{fixed.get('package_version') or '?'}" + (f" @ {commit[:8]}" if commit else "")
    return f"Block {index}: {', '.join(parts)} ({version}, {block['split']} split, " \
           f"{block['n_runs']} runs)"


def primary_effects(block: dict[str, Any]) -> list[dict[str, Any]]:
    """The block's effects on its headline metric (the verdicts and plots)."""
    return [effect for effect in block["effects"] if effect["metric"] == block["metric"]]


def effect_label(effect: dict[str, Any]) -> str:
    """``axis=b vs a``."""
    return f"{effect['axis']}={fmt_value(effect['b'])} vs {fmt_value(effect['a'])}"


def fmt_axes(axes: dict[str, Any]) -> str:
    """``key=value, key=value`` of a cell's or a condition's axes."""
    return ", ".join(f"{k}={fmt_value(v)}" for k, v in axes.items())


# ---------------------------------------------------------------------- report.md --

def md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |"
              for row in rows]
    return lines + [""]


def cell_rows(block: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a block's cell table."""
    split = block["split"]
    header = [*block["axes"], "n", *(f"{split} {METRIC_LABELS[m]} (%)" for m in METRICS),
              "params", "wall time", "epochs"]
    rows = []
    for cell in block["cells"]:
        rows.append([*(fmt_value(cell["axes"][axis]) for axis in block["axes"]), str(cell["n"]),
                     *(fmt_metric(cell["metrics"][f"{split}/{m}"]) for m in METRICS),
                     fmt_count(cell["num_parameters"]), fmt_seconds(cell["wall_time_s"]),
                     DASH if cell["epochs"] is None else f"{cell['epochs']:g}"])
    return header, rows


def effect_rows(block: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a block's effect table (every metric)."""
    header = ["effect (b vs a)", "metric", "pairs", "b − a (points)", "95 % CI (t)",
              "bootstrap CI", "p (t)", "p (Wilcoxon)", "b better", "seeds for 1 pt"]
    rows = []
    for effect in block["effects"]:
        mean, interval = fmt_diff(effect)
        boot = effect.get("bootstrap_ci")
        rows.append([
            effect_label(effect), effect["metric"], str(effect["n_pairs"]), mean, interval,
            f"[{points(boot[0]):+.2f}, {points(boot[1]):+.2f}]" if boot else DASH,
            fmt_p(effect["p_ttest"]), fmt_p(effect["p_wilcoxon"]),
            f"{effect['wins']}/{effect['n_pairs']}",
            DASH if not effect.get("seeds_needed") else str(effect["seeds_needed"])])
    return header, rows


def _interaction_rows(block: dict[str, Any]) -> list[list[str]]:
    rows = []
    for effect in primary_effects(block):
        for given in effect.get("by", []):
            condition = fmt_axes(given["given"])
            mean, interval = fmt_diff(given)
            rows.append([effect_label(effect), condition, str(given["n_pairs"]), mean,
                         interval])
    return rows


def _class_rows(block: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    effects = [e for e in primary_effects(block) if e.get("per_class")]
    header = ["class", *(effect_label(e) for e in effects)]
    rows = []
    for name in block["class_names"]:
        row = [name]
        for effect in effects:
            delta = effect["per_class"].get(name)
            if delta is None:
                row.append(DASH)
                continue
            excludes_zero = delta["ci_low"] is not None and \
                (delta["ci_low"] > 0 or delta["ci_high"] < 0)
            interval = "" if delta["ci_low"] is None else \
                f" {fmt_interval(delta['ci_low'], delta['ci_high'])}"
            row.append(f"{points(delta['diff_mean']):+.1f}{interval}"
                       + (" *" if excludes_zero else ""))
        rows.append(row)
    return header, rows


def report_markdown(report: dict[str, Any], plots: dict[int, dict[str, str]]) -> str:
    """``report.md``: verdicts, cells, effects, interactions, per-class deltas, plots."""
    blocks, incomplete = report["blocks"], report["incomplete"]
    complete = sum(block["n_runs"] for block in blocks)
    others = other_outputs_line(report)
    lines = ["# Ablation report", "",
             f"{report['n_runs_found']} runs found under {', '.join(report['paths'])}: "
             f"{complete} compared in {len(blocks)} block(s), {len(incomplete)} left out "
             f"(see the end){'; ' + others if others else ''}. Metrics in percentage points; "
             f"intervals are 95 %. How to read this: docs/reporting.md.", ""]
    for index, block in enumerate(blocks, 1):
        lines += [f"## {block_title(index, block)}", ""]
        fixed = {k: v for k, v in block["fixed"].items() if k not in ("data", "model")}
        lines += ["Fixed: " + ", ".join(f"`{k}={fmt_value(v)}`" for k, v in fixed.items()), ""]
        for axis in block["axis_details"]:
            values = " / ".join(fmt_value(v) for v in axis["values"])
            also = f" (changes with it: {', '.join(axis['covarying'])})" \
                if axis["covarying"] else ""
            lines.append(f"- axis `{axis['name']}`: {values}; baseline "
                         f"{fmt_value(axis['baseline'])}{also}")
        seeds = sorted({str(seed) for cell in block["cells"] for seed in cell["seeds"]})
        lines += [f"- replicates: seed {', '.join(seeds)}", ""]
        verdicts = [effect["verdict"] for effect in primary_effects(block)]
        if verdicts:
            lines += [f"### Verdicts ({block['metric']})", ""]
            lines += [f"- {text}" for text in verdicts] + [""]
        if block["warnings"]:
            lines += ["### Warnings", ""] + [f"- {text}" for text in block["warnings"]] + [""]
        lines += [f"### Cells (mean ± std [95 % CI] over seeds, {block['split']} split)", ""]
        lines += md_table(*cell_rows(block))
        if block["effects"]:
            lines += ["### Effects (paired: same other axes, same seed)", ""]
            lines += md_table(*effect_rows(block))
        interactions = _interaction_rows(block)
        if interactions:
            lines += [f"### Effect within each value of the other axes ({block['metric']})", ""]
            lines += md_table(["effect", "given", "pairs", "b − a (points)", "95 % CI"],
                               interactions)
        header, rows = _class_rows(block)
        if len(header) > 1 and rows:
            lines += [f"### Per-class accuracy deltas (points, {block['split']}; b − a "
                      f"[95 % CI]; * the interval excludes 0)", ""]
            lines += md_table(header, rows)
        for title, name in (("Effects", "effects"), ("Cells and seeds", "cells"),
                            ("Validation curves", "curves"), ("Per-class deltas", "per_class")):
            if name in plots.get(index, {}):
                lines += [f"![{title}]({plots[index][name]})", ""]
        if block["notes"]:
            lines += ["Notes:", ""] + [f"- {note}" for note in block["notes"]] + [""]
    if not blocks:
        lines += ["No complete runs to compare.", ""]
    if incomplete:
        lines += ["## Left out", ""]
        lines += md_table(["run", "why"], [[item["path"], item["why"]] for item in incomplete])
    if blocks:
        lines += ["## Method", "", METHOD.format(points=report["options"]["effect_points"]), ""]
    return "\n".join(lines)


#: The methods paragraph of report.md (details: docs/reporting.md).
METHOD = (
    "Cells: mean ± sample standard deviation over seeds with a Student-t 95 % interval of "
    "the mean, clipped to [0, 100] %. Effects: each run is paired with the run that differs "
    "only in the axis (same other axes, same seed); the effect is the mean paired "
    "difference b − a with a paired-t 95 % interval (scipy.stats.ttest_rel), a BCa "
    "bootstrap interval beside it from 10 pairs on (both clipped to [-100, +100] points), "
    "paired-t and Wilcoxon signed-rank p-values, no correction for multiple comparisons. "
    "\"No detectable difference\": the interval covers 0. Seeds needed: pairs for 80 % "
    "power of a two-sided paired t-test at alpha 0.05 to detect {points:g} point at the "
    "observed standard deviation of the differences (noncentral t), divided by the number "
    "of other-axis combinations; not estimated when a compared cell is at chance (within "
    "noise of 1/K) or has runs that predict one class. Cautions name effects with fewer "
    "than 3 pairs and config keys that also differ within an effect's pairs (confounds).")


# ----------------------------------------------------------------------- runs.csv --

def run_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Tidy rows, one per run found: block, axes, seed, metrics, per-class acc, timing;
    runs left out have a status and why."""
    rows = []
    for index, block in enumerate(report["blocks"], 1):
        for run in block["runs"]:
            row = {"block": index, "status": "compared", "why": "", "path": run["path"],
                   "data": block["fixed"].get("data"), "model": block["fixed"].get("model"),
                   "split": block["split"], **run["axes"], "seed": run["seed"]}
            row.update({name: value for name, value in run["metrics"].items()})
            row.update({f"acc_{name}": value for name, value in run["per_class_acc"].items()})
            row.update({key: run.get(key) for key in ("num_parameters", "wall_time_s", "epochs",
                                                      "global_step", "package_version",
                                                      "git_commit", "finished_at")})
            rows.append(row)
    rows += [{"block": "", "status": "left out", "why": item["why"], "path": item["path"]}
             for item in report["incomplete"]]
    return rows


def write_runs_csv(report: dict[str, Any], path: Path) -> None:
    rows = run_rows(report)
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: fmt_csv(value) for key, value in row.items()})


def fmt_csv(value: Any) -> Any:
    if isinstance(value, list | dict):
        return json.dumps(value)
    return "" if value is None else value


def strict(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, inf: an undefined number) as None, so
    that report.json is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: strict(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [strict(item) for item in value]
    return value


def report_json(report: dict[str, Any]) -> str:
    """report.json: strict JSON (no NaN / Infinity tokens; null where a value is
    undefined)."""
    return json.dumps(strict(report), indent=2, default=str, allow_nan=False)


def other_outputs_line(report: dict[str, Any]) -> str:
    """``3 output folders of other commands left out (eval 1, export 1, predict 1)``, or
    "" when there were none."""
    others = report.get("other_outputs") or {}
    if not others:
        return ""
    total = sum(others.values())
    counted = ", ".join(f"{command} {n}" for command, n in others.items())
    return f"{total} output folder{'s' * (total != 1)} of other commands left out ({counted})"


# ------------------------------------------------------------------------ terminal --

def cell_table(block: dict[str, Any]) -> Table:
    """The cells as a terminal table: the block's metric with its std and interval over
    seeds, and the parameters (every metric is in report.md)."""
    split, metric = block["metric"].split("/")
    table = Table(title=f"cells: {split} {METRIC_LABELS[metric]} (points)")
    for axis in block["axes"]:
        widest = max(len(fmt_value(cell["axes"][axis])) for cell in block["cells"])
        table.add_column(axis, min_width=min(widest, 24), overflow="fold")
    for name in ("n", "mean", "std", "95 % CI", "params"):
        table.add_column(name, justify="right", no_wrap=True)
    for cell in block["cells"]:
        summary = cell["metrics"][block["metric"]]
        interval = DASH if summary["ci_low"] is None else \
            f"[{points(summary['ci_low']):.1f}, {points(summary['ci_high']):.1f}]"
        table.add_row(*(Text(fmt_value(cell["axes"][axis])) for axis in block["axes"]),
                      str(cell["n"]), f"{points(summary['mean']):.1f}",
                      DASH if summary["std"] is None else f"{points(summary['std']):.1f}",
                      interval, fmt_count(cell["num_parameters"]))
    return table


def _renderables(report: dict[str, Any], out_dir: Path | None
                 ) -> list[tuple[RenderableType | str, str]]:
    """What the terminal shows, in order: (renderable, kind) with kind ``rule``, ``line``
    (plain text, never wrapped) or ``table``."""
    shown: list[tuple[RenderableType | str, str]] = []
    for index, block in enumerate(report["blocks"], 1):
        shown.append((block_title(index, block), "rule"))
        shown += [(f"  {effect['verdict']}", "line") for effect in primary_effects(block)]
        shown += [(f"  warning: {text}", "line") for text in block["warnings"]]
        shown.append((cell_table(block), "table"))
        shown += [(f"  note: {note}", "line") for note in block["notes"]]
    if report["incomplete"]:
        table = Table(title=f"left out ({len(report['incomplete'])})")
        table.add_column("run", overflow="fold")
        table.add_column("why", overflow="fold")
        for item in report["incomplete"]:
            table.add_row(Text(item["path"]), Text(item["why"]))  # text, never markup
        shown.append((table, "table"))
    if other_outputs_line(report):
        shown.append((other_outputs_line(report), "line"))
    if out_dir is not None:
        shown.append((f"report: {out_dir / 'report.md'}", "line"))
    return shown


def natural_width(renderables: list[RenderableType]) -> int:
    """The width the widest of ``renderables`` takes when nothing limits it."""
    measuring = Console(file=io.StringIO(), width=100_000)
    return max((measuring.measure(item).maximum for item in renderables), default=0)


def print_report(report: dict[str, Any], console: Console, out_dir: Path | None) -> None:
    """Rich tables: per block the verdicts, warnings, cells and notes; then the runs left
    out. On a terminal the tables fit its width; otherwise (a file, a pipe, a cluster log)
    they are printed at their full width, never cropped or folded at 80 columns, and
    lines (verdicts, paths) are never wrapped."""
    shown = _renderables(report, out_dir)
    if not console.is_terminal:
        tables = [item for item, kind in shown if kind == "table"]
        titles = [len(str(item)) + 6 for item, kind in shown if kind == "rule"]
        width = max([console.width, natural_width(tables), *titles])
        console = Console(file=console.file, width=width, no_color=console.no_color,
                          color_system=None, highlight=False)
    for item, kind in shown:
        if kind == "rule":
            console.rule(Text(str(item)))
        elif kind == "line":
            console.print(item, highlight=False, soft_wrap=True, markup=False)
        else:
            console.print(item)
