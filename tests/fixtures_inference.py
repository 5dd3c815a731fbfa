"""Helpers for the checkpoint / eval / predict / export tests: real photos that ship in
packages, checkpoint files written without training, and a hostile pickle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fer_lightning import build
from fer_lightning.config import compose_config

#: Tiny versions of every family (seconds to build and export).
FAMILIES = {
    "mini_xception": ["model=mini_xception", "model.num_modules=2"],
    "mba": ["model=mba", "landmarks=groundtruth"],
    "vgg_cbam": ["model=vgg_cbam", "data.image_size=32", "model.layers=[8,M,16,M]"],
    "timm": ["model=timm", "model.name=resnet10t", "data.image_size=32"],
    "ms_fpn": ["model=ms_fpn", "model.backbone=resnet10t", "data.image_size=64",
               "landmarks=groundtruth", "model.fpn_channels=32", "model.branch_channels=16",
               "model.detector.roi_channels=16", "model.organ_roi_size=4",
               "model.face_roi_size=8"],
}


def scaled(image: np.ndarray, longer_side: int) -> np.ndarray:
    """``image`` resized so its longer side is ``longer_side`` (faster face detection)."""
    height, width = image.shape[:2]
    scale = longer_side / max(height, width)
    size = (round(width * scale), round(height * scale))
    return np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))


def astronaut(size: int = 256) -> np.ndarray:
    """skimage's astronaut (Eileen Collins), one face; nose tip at (224, 126) of 512."""
    import skimage.data

    return scaled(skimage.data.astronaut(), size)


def grace_hopper(size: int = 256) -> np.ndarray:
    """matplotlib's grace_hopper portrait (512 x 600), face around (265, 230)."""
    import matplotlib.cbook

    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
        return scaled(np.asarray(im.convert("RGB")), size)


def lfw_faces(count: int = 3) -> list[np.ndarray]:
    """The first ``count`` 25 x 25 grey face crops of skimage's lfw_subset, as uint8."""
    import skimage.data

    return [(face * 255).round().astype(np.uint8) for face in skimage.data.lfw_subset()[:count]]


def landscape() -> np.ndarray:
    """A photo without a face (skimage's coffee cup; MTCNN finds nothing in it)."""
    import skimage.data

    return scaled(skimage.data.coffee(), 256)


def write_checkpoint(overrides: list[str], path: Path, class_names: list[str] | None = None
                     ) -> Path:
    """A fer_lightning checkpoint of an untrained net configured by ``overrides``."""
    return build.write_checkpoint(compose_config(overrides, path.parent / "run"), path,
                                 class_names)


class Touch:
    """Unpickling this calls ``Path(marker).touch()``: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def write_malicious(path: Path, marker: Path, zip_format: bool = True) -> Path:
    """A checkpoint-looking file whose unpickling creates ``marker``."""
    payload = {"state_dict": {}, "fer_lightning": Touch(marker)}
    if zip_format:
        torch.save(payload, path)
    else:
        torch.save(payload, path, _use_new_zipfile_serialization=False)
    return path
