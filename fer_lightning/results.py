"""What a finished run leaves behind: ``results.json``, the resolved ``config.yaml``, the
printed table of metrics and the provenance record (``provenance.run_record``).

train and eval write their outputs through these functions, so both folders have the
same layout and the report reads them the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from fer_lightning.metrics import SCALAR_METRICS
from fer_lightning.provenance import run_record, utc_now  # noqa: F401  (re-exported)


@rank_zero_only
def write_json(path: Path, content: dict[str, Any]) -> None:
    """Write ``content`` as indented JSON (rank 0 only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2))



@rank_zero_only
def save_resolved_config(cfg: DictConfig, output_dir: Path) -> None:
    """The config with every interpolation resolved, as it ran (rank 0 only)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))



@rank_zero_only
def print_results(results: dict[str, Any]) -> None:
    """A small table of the final val / test metrics."""
    table = Table(title=f"{results['task_name']}: best checkpoint")
    stages = [stage for stage in ("val", "test") if stage in results]
    table.add_column("metric")
    for stage in stages:
        table.add_column(stage, justify="right")
    for name in SCALAR_METRICS:
        table.add_row(name, *[f"{results[stage]['metrics'][name]:.4f}" for stage in stages])
    Console().print(table)
    Console().print(f"results: {results['output_dir']}/results.json")
