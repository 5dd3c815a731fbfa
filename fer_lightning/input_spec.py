"""What a trained net was built for, read from its run config in one place: the input
size, channels and normalisation, the landmark backend, the encoding the net consumes
with its drawing options, and whether the images were face crops.

The resume check (``keys.NET_KEYS``), eval's keep-list (``keys.INPUT_DATA_KEYS`` and
``keys.ENCODING_KEYS``), the trained-model runner and the ONNX metadata all read these
keys; :func:`input_spec` turns them into one frozen value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from fer_lightning.build import net_class
from fer_lightning.keys import ENCODING_KEYS

#: The normalisation of a config that sets none (``(pixel / 255 - 0.5) / 0.5``).
DEFAULT_MEAN = DEFAULT_STD = 0.5


@dataclass(frozen=True)
class InputSpec:
    """The net's input contract (module docstring). ``mean`` / ``std`` are a number or
    one per channel; ``encoding`` is None when the net uses no landmarks, and
    ``landmarks`` then names no backend either."""

    image_size: int
    channels: int
    mean: float | tuple[float, ...]
    std: float | tuple[float, ...]
    landmarks: str | None
    encoding: str | None
    encoding_options: tuple[tuple[str, Any], ...]
    precropped: bool

    def normalisation(self) -> tuple[float | list[float], float | list[float]]:
        """(mean, std) as the batch transform and JSON take them: a number, or a list
        with one value per channel."""
        def listed(value: float | tuple[float, ...]) -> float | list[float]:
            return list(value) if isinstance(value, tuple) else value

        return listed(self.mean), listed(self.std)

    @property
    def options(self) -> dict[str, Any]:
        """The encoding's drawing options as a dict."""
        return dict(self.encoding_options)


def _plain(value: Any) -> Any:
    """A config value as plain, hashable Python (lists become tuples)."""
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, list | tuple):
        return tuple(_plain(item) for item in value)
    return value


def resolve_precropped(cfg: DictConfig | Mapping[str, Any]) -> bool:
    """Whether the run's images were face crops: ``landmarks.precropped`` when set, else
    the dataset's ``data.precropped``, else True (the one place this is decided for
    inference; ``LandmarksConfig.resolve_precropped`` applies the same rule in training)."""
    landmarks = cfg.get("landmarks") or {}
    if landmarks.get("precropped") is not None:
        return bool(landmarks.get("precropped"))
    declared = (cfg.get("data") or {}).get("precropped")
    return True if declared is None else bool(declared)


def input_spec(cfg: DictConfig) -> InputSpec:
    """The :class:`InputSpec` of a run config (stored in a checkpoint or composed)."""
    data, landmarks = cfg.data, cfg.landmarks
    enabled = bool(landmarks.get("enabled"))
    encoding = net_class(cfg).landmark_encoding if enabled else None
    options = tuple((key, _plain(landmarks.get(key))) for key in ENCODING_KEYS
                    if key in landmarks) if encoding is not None else ()
    return InputSpec(
        image_size=int(data.image_size), channels=int(data.channels),
        mean=_plain(data.get("mean", DEFAULT_MEAN)), std=_plain(data.get("std", DEFAULT_STD)),
        landmarks=str(landmarks.get("name")) if encoding is not None else None,
        encoding=encoding, encoding_options=options, precropped=resolve_precropped(cfg))
