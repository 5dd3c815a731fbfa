"""The landmark settings: one validated ``LandmarksConfig``, the home of every default.

The ``landmarks`` config group (conf/landmarks/*.yaml) becomes a ``LandmarksConfig`` once,
in ``LandmarksConfig.from_mapping``; the DataModule, the cache and its pipeline, and the
batch transform take that object and never re-check or re-default a key. Code that
has no DataModule (inference on photos from a checkpoint's stored config) builds the
same pieces from it::

    config = LandmarksConfig.from_mapping(stored["landmarks"])
    pipeline = build_pipeline(config)            # fer_lightning.data.landmarks.pipeline
    transform = BatchTransform(encoding, config, mean=0.5, std=0.5)  # data.transforms

docs/landmarks.md explains every key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fer_lightning.data.landmarks.face_crop import DETECTORS, SELECT
from fer_lightning.data.landmarks.schema import GROUPS
from fer_lightning.errors import ConfigError

#: What a network may consume (the net's ``landmark_encoding``), see data/encodings.py.
#: The table of encodings: name -> the batch key it gives the net (``overlay`` draws on
#: the image; ``regions`` are training targets). ``BatchTransform`` renders each, the
#: names are its keys, and the ONNX input names of ``inference`` follow the batch keys.
ENCODING_INPUT = {"overlay": "image", "heatmap": "landmark_map", "coords": "coords",
                  "regions": "regions"}
ENCODINGS = tuple(ENCODING_INPUT)
OVERLAY_STYLES = ("points", "contours")
HEATMAP_STYLES = ("gaussian", "contours")
#: ``on_missing``: keep faces not found with the mean shape, or drop them.
POLICIES = ("mean_shape", "drop")


def config_error(message: str) -> ValueError:
    """A :class:`fer_lightning.errors.ConfigError` for ``message``."""
    return ConfigError(message)


def _number(key: str, value: Any, low: float | None = None, high: float | None = None,
            integer: bool = False) -> Any:
    """``value`` checked to be a number (an int when ``integer``) in [low, high]."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or \
            (low is not None and value < low) or (high is not None and value > high):
        bounds = f" in [{low}, {high}]" if high is not None else \
            (f" >= {low}" if low is not None else "")
        raise config_error(f"{key} must be {'an integer' if integer else 'a number'}{bounds}, "
                           f"got {value!r}")
    return value


@dataclass(frozen=True)
class QualityFilter:
    """Automatic removal of implausible detections (``landmarks.quality``).

    MS-FPN (Zhang et al., Sec. 3.2) removes bad RetinaFace detections by hand; this is the
    automatic stand-in. A detected face fails when any enabled check fails:

    - ``min_prob``: the detector's confidence (backends that report one: MTCNN's
      ``prob``) is below it;
    - ``geometry``: the eyes are not above the nose and the nose not above the mouth
      (image y), or the image-left eye / mouth corner is not left of the other;
    - ``eye_distance`` [lo, hi]: the inter-ocular distance over the face box width lies
      outside it (only where the backend gives a face box);
    - ``box_margin``: a point lies outside the face box enlarged by this fraction of its
      size on every side (only with a face box; null skips the check).

    Failed faces count as ``filtered`` in the landmark report and are treated like faces
    not found (``landmarks_valid=False``, then ``on_missing``). Applied when the cached
    arrays are read, so changing a threshold needs no re-extraction.
    """

    min_prob: float | None = 0.8
    geometry: bool = True
    eye_distance: tuple[float, float] | None = (0.2, 0.7)
    box_margin: float | None = 0.1

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> QualityFilter:
        """Validated from the ``landmarks.quality`` mapping; unknown keys are errors."""
        _reject_unknown("landmarks.quality", mapping, cls)
        values = {**{f.name: f.default for f in dataclasses.fields(cls)}, **mapping}
        if values["min_prob"] is not None:
            _number("landmarks.quality.min_prob", values["min_prob"], 0.0, 1.0)
        if not isinstance(values["geometry"], bool):
            raise config_error(f"landmarks.quality.geometry must be true or false, "
                               f"got {values['geometry']!r}")
        distance = values["eye_distance"]
        if distance is not None:
            if not isinstance(distance, Sequence) or len(distance) != 2 or \
                    not 0 <= _number("landmarks.quality.eye_distance[0]", distance[0]) \
                    < _number("landmarks.quality.eye_distance[1]", distance[1]):
                raise config_error(f"landmarks.quality.eye_distance must be [low, high] with "
                                   f"0 <= low < high, got {distance!r}")
            values["eye_distance"] = (float(distance[0]), float(distance[1]))
        if values["box_margin"] is not None:
            _number("landmarks.quality.box_margin", values["box_margin"], 0.0)
        return cls(**values)


@dataclass(frozen=True)
class LandmarksConfig:
    """Every landmark setting, validated once, with its default (docs/landmarks.md).

    Encoding (how the net's encoding draws the points): ``overlay_style``,
    ``overlay_groups``, ``heatmap_style``, ``heatmap_sigma``, ``draw_before_augment``.
    Extraction (backends only): ``extractor`` (a Hydra ``_target_`` mapping or an
    extractor object), ``cache_dir``, ``num_workers``, ``chunk_size``, ``precropped``
    and, for photos, ``face_detector``, ``face_select``, ``crop_margin``. After it:
    ``quality`` (None: no filter) and ``on_missing``.
    """

    name: str = "custom"
    enabled: bool = True
    overlay_style: str = "points"
    overlay_groups: tuple[str, ...] | None = None
    heatmap_style: str = "gaussian"
    heatmap_sigma: float = 1.0
    #: true: the overlay is drawn on the raw image and augmented with it, as key-point
    #: mini-Xception (Selvam et al., Sec. 3.1) draws onto the dataset images; false:
    #: drawn after augmentation, at the moved points (crisp single pixels).
    draw_before_augment: bool = False
    extractor: Any = None
    cache_dir: str | None = None
    num_workers: int = 1
    chunk_size: int = 256
    on_missing: str = "mean_shape"
    #: None: follow the dataset's declaration (``data.precropped``), else pre-cropped.
    precropped: bool | None = None
    face_detector: str = "hog"
    face_select: str = "largest"
    crop_margin: float = 0.25
    quality: QualityFilter | None = None
    #: MediaPipe only: a face_landmarker.task file (the mediapipe yaml hands it on to its
    #: extractor).
    task_model_path: str | None = None

    def __post_init__(self) -> None:
        self._validate()

    # -- construction ------------------------------------------------------------------

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | LandmarksConfig | None
                     ) -> LandmarksConfig:
        """The config of a ``landmarks`` mapping (a composed DictConfig, the plain dict
        stored in a checkpoint, or a test's dict). None: landmarks off. Interpolations
        are resolved; objects (an already built extractor) are kept as they are."""
        if isinstance(mapping, LandmarksConfig):
            return mapping
        if mapping is None:
            return cls(name="none", enabled=False)
        values = _plain(mapping)
        _reject_unknown("landmarks", values, cls)
        if isinstance(values.get("quality"), Mapping):
            values["quality"] = QualityFilter.from_mapping(values["quality"])
        if values.get("overlay_groups") is not None:
            groups = values["overlay_groups"]
            values["overlay_groups"] = (groups,) if isinstance(groups, str) else tuple(groups)
        if values.get("cache_dir") is not None:
            values["cache_dir"] = str(values["cache_dir"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (``from_mapping`` gives the same config back)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["quality"] = None if self.quality is None else dataclasses.asdict(self.quality)
        out["overlay_groups"] = None if self.overlay_groups is None else list(self.overlay_groups)
        return out

    # -- derived -----------------------------------------------------------------------

    @property
    def extracts(self) -> bool:
        """True for the backends (dlib, mediapipe, mtcnn): landmarks come from an extractor
        and are cached; False for ``groundtruth`` (the source's own) and ``none``."""
        return self.enabled and self.extractor is not None

    def resolve_precropped(self, dataset_default: bool | None = None) -> bool:
        """``precropped`` when set, else the dataset's declaration, else True."""
        if self.precropped is not None:
            return self.precropped
        return True if dataset_default is None else bool(dataset_default)

    # -- validation --------------------------------------------------------------------

    def _validate(self) -> None:
        choices = (("overlay_style", OVERLAY_STYLES), ("heatmap_style", HEATMAP_STYLES),
                   ("on_missing", POLICIES), ("face_detector", DETECTORS),
                   ("face_select", SELECT))
        for key, allowed in choices:
            if getattr(self, key) not in allowed:
                raise config_error(f"landmarks.{key} must be one of {list(allowed)}, "
                                   f"got {getattr(self, key)!r}")
        for key in ("enabled", "draw_before_augment"):
            if not isinstance(getattr(self, key), bool):
                raise config_error(f"landmarks.{key} must be true or false, "
                                   f"got {getattr(self, key)!r}")
        if self.precropped is not None and not isinstance(self.precropped, bool):
            raise config_error(f"landmarks.precropped must be true, false or null, "
                               f"got {self.precropped!r}")
        _number("landmarks.heatmap_sigma", self.heatmap_sigma, 1e-6)
        _number("landmarks.crop_margin", self.crop_margin, 0.0)
        _number("landmarks.chunk_size", self.chunk_size, 1, integer=True)
        _number("landmarks.num_workers", self.num_workers, 0, integer=True)
        if self.overlay_groups is not None:
            unknown = sorted(set(self.overlay_groups) - set(GROUPS))
            if unknown or not self.overlay_groups:
                raise config_error(f"landmarks.overlay_groups: unknown groups {unknown}; "
                                   f"allowed: {list(GROUPS)} (or null for all)")
        if self.quality is not None and not isinstance(self.quality, QualityFilter):
            raise config_error(f"landmarks.quality must be a mapping of thresholds or null, "
                               f"got {self.quality!r}")
        if self.extracts and not self.cache_dir:
            raise config_error(f"landmarks={self.name} needs landmarks.cache_dir (where the "
                               f"extracted landmarks are cached)")


def _plain(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """A shallow plain-dict copy: OmegaConf nodes resolved and converted, objects kept."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
    except ImportError:  # pragma: no cover - omegaconf ships with the package
        return dict(mapping)
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, (DictConfig, ListConfig)):
            value = OmegaConf.to_container(value, resolve=True)
        out[str(key)] = value
    return out


def _reject_unknown(prefix: str, mapping: Mapping[str, Any], cls: type) -> None:
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(mapping) - set(known))
    if unknown:
        raise config_error(f"{prefix}: unknown key(s) {unknown}; known keys: {known}")
