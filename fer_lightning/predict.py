"""`python -m fer_lightning.predict [ckpt_path=PATH] input=PATH [out=DIR]`: expressions of
the faces in photos, folders of photos and videos, from a trained checkpoint (without
ckpt_path: the FER2013 model `make weights` imports, docs/pretrained.md).

The command: ``fer_lightning.inference`` holds the Python API it runs (``Predictor``,
which finds, crops and classifies faces the way the run's training images were) and the
media I/O. ``detect=false`` treats every image as one face crop. Several faces per image
each get a row: file, frame (videos), box, detector score, label and the probability of
every class; an image without a face gets a ``no_face`` row, an unreadable file (or an
image over ``max_pixels``) an ``unreadable`` row and a video that stops early a
``truncated`` row, so nothing disappears from the output. ``backend=onnx`` with a
``.ckpt`` uses ``<checkpoint>.onnx`` when its metadata holds this checkpoint's SHA-256,
and exports it there first otherwise.

``from fer_lightning.predict import Predictor`` keeps working (re-exported)::

    predictor = Predictor.from_checkpoint("best.ckpt")
    for face in predictor.predict("photo.jpg"):
        print(face.box, face.label, face.probabilities)
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
import numpy as np
from omegaconf import DictConfig
from PIL import Image

from fer_lightning.checks import check_choice
from fer_lightning.cli import answers_help, run_command
from fer_lightning.config import compose_config  # noqa: F401  (registers the resolvers of conf/, ${launch_dir:})
from fer_lightning.errors import ConfigError
from fer_lightning.handles import resolve_checkpoint, synthetic_warning, trained_on_synthetic
from fer_lightning.inference.media import (  # noqa: F401  (the media API, also importable here)
    IMAGE_SUFFIXES,
    MAX_PIXELS,
    VIDEO_SUFFIXES,
    DecodeWatch,
    ImageTooLargeError,
    Inputs,
    PredictionWriter,
    VideoHeader,
    VideoWriter,
    annotate,
    collect_inputs,
    image_box,
    load_image,
    truncation,
    video_frames,
    video_info,
)
from fer_lightning.lazy import exports_of, lazy_exports

if TYPE_CHECKING:
    from fer_lightning.inference.predictor import FacePrediction, Predictor
    from fer_lightning.inference.runner import TrainedModel

#: The Python API, also importable from here; imported when first asked for, so that
#: ``--help`` and argument errors answer before torch is imported.
__getattr__ = lazy_exports(__name__, exports_of(
    "fer_lightning.inference.predictor", "BACKENDS", "DEFAULT_DETECTOR", "PRECROPPED_MARGIN",
    "FacePrediction", "Predictor", "face_cropper"))

log = logging.getLogger(__name__)


@dataclass
class PendingFrame:
    index: int
    time: float | None
    image: np.ndarray
    sampled: bool


class PredictRun:
    """What one ``predict`` command does: every input through the predictor, rows to the
    writer, annotated copies (``annotate=true``) under ``<out>/annotated/``."""

    def __init__(self, predictor: Predictor, out: Path, every: int = 1,
                 annotate_output: bool = False, progress: Any = None) -> None:
        if every < 1:
            raise ConfigError(f"every must be a positive integer, got {every}")
        self.predictor, self.out, self.every = predictor, out, every
        self.annotate = annotate_output
        self.writer = PredictionWriter(out, predictor.class_names)
        self.progress = progress

    def _advance(self, task: Any, amount: int = 1) -> None:
        if self.progress is not None and task is not None:
            self.progress.advance(task, amount)

    def images(self, inputs: Inputs, task: Any = None) -> None:
        """Every image, ``batch_size`` images per predictor call."""
        size = self.predictor.batch_size
        for start in range(0, len(inputs.images), size):
            files = inputs.images[start:start + size]
            loaded, errors = {}, {}
            for file in files:
                try:
                    loaded[file] = load_image(file, self.predictor.max_pixels)
                except (OSError, ValueError, Image.DecompressionBombError) as error:
                    errors[file] = str(error).splitlines()[0]
            predictions = dict(zip(loaded, self.predictor.predict_many(list(loaded.values())),
                                   strict=True))
            for file in files:
                name = self._name(file, inputs.root)
                self.writer.write(name, None, None, predictions.get(file), errors.get(file))
                if self.annotate and file in loaded:
                    target = self.out / "annotated" / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(annotate(loaded[file], predictions[file])).save(target)
            self._advance(task, len(files))

    def video(self, path: Path, root: Path, task: Any = None) -> None:
        """Every ``every``-th frame, batched; the annotated video shows every frame with
        the latest sampled frame's faces. A video that cannot be opened gets an
        ``unreadable`` row; one whose decoding fails part-way, or that ends before the
        frames its header declares, keeps the rows of its decoded frames plus a
        ``truncated`` row saying where it stopped; the folder goes on either way."""
        name = self._name(path, root)
        try:
            header = video_info(path)
            watch = DecodeWatch(video_frames(path))
            writer = VideoWriter((self.out / "annotated" / name).with_suffix(".mp4"),
                                 header.fps) if self.annotate else None
        except Exception as error:  # noqa: BLE001 - PyAV raises many types for bad files
            self.writer.write(name, None, None, None, str(error).splitlines()[0])
            return
        pending: list[PendingFrame] = []
        latest: list[FacePrediction] = []
        try:
            for index, time, frame in watch:
                sampled = index % self.every == 0
                if sampled or writer is not None:
                    pending.append(PendingFrame(index, time, frame.to_ndarray(format="rgb24"),
                                                sampled))
                if sum(p.sampled for p in pending) >= self.predictor.batch_size \
                        or len(pending) >= 4 * self.predictor.batch_size:
                    latest = self._flush(name, pending, latest, writer)
                    self._advance(task, len(pending))
                    pending = []
            latest = self._flush(name, pending, latest, writer)
            self._advance(task, len(pending))
        finally:
            if writer is not None:
                writer.close()
        self._report_decoding(name, header, watch)

    def _report_decoding(self, name: str, header: VideoHeader, watch: DecodeWatch) -> None:
        """The row of a video that decoded no frame, or stopped early (``video``)."""
        short = truncation(header, watch.decoded)
        if watch.decoded == 0:
            why = watch.error or ("no frame could be decoded" +
                                  (f" (its header {'declares' if header.declared else 'implies'}"
                                   f" {header.frames})" if header.frames else ""))
            self.writer.write(name, None, None, None, why)
        elif watch.error is not None or short is not None:
            where = f"decoding failed after frame {watch.decoded - 1} ({watch.error})" \
                if watch.error is not None else short
            if watch.error is not None and short is not None:
                where += f"; {short}"
            self.writer.note(name, f"truncated: {where}", "truncated")
            log.warning("%s is truncated: %s", name, where)

    def _flush(self, name: str, pending: list[PendingFrame], latest: list[FacePrediction],
               writer: VideoWriter | None) -> list[FacePrediction]:
        sampled = [p for p in pending if p.sampled]
        results = iter(self.predictor.predict_many([p.image for p in sampled]))
        for frame in pending:
            if frame.sampled:
                latest = next(results)
                self.writer.write(name, frame.index, frame.time, latest)
            if writer is not None:
                writer.write(annotate(frame.image, latest))
        return latest

    @staticmethod
    def _name(file: Path, root: Path) -> str:
        return str(file.relative_to(root)) if file.is_relative_to(root) else str(file)

    def close(self) -> None:
        self.writer.close()


def checkpoint_to_use(cfg: DictConfig) -> str:
    """``ckpt_path``, or without one the imported FER2013 model at ``default_ckpt`` (made
    by ``make weights``), said on the terminal; ConfigError when neither exists."""
    if cfg.get("ckpt_path"):  # a file, a run folder, best or last (fer_lightning.handles)
        return str(resolve_checkpoint(cfg.ckpt_path, cfg.paths.log_dir, (".ckpt", ".onnx")))
    import fer_lightning.checkpoint as ckpt

    default = Path(str(cfg.default_ckpt))
    if not default.is_file():
        raise ConfigError(f"no ckpt_path given, and the imported FER2013 model {default} is "
                          f"missing: run `make weights` (docs/pretrained.md), or give "
                          f"ckpt_path=<your .ckpt or .onnx>")
    provenance = ckpt.load_checkpoint(default)[ckpt.METADATA_KEY].get("provenance") or {}
    log.warning("No ckpt_path: using the imported FER2013 mini_XCEPTION %s (%s, licence "
                "%s; trained on %s)", default, provenance.get("name", "?"),
                provenance.get("licence", "?"), provenance.get("trained_on", "?"))
    return str(default)


def predict(cfg: DictConfig) -> dict[str, Any]:
    """Run ``python -m fer_lightning.predict`` for a composed ``conf/predict.yaml``;
    returns the counts it prints (images, faces, no_face, unreadable, skipped, labels)."""
    from rich.console import Console
    from rich.progress import Progress

    from fer_lightning.inference.onnx_export import ensure_onnx
    from fer_lightning.inference.predictor import BACKENDS, Predictor

    inputs = collect_inputs(cfg.input)
    check_choice("backend", str(cfg.backend), BACKENDS)
    ckpt_path = checkpoint_to_use(cfg)
    onnx_path = cfg.get("onnx_path")
    if str(cfg.backend) == "onnx" and Path(ckpt_path).suffix != ".onnx":
        onnx_path = ensure_onnx(ckpt_path, onnx_path)  # the command exports, never Predictor
    try:
        predictor = Predictor.from_checkpoint(
            ckpt_path, backend=str(cfg.backend), onnx_path=onnx_path,
            device=str(cfg.device), landmarks=cfg.get("landmarks"), detect=bool(cfg.detect),
            detector=cfg.get("detector"), margin=cfg.get("margin"),
            margin_px=cfg.get("margin_px"), resize=str(cfg.get("resize", "antialias")),
            batch_size=int(cfg.batch_size), tta=str(cfg.tta), tta_crop=float(cfg.tta_crop),
            max_pixels=cfg.get("max_pixels", MAX_PIXELS))
    except ConfigError:
        raise
    except ValueError as error:
        raise ConfigError(str(error)) from None
    console = Console(soft_wrap=True)
    backend, warnings = backend_line(predictor), model_warnings(predictor.model, ckpt_path)
    console.print(f"backend: {backend}", highlight=False, markup=False)
    for warning in warnings:
        console.print(f"warning: {warning}", style="bold yellow", highlight=False, markup=False)
    out = Path(cfg.out)
    with Progress(transient=False, disable=not cfg.get("progress", True)) as progress:
        run = PredictRun(predictor, out, int(cfg.every), bool(cfg.annotate), progress)
        try:
            if inputs.images:
                run.images(inputs, progress.add_task("images", total=len(inputs.images)))
            for video in inputs.videos:
                try:
                    total = video_info(video).frames
                except Exception:  # noqa: BLE001 - reported as unreadable by run.video
                    total = 0
                run.video(video, inputs.root, progress.add_task(video.name, total=total or None))
        finally:
            run.close()
    counts = run.writer.counts
    summary = {"images": counts["images"], "faces": counts["faces"],
               "no_face": counts["no_face"], "unreadable": counts["unreadable"],
               "truncated": counts["truncated"],
               "skipped": [str(p) for p in inputs.skipped],
               "labels": {key[6:]: n for key, n in sorted(counts.items())
                          if key.startswith("label:")},
               "predictions": str(run.writer.csv_path), "backend": backend,
               "warnings": warnings}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    console.print(f"{summary['images']} images / frames: {summary['faces']} faces, "
                  f"{summary['no_face']} without a face, {summary['unreadable']} unreadable")
    if summary["truncated"]:
        console.print(f"{summary['truncated']} videos stopped before their end (a "
                      f"'truncated' row each says where)")
    if inputs.skipped:
        console.print(f"skipped {len(inputs.skipped)} files that are neither images nor "
                      f"videos: {', '.join(map(str, inputs.skipped[:5]))}"
                      f"{' ...' if len(inputs.skipped) > 5 else ''}")
    console.print(f"labels: {summary['labels']}")
    console.print(f"predictions: {run.writer.csv_path} and {run.writer.jsonl_path} "
                  f"(counts: {out / 'summary.json'})", highlight=False, markup=False)
    return summary


def backend_line(predictor: Predictor) -> str:
    """Which engine ran the net, where, and on which file (what predict prints first)."""
    runner = predictor.model.runner
    if getattr(runner, "backend", "torch") == "onnx":
        return f"onnx (onnxruntime on the CPU, {runner.path})"
    return f"torch (PyTorch on {runner.device})"


def model_warnings(model: TrainedModel, checkpoint: str | Path) -> list[str]:
    """What a user must know before trusting the labels: a demo checkpoint trained on
    synthetic faces."""
    trained = model.metadata
    if trained_on_synthetic(trained.get("config"), trained.get("choices")):
        return [synthetic_warning(checkpoint)]
    return []


@answers_help("predict")
@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    """Hydra entry point; config and checkpoint errors end with their message, exit 1."""
    run_command(lambda: predict(cfg))


if __name__ == "__main__":
    main()
