"""A trained net with what applying it needs, rebuilt from a checkpoint or an ONNX export.

Applying a FER model to new images must repeat what training did to its images, or
accuracy drops without a word: the same input size, channels and normalisation, the same
landmark backend and encoding. :class:`TrainedModel` takes all of it from the run config
stored in the checkpoint (``fer_lightning.checkpoint``) or in the ONNX file's metadata
(``fer_lightning.export``) and reuses the training code for each step:
``data.dataset.image_to_tensor`` (resize, channels), the ``BatchTransform`` the
datamodule builds (landmark encoding, normalisation) and the ``LandmarkPipeline`` the
landmark cache builds (extractor, quality filter, photo face cropper), both from the
stored ``LandmarksConfig``.

Landmarks at inference: a net that consumes them (``overlay``, ``heatmap`` or ``coords``
encodings) gets them from the run's own backend. A run trained on ``groundtruth``
landmarks (the synthetic faces) has no backend; photos then get dlib's 68 points, the
same iBUG scheme. ``ms_fpn`` uses landmarks only as training targets and needs none.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from fer_lightning import checkpoint as ckpt
from fer_lightning.build import build_trained_net
from fer_lightning.data.landmarks.base import Extractor
from fer_lightning.data.landmarks.config import ENCODING_INPUT, LandmarksConfig
from fer_lightning.data.landmarks.pipeline import LandmarkPipeline, build_pipeline
from fer_lightning.data.transforms import BatchTransform
from fer_lightning.errors import ConfigError
from fer_lightning.input_spec import input_spec, resolve_precropped

#: The backend that stands in for ``groundtruth`` landmarks on photos (68 iBUG points).
GROUNDTRUTH_STANDIN = "dlib"
#: ONNX metadata key holding the checkpoint metadata as JSON (written by ``export``).
ONNX_METADATA_KEY = "fer_lightning"
#: ONNX metadata key of the SHA-256 of the checkpoint file the net was exported from.
DIGEST_KEY = "checkpoint_sha256"


def onnx_file_for(checkpoint_path: str | Path, onnx_path: str | Path | None = None) -> Path:
    """The ONNX export of a checkpoint: ``onnx_path``, default the checkpoint's path with
    ``.onnx``."""
    checkpoint_path = Path(checkpoint_path).expanduser()
    return checkpoint_path.with_suffix(".onnx") if onnx_path is None else Path(onnx_path)


def file_sha256(path: str | Path) -> str:
    """The SHA-256 hex digest of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def onnx_provenance(checkpoint_path: str | Path, onnx_path: Path) -> str | None:
    """None when ``onnx_path`` was exported from the checkpoint file ``checkpoint_path``
    as it is now (its :data:`DIGEST_KEY` metadata is the checkpoint's SHA-256), else why
    not. File times prove nothing: a copied or replaced file can be newer."""
    import onnx
    from google.protobuf.message import DecodeError

    if not onnx_path.is_file():
        return "it does not exist"
    try:
        graph = onnx.load(str(onnx_path), load_external_data=False)
    except (DecodeError, OSError, ValueError, RuntimeError) as error:
        return f"it is not a readable ONNX file ({ckpt.first_line(error)})"
    stored = {prop.key: prop.value for prop in graph.metadata_props}.get(DIGEST_KEY)
    if stored is None:
        return "it does not say which checkpoint it was exported from"
    if stored != file_sha256(Path(checkpoint_path).expanduser()):
        return "it was exported from another checkpoint (or this one changed since)"
    return None


def input_pipelines(cfg: DictConfig) -> tuple[nn.Module, LandmarkPipeline | None]:
    """(the run's batch transform, its landmark pipeline or None), built from the stored
    config the way the datamodule and the landmark cache build them: the transform
    renders the net's landmark encoding and normalises; the pipeline is the landmarks
    group's extractor with its quality filter and, when the run's images were photos, the
    face cropper that framed them."""
    landmarks = LandmarksConfig.from_mapping(cfg.landmarks)
    spec = input_spec(cfg)
    mean, std = spec.normalisation()
    transform = BatchTransform(spec.encoding, landmarks, mean=mean, std=std)
    if not landmarks.extracts:
        return transform, None
    return transform, build_pipeline(landmarks, spec.precropped)


def landmarks_config(cfg: DictConfig, backend: str | None = None) -> DictConfig:
    """The run's ``landmarks`` node for inference: its own backend, or ``backend``
    (dlib | mediapipe | mtcnn) in its place, or dlib for ``groundtruth``; the encoding
    options and the photo / pre-cropped setting stay the run's."""
    landmarks = OmegaConf.create(OmegaConf.to_container(cfg.landmarks))
    if backend is None and (landmarks.get("extractor") or not landmarks.get("enabled")):
        return landmarks
    backend = backend or GROUNDTRUTH_STANDIN
    group = compose_group("landmarks", backend)
    if not group.landmarks.get("extractor"):
        raise ConfigError(f"landmarks={backend} has no extractor; use dlib, mediapipe or "
                          f"mtcnn for photos")
    resolved = OmegaConf.to_container(group, resolve=True)["landmarks"]
    with open_dict(landmarks):
        landmarks.name = backend
        for key in ("extractor", "cache_dir", "quality", "task_model_path"):
            if key in resolved:
                landmarks[key] = resolved[key]
        if landmarks.get("precropped") is None:
            landmarks.precropped = resolve_precropped(cfg)
    return landmarks


def compose_group(group: str, option: str) -> DictConfig:
    """The train config composed with ``group=option`` (for one group's node), inside a
    running Hydra app or outside one."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    try:
        if GlobalHydra.instance().is_initialized():
            return compose("train", overrides=[f"{group}={option}"])
        with initialize_config_module(config_module="fer_lightning.conf", version_base="1.3"):
            return compose("train", overrides=[f"{group}={option}"])
    except HydraException as error:
        raise ConfigError(str(error).splitlines()[0]) from None


class TorchRunner:
    """Runs the PyTorch net on ``device``."""

    backend = "torch"

    def __init__(self, net: nn.Module, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.input_keys: tuple[str, ...] = tuple(net.input_keys)

    def __call__(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        with torch.inference_mode():
            return self.net(**{key: inputs[key].to(self.device) for key in self.input_keys})


class OnnxRunner:
    """Runs an exported ONNX file with onnxruntime (CPU); a file onnxruntime cannot load
    is a CheckpointError naming it."""

    backend = "onnx"

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only (not ms_fpn's empty-RoI shape notes)
        # Idle workers must not spin: predict alternates onnxruntime with the face
        # detector (torch), which they would slow down.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        self.path = Path(path)
        try:
            self.session = onnxruntime.InferenceSession(str(path), options,
                                                        providers=["CPUExecutionProvider"])
        except Exception as error:  # noqa: BLE001 - onnxruntime's errors subclass Exception only
            raise ckpt.CheckpointError(f"{path} is not a readable ONNX file (truncated or "
                                       f"corrupt?): {ckpt.first_line(error)}") from None
        self.input_keys = tuple(node.name for node in self.session.get_inputs())
        #: Files exported with a fixed batch of 1 (ms_fpn's detector) run face by face.
        self.batch_one = self.session.get_inputs()[0].shape[0] == 1
        self.device = torch.device("cpu")

    @property
    def metadata(self) -> dict[str, str]:
        """The ONNX file's metadata properties."""
        return dict(self.session.get_modelmeta().custom_metadata_map)

    def __call__(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        feed = {key: inputs[key].detach().cpu().float().numpy() for key in self.input_keys}
        if not self.batch_one:
            return torch.from_numpy(self.session.run(None, feed)[0])
        size = len(next(iter(feed.values())))
        return torch.from_numpy(np.concatenate([
            self.session.run(None, {key: value[i:i + 1] for key, value in feed.items()})[0]
            for i in range(size)]))


class TrainedModel:
    """A trained net (PyTorch or ONNX) with its class names and its run's input pipeline.

    ``transform`` is the run's batch transform (landmark encoding + normalisation, no
    augmentation); ``extractor`` the landmark backend when the net consumes landmarks;
    ``photo_cropper`` the run's face cropper when it was trained on photos it cropped
    itself (``landmarks.precropped`` false), else None.
    """

    def __init__(self, config: DictConfig, class_names: list[str],
                 runner: TorchRunner | OnnxRunner, metadata: Mapping[str, Any],
                 landmarks_backend: str | None = None) -> None:
        self.config = config
        self.class_names = list(class_names)
        self.runner = runner
        self.metadata = dict(metadata)
        #: What the net was built for (input_spec.InputSpec), read once from its config.
        self.spec = input_spec(config)
        self.image_size, self.channels = self.spec.image_size, self.spec.channels
        #: The landmark encoding the net was trained with (None without landmarks).
        self.encoding = self.spec.encoding
        self.uses_landmarks = self.encoding is not None and (
            self.encoding == "overlay" or ENCODING_INPUT.get(self.encoding) in runner.input_keys)
        run = OmegaConf.create(OmegaConf.to_container(config))
        if self.uses_landmarks:
            with open_dict(run):
                run.landmarks = landmarks_config(config, landmarks_backend)
        self.transform, pipeline = input_pipelines(run)
        self.extractor: Extractor | None = pipeline.extractor \
            if pipeline is not None and self.uses_landmarks else None
        self.photo_cropper = pipeline.cropper if pipeline is not None else None
        #: The run's pipeline on a face image (no cropper): pre-cropped runs' landmarks.
        self.face_pipeline = LandmarkPipeline(pipeline.extractor, None, pipeline.quality) \
            if self.extractor is not None else None
        self.landmarks_backend = run.landmarks.get("name") if self.uses_landmarks else None

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu",
                        landmarks_backend: str | None = None) -> TrainedModel:
        """The PyTorch net of a ``.ckpt`` file (read with ``checkpoint.load_checkpoint``)."""
        checkpoint = ckpt.load_checkpoint(path)
        net = build_trained_net(checkpoint)
        return cls(ckpt.stored_config(checkpoint), ckpt.class_names(checkpoint),
                   TorchRunner(net, device), checkpoint[ckpt.METADATA_KEY], landmarks_backend)

    @classmethod
    def from_onnx(cls, path: str | Path, landmarks_backend: str | None = None,
                  threads: int | None = None) -> TrainedModel:
        """An ONNX file written by ``python -m fer_lightning.export`` (its metadata holds
        the run config and class names), run with onnxruntime."""
        path = Path(path).expanduser()
        if not path.is_file():
            raise ckpt.CheckpointError(f"{path}: no such ONNX file")
        runner = OnnxRunner(path, threads)
        text = runner.metadata.get(ONNX_METADATA_KEY)
        if text is None:
            raise ckpt.CheckpointError(f"{path} was not exported by fer_lightning (no "
                                       f"{ONNX_METADATA_KEY!r} metadata)")
        try:
            stored = json.loads(text)
        except (ValueError, RecursionError) as error:
            raise ckpt.CheckpointError(f"{path}: its {ONNX_METADATA_KEY!r} metadata is not "
                                       f"valid JSON ({ckpt.first_line(error)})") from None
        metadata = ckpt.metadata({ckpt.METADATA_KEY: stored}, path)
        return cls(OmegaConf.create(metadata["config"]), metadata["class_names"], runner,
                   metadata, landmarks_backend)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def landmarks(self, crops: list[np.ndarray], face_boxes: list[np.ndarray | None]
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """(points (N, P, 2) in [0, 1] of each crop, found (N,)).

        A face without a box (runs trained on pre-cropped faces) goes through the run's
        landmark pipeline on the face image, quality filter included, as in training; a
        face with the detector's box in its crop (runs trained on photos they cropped)
        goes to the extractor with that box, as the pipeline does after its cropper. A
        face whose landmarks are not found (or a model left without an extractor) gets
        zeros and found=False, which every encoding treats as "no landmarks", as
        training treats a miss."""
        num_points = self.extractor.num_points if self.extractor is not None else 68
        points = np.zeros((len(crops), num_points, 2), np.float32)
        found = np.zeros(len(crops), bool)
        for index, (crop, box) in enumerate(zip(crops, face_boxes, strict=True)):
            if self.extractor is None:
                break
            if box is None:
                record = self.face_pipeline(crop)
                extracted = record["points"] if bool(record["valid"]) else None
            else:
                extracted, _ = self.extractor.extract(crop, face_box=box)
            if extracted is not None:
                points[index], found[index] = extracted, True
        return torch.from_numpy(points), torch.from_numpy(found)

    def logits(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The net's logits for a transformed batch (the keys the net takes)."""
        return self.runner(batch).float().cpu()
