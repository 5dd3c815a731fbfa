"""`python -m fer_lightning.export ckpt_path=PATH [format=onnx] [out=FILE]`: an ONNX file
of a trained net, checked against PyTorch on real photos.

The command: the export itself, its metadata and its parity check live in
``fer_lightning.inference.onnx_export`` (the graph's inputs and metadata are described
there and in docs/inference.md); above ``tolerance`` (1e-4) the command fails.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig

from fer_lightning.checks import check_choice
from fer_lightning.cli import answers_help, run_command
from fer_lightning.config import compose_config  # noqa: F401  (registers the resolvers of conf/, ${launch_dir:})
from fer_lightning.errors import ConfigError, ExportError  # noqa: F401  (ExportError re-exported)
from fer_lightning.handles import resolve_checkpoint
from fer_lightning.lazy import exports_of, lazy_exports

#: The export API, also importable from here (imported when first asked for, so that
#: ``--help`` answers before torch is imported).
__getattr__ = lazy_exports(__name__, exports_of(
    "fer_lightning.inference.onnx_export", "OPSET", "TOLERANCE", "ExportReport",
    "PositionalNet", "check_parity", "dynamic_batch", "ensure_onnx", "export_onnx",
    "parity_inputs", "sample_photos", "write_metadata"))

if TYPE_CHECKING:
    from fer_lightning.inference.onnx_export import ExportReport

FORMATS = ("onnx",)


def export(cfg: DictConfig) -> ExportReport:
    """Run ``python -m fer_lightning.export`` for a composed ``conf/export.yaml``."""
    from rich.console import Console

    from fer_lightning.inference.media import collect_inputs, load_image
    from fer_lightning.inference.onnx_export import export_onnx

    check_choice("format", cfg.format, FORMATS)
    cfg.ckpt_path = str(resolve_checkpoint(cfg.ckpt_path, cfg.paths.log_dir))  # handles
    images = None
    if cfg.get("parity_input"):
        images = [load_image(path) for path in collect_inputs(cfg.parity_input).images]
    report = export_onnx(cfg.ckpt_path, cfg.get("out"), images, detect=bool(cfg.detect),
                         opset=int(cfg.opset), tolerance=float(cfg.tolerance))
    batch = "dynamic" if report.dynamic_batch else \
        "fixed at 1 (ms_fpn's region detector runs per image; predict feeds one face at a time)"
    Console(soft_wrap=True).print(
        f"exported {report.path}\n  inputs {report.input_names}, output logits, batch {batch}"
        f"\n  parity on {report.parity_source}: max |ONNX - PyTorch| = "
        f"{report.max_abs_diff:.2e} (batch {report.parity_batch}), "
        f"{report.max_abs_diff_batch1:.2e} (batch 1)")
    return report


@answers_help("export")
@hydra.main(version_base="1.3", config_path="conf", config_name="export")
def main(cfg: DictConfig) -> None:
    """Hydra entry point; errors end with their message and exit status 1."""
    run_command(lambda: export(cfg), also=(ValueError,), prefix=ExportError.prefix)


if __name__ == "__main__":
    main()
