"""The report's PNG plots (matplotlib, Agg): effect per axis with its interval, each
cell's mean with its seeds as dots, validation curves mean ± std per cell, and a
per-class delta heatmap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from fer_lightning.report.build import METRIC_LABELS, points  # noqa: E402
from fer_lightning.report.outputs import (  # noqa: E402
    effect_label,
    fmt_axes,
    primary_effects,
)


def _label(block: dict[str, Any]) -> str:
    split, metric = block["metric"].split("/")
    return f"{split} {METRIC_LABELS[metric]}"


def _cell_name(cell: dict[str, Any]) -> str:
    return fmt_axes(cell["axes"]) or "all runs"


def plot_effects(block: dict[str, Any], path: Path) -> Path | None:
    """Each effect's mean paired difference with its 95 % interval, a line at 0."""
    effects = primary_effects(block)
    if not effects:
        return None
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(effects) + 1.4))
    for row, effect in enumerate(reversed(effects)):
        mean = points(effect["diff_mean"])
        if effect["ci_low"] is not None:
            low, high = points(effect["ci_low"]), points(effect["ci_high"])
            covers = low <= 0 <= high
            ax.errorbar(mean, row, xerr=[[mean - low], [high - mean]], fmt="o", capsize=4,
                        color="tab:gray" if covers else "tab:blue")
        else:
            ax.plot(mean, row, "o", color="tab:gray")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(effects)),
                  [f"{effect_label(e)} ({e['n_pairs']})" for e in reversed(effects)])
    ax.set_xlabel(f"{_label(block)}: b − a (points), 95 % CI; (pairs)")
    ax.set_title("paired effect per axis (grey: interval covers 0)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_cells(block: dict[str, Any], path: Path) -> Path:
    """Each cell's mean (bar) and 95 % interval (whiskers) with every seed as a dot."""
    cells = block["cells"]
    metric = block["metric"].split("/")[1]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(cells) + 2), 4.8))
    for column, cell in enumerate(cells):
        summary = cell["metrics"][block["metric"]]
        mean = points(summary["mean"])
        ax.hlines(mean, column - 0.3, column + 0.3, color="tab:blue", linewidth=2)
        if summary["ci_low"] is not None:
            ax.vlines(column, points(summary["ci_low"]), points(summary["ci_high"]),
                      color="tab:blue", linewidth=1)
        seeds = [points(run["metrics"][metric]) for run in block["runs"]
                 if run["path"] in cell["runs"]]
        ax.plot([column] * len(seeds), seeds, "o", color="black", markersize=3.5, alpha=0.7)
    ax.set_xticks(range(len(cells)), [_cell_name(c).replace(", ", "\n") for c in cells],
                  fontsize=7, rotation=30, ha="right")
    ax.set_xlim(-0.6, len(cells) - 0.4)
    ax.set_ylabel(f"{_label(block)} (%)")
    ax.set_title("cell mean (bar), 95 % CI (line) and seeds (dots)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_curves(block: dict[str, Any], path: Path) -> Path | None:
    """Validation metric per epoch: mean over seeds with a ± std band, one line per cell."""
    cells = [cell for cell in block["cells"] if cell["curve"]["epochs"]]
    if not cells:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for cell in cells:
        curve = cell["curve"]
        mean = [points(v) for v in curve["mean"]]
        std = [points(v) for v in curve["std"]]
        line, = ax.plot(curve["epochs"], mean, marker=".", label=_cell_name(cell))
        ax.fill_between(curve["epochs"], [m - s for m, s in zip(mean, std, strict=True)],
                        [m + s for m, s in zip(mean, std, strict=True)],
                        color=line.get_color(), alpha=0.15)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{cells[0]['curve']['metric']} (%)")
    ax.set_title("validation during training: mean ± std over seeds")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _delta_text(delta: dict[str, Any] | None) -> str:
    """``+13.1`` over ``[+10.2, +16.0]`` (points), ``*`` when the interval excludes 0."""
    if delta is None:
        return "–"
    text = f"{points(delta['diff_mean']):+.1f}"
    if delta["ci_low"] is None:
        return text
    low, high = points(delta["ci_low"]), points(delta["ci_high"])
    star = " *" if low > 0 or high < 0 else ""
    return f"{text}{star}\n[{low:+.1f}, {high:+.1f}]"


def plot_per_class(block: dict[str, Any], path: Path) -> Path | None:
    """Heatmap of per-class accuracy deltas (points) per effect, each cell with its mean
    difference and 95 % interval (``*``: the interval excludes 0)."""
    effects = [e for e in primary_effects(block) if e.get("per_class")]
    classes = block["class_names"]
    if not effects or not classes:
        return None
    deltas = [[e["per_class"].get(name) for e in effects] for name in classes]
    grid = [[points(d["diff_mean"]) if d is not None else 0.0 for d in row] for row in deltas]
    limit = max(1.0, max(abs(v) for row in grid for v in row))
    fig, ax = plt.subplots(figsize=(2.0 * len(effects) + 2.5, 0.7 * len(classes) + 1.8))
    image = ax.imshow(grid, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    for r, row in enumerate(grid):
        for c, value in enumerate(row):
            ax.text(c, r, _delta_text(deltas[r][c]), ha="center", va="center", fontsize=7,
                    color="white" if abs(value) > 0.6 * limit else "black")
    ax.set_xticks(range(len(effects)),
                  [effect_label(e).replace("=", "=\n", 1) for e in effects],
                  fontsize=8)
    ax.set_yticks(range(len(classes)), classes)
    fig.colorbar(image, ax=ax, label="accuracy b − a (points)")
    ax.set_title(f"per-class {block['split']} accuracy deltas, b − a [95 % CI]; "
                 f"* excludes 0", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_plots(report: dict[str, Any], out_dir: Path) -> dict[int, dict[str, str]]:
    """Every plot of every block as ``block<i>-<kind>.png``; {block: {kind: file name}}."""
    written: dict[int, dict[str, str]] = {}
    for index, block in enumerate(report["blocks"], 1):
        written[index] = {}
        for kind, plot in (("effects", plot_effects), ("cells", plot_cells),
                           ("curves", plot_curves), ("per_class", plot_per_class)):
            path = plot(block, out_dir / f"block{index}-{kind}.png")
            if path is not None:
                written[index][kind] = path.name
    return written
