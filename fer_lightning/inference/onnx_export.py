"""ONNX export of a trained net, its metadata and its parity check against PyTorch.

The graph is the net alone: its inputs are the batch keys the net takes after the run's
batch transform (``image``: (B, C, S, S) float32, ``(pixel / 255 - mean) / std`` per
channel, with the landmark overlay already drawn for overlay families; ``landmark_map``:
(B, 1, S, S) in [0, 1] for ``mba`` with landmarks; ``coords``: (B, P, 2)); its output is
``logits`` (B, K). Face detection, cropping and landmark extraction stay outside, as in
``predict`` (``predict backend=onnx`` runs the file with the same pre-processing). The
file's metadata holds the class names, the input names, size, channels, mean and std,
and the whole checkpoint metadata (run config) as JSON, so ``predict`` needs only the
``.onnx`` file. It also holds the SHA-256 of the checkpoint file (``checkpoint_sha256``):
``predict backend=onnx`` uses a ``.onnx`` beside a checkpoint only when that digest
matches, and exports it again otherwise (:func:`ensure_onnx`).

The batch axis is dynamic for every family but the ones that declare they run image by
image (``FERNet.per_image_graph``): ``ms_fpn`` with its emotion-region detector
(landmarks on) exports with a batch of 1. Its detector works image by image
(torchvision's RPN keeps a list of proposals per image, and the best box of each region
is picked per image in Python); tracing unrolls those per-image steps for the traced
batch size, so the graph is only valid for that size. ``predict`` feeds such a file one
face at a time. ``ms_fpn`` without landmarks (global branch only) has a dynamic batch.

Every export is followed by a parity check: max |ONNX - PyTorch| of the logits on real
face photos (matplotlib's grace_hopper, skimage's astronaut when installed, or
``parity_input=``) taken through the run's own pre-processing, at the full batch and at
batch 1; above ``tolerance`` (1e-4) the export fails and ``out`` is left as it was (the
file is written beside it and moved there only after it passed). The legacy TorchScript-based
exporter is used: it gives parity near 1e-7 here and exports in seconds, where the dynamo
exporter took about a minute per net on the same machine.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fer_lightning import checkpoint as ckpt
from fer_lightning.build import build_trained_net
from fer_lightning.data.landmarks.base import MissingBackendError
from fer_lightning.errors import ExportError
from fer_lightning.inference.media import load_image
from fer_lightning.inference.predictor import Predictor
from fer_lightning.inference.runner import (
    DIGEST_KEY,
    ONNX_METADATA_KEY,
    OnnxRunner,
    TorchRunner,
    TrainedModel,
    file_sha256,
    onnx_file_for,
    onnx_provenance,
)
from fer_lightning.inference.tta import TestTimeAugmentation

log = logging.getLogger(__name__)

OPSET = 17
TOLERANCE = 1e-4


class PositionalNet(nn.Module):
    """The net with its batch keys as positional inputs (what ONNX export traces)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.input_keys = tuple(net.input_keys)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.net(**dict(zip(self.input_keys, inputs, strict=True)))



def dynamic_batch(net: nn.Module) -> bool:
    """False for nets that declare a per-image graph (``FERNet.per_image_graph``:
    ms_fpn's region detector)."""
    return not getattr(net, "per_image_graph", False)



@dataclass
class ExportReport:
    """What an export wrote and how well it matches PyTorch."""

    path: Path
    input_names: list[str]
    dynamic_batch: bool
    parity_batch: int
    max_abs_diff: float
    max_abs_diff_batch1: float
    parity_source: str



def sample_photos() -> list[np.ndarray]:
    """Real face photos that ship in installed packages (grace_hopper with matplotlib;
    skimage's astronaut when scikit-image is installed)."""
    import matplotlib.cbook

    photos = [load_image(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))]
    try:
        import skimage.data

        photos.append(skimage.data.astronaut())
    except ImportError:
        pass
    return photos



def parity_inputs(model: TrainedModel, images: list[np.ndarray] | None = None,
                  detect: bool = True) -> tuple[dict[str, torch.Tensor], str]:
    """Net inputs from real photos through the run's pre-processing (the first face of
    each photo detected and cropped, its landmarks, the transform) and their mirror
    images: (inputs, what was used). Without the face detector or landmark packages the
    whole photos are used, without landmarks."""
    images = sample_photos() if images is None else images
    source = f"{len(images)} photos and their mirror images"
    try:
        predictor = Predictor(model, detect=detect)
        faces = [face for image in images for face in predictor.faces(image)[:1]]
        if not faces:
            raise ExportError("no face found in the parity photos; give parity_input=<images> "
                              "or detect=false")
        batch, _ = predictor.raw_batch(faces)
    except MissingBackendError as error:
        log.warning("Parity inputs without face detection / landmarks: %s", error)
        model.extractor = None
        predictor = Predictor(model, detect=False)
        batch, _ = predictor.raw_batch([predictor.faces(image)[0] for image in images])
        source += " (whole images: no face detector / landmark package)"
    transformed = TestTimeAugmentation(model.transform, "flip")(batch)
    return {key: transformed[key].cpu() for key in model.runner.input_keys}, source



def export_onnx(checkpoint_path: str | Path, out: str | Path | None = None,
                images: list[np.ndarray] | None = None, detect: bool = True,
                opset: int = OPSET, tolerance: float = TOLERANCE) -> ExportReport:
    """Export the net of ``checkpoint_path`` to ``out`` (default: the checkpoint's path
    with ``.onnx``), add the metadata (with the checkpoint's SHA-256, which later proves
    which checkpoint the file came from) and check parity (module docstring)."""
    checkpoint_path = Path(checkpoint_path).expanduser()
    checkpoint = ckpt.load_checkpoint(checkpoint_path)
    digest = file_sha256(checkpoint_path)
    net = build_trained_net(checkpoint)
    model = TrainedModel(ckpt.stored_config(checkpoint), ckpt.class_names(checkpoint),
                         TorchRunner(net), checkpoint[ckpt.METADATA_KEY])
    inputs, source = parity_inputs(model, images, detect)
    out = checkpoint_path.with_suffix(".onnx") if out is None else Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    dynamic = dynamic_batch(net)
    keys = list(model.runner.input_keys)
    example = tuple(inputs[key][:1] if not dynamic else inputs[key] for key in keys)
    # Written beside ``out`` and moved over it only once it passed the parity check: a
    # killed or failed export, or two predict jobs exporting at once, never leave a
    # half-written or mismatching file that carries this checkpoint's digest.
    partial = out.with_name(f".{out.name}.{os.getpid()}.partial")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about Python values in the graph
            torch.onnx.export(
                PositionalNet(net).eval(), example, str(partial), input_names=keys,
                output_names=["logits"], opset_version=opset, dynamo=False,
                dynamic_axes={key: {0: "batch"} for key in [*keys, "logits"]} if dynamic
                else None)
        write_metadata(partial, checkpoint, model, dynamic, digest)
        report = check_parity(partial, model, inputs, source, dynamic)
        if not report.max_abs_diff <= tolerance or not report.max_abs_diff_batch1 <= tolerance:
            raise ExportError(f"{out}: ONNX and PyTorch logits differ by up to "
                              f"{max(report.max_abs_diff, report.max_abs_diff_batch1):.3g} "
                              f"(tolerance {tolerance:g}) on {source}; the file was not "
                              f"written")
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    report.path = out
    return report



def write_metadata(path: Path, checkpoint: dict[str, Any], model: TrainedModel,
                   dynamic: bool, checkpoint_sha256: str) -> None:
    """Store the class names, the input contract, the checkpoint metadata and the
    checkpoint file's SHA-256 (``DIGEST_KEY``) in the file."""
    import onnx

    mean, std = model.spec.normalisation()
    properties = {
        ONNX_METADATA_KEY: json.dumps(checkpoint[ckpt.METADATA_KEY]),
        DIGEST_KEY: checkpoint_sha256,
        "class_names": json.dumps(model.class_names),
        "input_names": json.dumps(list(model.runner.input_keys)),
        "image_size": str(model.image_size), "channels": str(model.channels),
        "mean": json.dumps(mean), "std": json.dumps(std),
        "input_normalisation": "image = (pixel / 255 - mean) / std per channel, NCHW float32",
        "landmark_encoding": str(model.encoding or "none"),
        "landmarks": str(model.landmarks_backend or "none"),
        "batch": "dynamic" if dynamic else "1",
    }
    graph = onnx.load(str(path))
    del graph.metadata_props[:]
    for key, value in properties.items():
        graph.metadata_props.add(key=key, value=value)
    graph.doc_string = f"fer_lightning {model.config.model.get('name')}: logits over " \
                       f"{model.class_names}"
    onnx.save(graph, str(path))



def check_parity(path: Path, model: TrainedModel, inputs: dict[str, torch.Tensor],
                 source: str, dynamic: bool) -> ExportReport:
    """max |ONNX - PyTorch| of the logits on ``inputs`` (whole batch, then batch 1)."""
    runner = OnnxRunner(path)
    reference = model.runner(inputs).cpu().numpy()
    exported = runner(inputs).numpy()
    first = {key: value[:1] for key, value in inputs.items()}
    single = runner(first).numpy()
    return ExportReport(path, list(runner.input_keys), dynamic, len(reference),
                        float(np.abs(exported - reference).max()),
                        float(np.abs(single - reference[:1]).max()), source)



def ensure_onnx(checkpoint_path: str | Path, onnx_path: str | Path | None = None) -> Path:
    """``onnx_path`` (default: the checkpoint's path with ``.onnx``) if its metadata
    proves it was exported from this very checkpoint (``runner.onnx_provenance``: the
    SHA-256 of the checkpoint file); otherwise (missing, corrupt, from another checkpoint
    or an older export, replaced) the checkpoint is exported there again, saying why."""
    checkpoint_path = Path(checkpoint_path).expanduser()
    if not checkpoint_path.is_file():
        raise ckpt.CheckpointError(f"ckpt_path={str(checkpoint_path)!r}: no such checkpoint "
                                   f"file")
    path = onnx_file_for(checkpoint_path, onnx_path)
    reason = onnx_provenance(checkpoint_path, path)
    if reason is None:
        return path
    if path.is_file():
        log.warning("Exporting %s again: %s", path, reason)
    report = export_onnx(checkpoint_path, path)
    log.info("Exported %s (parity %.2g)", path, report.max_abs_diff)
    return path
