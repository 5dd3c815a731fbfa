"""The embedded synthetic dataset: ``SyntheticFaces``, drawing every sample's face, look
and pose from its own random stream and rendering it (see the package docstring).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from fer_lightning.data.sources.base import SPLITS, RawSample, SplitInfo, SplitUnavailableError
from fer_lightning.data.sources.synthetic.geometry import (
    CLASS_NAMES,
    NEUTRAL,
    NUM_IDENTITY_FIELDS,
    NUM_REGIONS,
    FaceParams,
    face_geometry,
    posed_landmarks,
)
from fer_lightning.data.sources.synthetic.paint import (
    RGB,
    SUPERSAMPLE,
    Look,
    mix,
    render_face,
    times,
)

#: Bumped whenever a change to this package changes the pixels or landmarks it produces.
GENERATOR_VERSION = 1

_SPLIT_IDS = {name: i for i, name in enumerate(SPLITS)}
#: Label streams are seeded with ``[seed, _LABEL_STREAM + split_id]``, which can never
#: equal a sample stream ``[seed, split_id, index]`` since split ids are < 3.
_LABEL_STREAM = 1000
_MAX_ROLL_DEG = 20.0  # at pose_jitter = 1
_MAX_SCALE = 0.15
_MAX_SHIFT = 0.08
_STYLE_SPREAD = 0.3  # per-region expression gain in [1 - s, 1 + s]
_N_UNIFORMS = 80  # one uniform block per sample; see _sample_params / _sample_look


# ---------------------------------------------------------------------------------------
# Per-sample random draws. Small per-sample quantities are python floats on purpose:
# numpy's per-call overhead on 3-vectors would dominate the render time.
# ---------------------------------------------------------------------------------------


class _Uniforms:
    """Consecutive slices of one pre-drawn block of U(0, 1) numbers.

    One RNG call per sample is far cheaper than dozens of scalar calls. Every value
    is drawn whether or not it is used, so each parameter's position in the stream,
    and so the sample, does not depend on the other options (e.g. turning blur on
    changes no face).
    """

    def __init__(self, rng: np.random.Generator, n: int = _N_UNIFORMS) -> None:
        self._u: list[float] = rng.random(n).tolist()
        self._next = 0

    def take(self, n: int) -> list[float]:
        """The next ``n`` uniforms."""
        out = self._u[self._next : self._next + n]
        self._next += n
        assert self._next <= len(self._u), "raise _N_UNIFORMS"
        return out

    def between(self, lo: float, hi: float) -> float:
        """One uniform scaled to [lo, hi)."""
        self._next += 1
        return lo + (hi - lo) * self._u[self._next - 1]

    def symmetric(self, n: int) -> np.ndarray:
        """``n`` uniforms in [-1, 1) as an array."""
        return 2.0 * np.array(self.take(n)) - 1.0


_DARK_SKIN, _LIGHT_SKIN = (70.0, 46.0, 34.0), (248.0, 218.0, 192.0)
_DARK_HAIR, _FAIR_HAIR = (18.0, 14.0, 12.0), (205.0, 165.0, 105.0)
_IRIS_TINTS = ((90.0, 60.0, 35.0), (60.0, 90.0, 130.0), (70.0, 95.0, 60.0))


def _sample_colours(u: _Uniforms) -> dict[str, RGB]:
    """Skin, hair, background, eye and mouth colours, independent of the class."""
    skin = times(mix(_DARK_SKIN, _LIGHT_SKIN, u.between(0.0, 1.0)),
                  tuple(0.92 + 0.16 * v for v in u.take(3)))  # fmt: skip
    hair = mix(_DARK_HAIR, _FAIR_HAIR, u.between(0.0, 1.0) ** 2)
    greying, grey = u.between(0.0, 1.0), u.between(120.0, 220.0)
    if greying < 0.08:
        hair = (grey, grey, grey)
    grey = u.between(10.0, 245.0)
    background = tuple(grey * (0.75 + 0.5 * v) for v in u.take(3))
    iris = times(_IRIS_TINTS[int(u.between(0.0, 2.999))], u.between(0.4, 1.2))
    dark_hair = sum(hair) < 0.45 * sum(skin)  # else brows must stay darker than the skin
    brow = mix(times(skin, 0.1), hair, 0.8) if dark_hair else times(skin, 0.45)
    return {
        "skin": skin,
        "shade": times(skin, 0.82),
        "crease": times(skin, 0.6),
        "hair": hair,
        "brow": brow,
        "background": background,
        "lip": times(skin, (0.95 * (k := u.between(0.75, 0.95)), 0.66 * k, 0.68 * k)),
        "sclera": mix(skin, (240.0, 238.0, 232.0), 0.75),
        "iris": iris,
        "pupil": (12.0, 10.0, 10.0),
        "lash": times(skin, 0.25),
        "mouth": times((55.0, 22.0, 24.0), u.between(0.5, 1.3)),
        "teeth": times((235.0, 228.0, 212.0), u.between(0.75, 1.0)),
        "nostril": times(skin, 0.35),
    }


# ---------------------------------------------------------------------------------------
# The source
# ---------------------------------------------------------------------------------------


def _check_number(name: str, value: object, lo: float, hi: float, integer: bool = False) -> float:
    """``value`` as a number in [lo, hi], or a ValueError naming the argument."""
    kind = "an integer" if integer else "a number"
    wrong_type = isinstance(value, bool) or not isinstance(value, (int, float, np.number))
    if wrong_type or (integer and not float(value).is_integer()):
        raise ValueError(f"{name} must be {kind} in [{lo}, {hi}], got {value!r}")
    if not (lo <= float(value) <= hi):  # also rejects NaN
        raise ValueError(f"{name} must be {kind} in [{lo}, {hi}], got {value!r}")
    return int(value) if integer else float(value)


def _check_sequence(name: str, value: object, length: int) -> list:
    """``value`` as a list of ``length`` items (Hydra passes ListConfig), or a ValueError."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != length:
        raise ValueError(f"{name} must be a list of {length} numbers, got {value!r}")
    return list(value)


class SyntheticFaces:
    """Procedurally generated 7-class expression faces with exact 68-point landmarks.

    Labels follow FER2013's order (``CLASS_NAMES``); ``class_probs`` (normalised, so
    counts work too) makes the splits imbalanced like FER2013. Difficulty knobs:

    - ``intensity_range``: per-sample expression intensity ~ U[lo, hi] (0 = neutral,
      1 = full); low values are nearly indistinguishable from neutral.
    - ``pose_jitter`` in [0, 1]: fraction of the largest roll (20 deg), scale (+-15 %)
      and shift (+-8 % of the image); faces are always kept inside the image.
    - ``identity_jitter`` in [0, 1]: fraction of the largest face-shape variation.
    - ``noise_std`` in [0, 0.5]: gaussian pixel noise, fraction of the 0..255 range;
      each sample's sigma is drawn from [0.25, 1] times this.
    - ``blur_prob`` / ``occluder_prob``: chance of a gaussian blur / of an occluder
      (sunglasses bar, hand-like patch, or a random box).
    - ``lighting`` in [0, 1]: largest strength of a linear lighting gradient
      (pixel gain 1 +- lighting across the image).
    - ``blend`` in [0, 1]: every face also shows a random other (non-neutral)
      expression at intensity ~ U[0, blend], as real faces mix expressions; this makes
      weak expressions genuinely ambiguous, even from exact landmarks.

    ``channels=3`` renders colour faces (skin tones, hair, iris colours); ``channels=1``
    renders the luminance of the same scene directly in grey. ``val_size`` or
    ``test_size`` of 0 means this dataset has no such split (``SplitUnavailableError``).
    """

    def __init__(
        self,
        image_size: int = 48,
        channels: int = 1,
        train_size: int = 5000,
        val_size: int = 1000,
        test_size: int = 1000,
        seed: int = 0,
        class_probs: Sequence[float] | None = None,
        intensity_range: Sequence[float] = (0.15, 1.0),
        pose_jitter: float = 0.5,
        identity_jitter: float = 0.5,
        noise_std: float = 0.03,
        blur_prob: float = 0.2,
        occluder_prob: float = 0.1,
        lighting: float = 0.35,
        blend: float = 0.25,
    ) -> None:
        self.class_names = list(CLASS_NAMES)
        self.image_size = _check_number("image_size", image_size, 16, 512, integer=True)
        if isinstance(channels, bool) or channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grey) or 3 (colour), got {channels!r}")
        self.channels = int(channels)
        self.sizes = {
            split: _check_number(f"{split}_size", n, 1 if split == "train" else 0, 10**9,
                                 integer=True)
            for split, n in zip(SPLITS, (train_size, val_size, test_size), strict=True)
        }
        self.seed = _check_number("seed", seed, 0, 2**63 - 1, integer=True)
        self.class_probs = self._check_class_probs(class_probs)
        lo, hi = _check_sequence("intensity_range", intensity_range, 2)
        lo = _check_number("intensity_range[0]", lo, 0.0, 1.0)
        hi = _check_number("intensity_range[1]", hi, 0.0, 1.0)
        if lo > hi:
            raise ValueError(f"intensity_range must be [lo, hi] with lo <= hi, got {[lo, hi]}")
        self.intensity_range = (lo, hi)
        self.pose_jitter = _check_number("pose_jitter", pose_jitter, 0.0, 1.0)
        self.identity_jitter = _check_number("identity_jitter", identity_jitter, 0.0, 1.0)
        self.noise_std = _check_number("noise_std", noise_std, 0.0, 0.5)
        self.blur_prob = _check_number("blur_prob", blur_prob, 0.0, 1.0)
        self.occluder_prob = _check_number("occluder_prob", occluder_prob, 0.0, 1.0)
        self.lighting = _check_number("lighting", lighting, 0.0, 1.0)
        self.blend = _check_number("blend", blend, 0.0, 1.0)
        self._labels: dict[str, np.ndarray] = {}

    @staticmethod
    def _check_class_probs(class_probs: Sequence[float] | None) -> np.ndarray:
        if class_probs is None:
            return np.full(len(CLASS_NAMES), 1.0 / len(CLASS_NAMES))
        values = _check_sequence("class_probs", class_probs, len(CLASS_NAMES))
        probs = np.array(
            [_check_number(f"class_probs[{i}]", v, 0.0, 1e12) for i, v in enumerate(values)]
        )
        if probs.sum() <= 0:
            raise ValueError("class_probs must have a positive sum (they are normalised)")
        return probs / probs.sum()

    # -- Source protocol ---------------------------------------------------------------

    def split_info(self, split: str) -> SplitInfo:
        """Labels of ``split``, drawn from ``class_probs`` without rendering anything."""
        return SplitInfo(labels=self._split_labels(split).copy())

    def load(self, split: str, index: int) -> RawSample:
        """Render sample ``index`` of ``split``; identical bytes for identical config."""
        return self.render(split, index)

    # -- helpers beyond the protocol ---------------------------------------------------

    def render(
        self, split: str, index: int, label: int | None = None, intensity: float | None = None
    ) -> RawSample:
        """Sample ``index`` of ``split``, optionally showing another expression.

        With ``label`` / ``intensity`` given, identity, look, pose and noise stay the
        sample's own, so comparing renders isolates what an expression changes.
        """
        params, look, rng = self._sample(split, index)
        params = self._override(params, label, intensity)
        canvas = self.image_size * SUPERSAMPLE
        geometry = face_geometry(params, look.hairline, canvas)
        image = render_face(geometry, look, self.image_size, self.channels, rng)
        landmarks = (geometry.landmarks + 0.5) / canvas
        landmarks = np.clip(landmarks, 0.0, 1.0, out=landmarks).astype(np.float32)
        return RawSample(image=image, label=params.label, landmarks=landmarks, landmarks_valid=True)

    def fingerprint(self) -> str:
        """A short stable hash of the configuration and generator version (cache keys)."""
        config = {
            "version": GENERATOR_VERSION, "image_size": self.image_size,
            "channels": self.channels, "sizes": self.sizes, "seed": self.seed,
            "class_probs": self.class_probs.round(12).tolist(),
            "intensity_range": self.intensity_range, "pose_jitter": self.pose_jitter,
            "identity_jitter": self.identity_jitter, "noise_std": self.noise_std,
            "blur_prob": self.blur_prob, "occluder_prob": self.occluder_prob,
            "lighting": self.lighting, "blend": self.blend,
        }  # fmt: skip
        return hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]

    def face_params(self, split: str, index: int) -> FaceParams:
        """The shape parameters of sample ``index`` (identity, expression, pose)."""
        return self._sample(split, index)[0]

    def expression_landmarks(
        self, split: str, index: int, label: int, intensity: float = 1.0
    ) -> np.ndarray:
        """(68, 2) landmarks of sample ``index``'s face and pose with another expression,
        without rendering.

        Identity, style and pose are the sample's own, so the difference to
        ``label=NEUTRAL`` is exactly the expression's movement (used by the tests).
        """
        return posed_landmarks(self._override(self.face_params(split, index), label, intensity))

    # -- internals ---------------------------------------------------------------------

    @staticmethod
    def _override(params: FaceParams, label: int | None, intensity: float | None) -> FaceParams:
        if label is not None:
            label = _check_number("label", label, 0, len(CLASS_NAMES) - 1, integer=True)
            params = replace(params, label=label)
        if intensity is not None:
            params = replace(params, intensity=_check_number("intensity", intensity, 0.0, 2.0))
        return params

    def _split_labels(self, split: str) -> np.ndarray:
        if split not in _SPLIT_IDS:
            raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
        if self.sizes[split] == 0:
            raise SplitUnavailableError(f"data.source.{split}_size=0: this synthetic dataset "
                                        f"has no {split} split")
        if split not in self._labels:
            rng = np.random.default_rng([self.seed, _LABEL_STREAM + _SPLIT_IDS[split]])
            n = self.sizes[split]
            self._labels[split] = rng.choice(len(CLASS_NAMES), size=n, p=self.class_probs)
        return self._labels[split]

    def _sample(self, split: str, index: int) -> tuple[FaceParams, Look, np.random.Generator]:
        labels = self._split_labels(split)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index must be an int, got {type(index).__name__}")
        if not 0 <= index < len(labels):
            size = len(labels)
            raise IndexError(f"index {index} out of range for split {split!r} of size {size}")
        rng = np.random.default_rng([self.seed, _SPLIT_IDS[split], int(index)])
        u = _Uniforms(rng)
        params = self._sample_params(u, int(labels[index]))
        look = self._sample_look(u)
        return params, look, rng

    def _sample_params(self, u: _Uniforms, label: int) -> FaceParams:
        lo, hi = self.intensity_range
        jitter = self.pose_jitter
        return FaceParams(
            label=label,
            intensity=u.between(lo, hi),
            identity=u.symmetric(NUM_IDENTITY_FIELDS) * self.identity_jitter,
            region_gains=1.0 + _STYLE_SPREAD * u.symmetric(NUM_REGIONS),
            variant=u.between(0.0, 1.0),
            blend_label=int(u.between(0.0, NEUTRAL - 1e-9)),
            blend=u.between(0.0, self.blend),
            mirrored=u.between(0.0, 1.0) < 0.5,
            roll=math.radians(_MAX_ROLL_DEG * jitter * u.between(-1.0, 1.0)),
            scale=1.0 + _MAX_SCALE * jitter * u.between(-1.0, 1.0),
            shift=(
                _MAX_SHIFT * jitter * u.between(-1.0, 1.0),
                _MAX_SHIFT * jitter * u.between(-1.0, 1.0),
            ),
        )

    def _sample_look(self, u: _Uniforms) -> Look:
        colours = _sample_colours(u)
        hair_pick = u.between(0.0, 1.0)
        blurred, blur_radius = u.between(0.0, 1.0) < self.blur_prob, u.between(0.4, 1.0)
        occluded, occluder = u.between(0.0, 1.0) < self.occluder_prob, u.between(1.0, 3.999)
        return Look(
            colours=colours,
            hair_style=0 if hair_pick < 0.2 else (1 if hair_pick < 0.65 else 2),
            hairline=u.between(0.0, 1.0),
            brow_width=u.between(0.022, 0.04),
            gaze=(u.between(-1.0, 1.0), u.between(-1.0, 1.0)),
            light_angle=u.between(0.0, 2.0 * math.pi),
            light_strength=self.lighting * u.between(0.0, 1.0),
            noise_sigma=255.0 * self.noise_std * u.between(0.25, 1.0),
            blur_radius=blur_radius * self.image_size / 48.0 if blurred else 0.0,
            occluder=int(occluder) if occluded else 0,
            occluder_u=u.take(4),
        )
