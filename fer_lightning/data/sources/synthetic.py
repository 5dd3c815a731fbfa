"""Embedded default dataset: procedurally generated faces with ground-truth landmarks.

Every sample is drawn from scratch from its own random stream, seeded by
``(seed, split, index)``, so any sample renders identically in any process and in any
order, and no download is needed. The generator follows the way real faces vary:

1. a mean face as 68 landmarks in iBUG order (``landmarks.schema``);
2. identity: a linear shape basis (face width and height, eye spacing, brow height,
   mouth width, nose length, resting mouth curve, ...);
3. expression: one FACS-like displacement field per class, scaled by a per-sample
   intensity (weak intensities overlap neutral, which caps the reachable accuracy),
   with per-region style gains, a per-class variant (e.g. open vs closed smile) and a
   weak blend of a second expression (real faces are rarely pure);
4. pose: roll, scale and shift, fitted so every landmark stays inside the image;
5. rendering with PIL at ``SUPERSAMPLE`` times the size, box-downsampled, then lighting
   gradient, gaussian noise, occasional blur and occasional occluder.

Skin, background, hair and lighting are drawn independently of the class, so no single
pixel statistic (mean brightness, contrast) gives the class away: the signal is the
geometry of brows, eyes, nose and mouth, which the pixels draw through the landmarks.

Coordinates: landmarks are (x, y) in [0, 1] image units, where pixel ``j`` covers
``[j / W, (j + 1) / W)``; so ``x * W`` is the continuous pixel coordinate.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from fer_lightning.data.landmarks.schema import (  # mean_face lives in schema (lowest floor)
    FLIP_PERMUTATION,
    GROUPS,
    NUM_POINTS,
    mean_face,
)
from fer_lightning.data.sources.base import SPLITS, RawSample, SplitInfo

CLASS_NAMES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
ANGRY, DISGUST, FEAR, HAPPY, SAD, SURPRISE, NEUTRAL = range(7)

#: Bumped whenever a change to this file changes the pixels or landmarks it produces.
GENERATOR_VERSION = 1
#: Faces are drawn this many times larger, then box-downsampled (anti-aliasing).
SUPERSAMPLE = 4

_SPLIT_IDS = {name: i for i, name in enumerate(SPLITS)}
#: Label streams are seeded with ``[seed, _LABEL_STREAM + split_id]``, which can never
#: equal a sample stream ``[seed, split_id, index]`` since split ids are < 3.
_LABEL_STREAM = 1000
#: Where the canonical face origin (between eyes and nose) lands in the image.
_FACE_CENTRE = np.array([0.5, 0.47])
_MAX_ROLL_DEG = 20.0  # at pose_jitter = 1
_MAX_SCALE = 0.15
_MAX_SHIFT = 0.08
_STYLE_SPREAD = 0.3  # per-region expression gain in [1 - s, 1 + s]
_MARGIN = 0.01  # landmarks are kept this far inside the image border
_N_UNIFORMS = 80  # one uniform block per sample; see _sample_params / _sample_look


# ---------------------------------------------------------------------------------------
# Shape model: mean face, identity basis, expression fields (canonical coordinates:
# x to the image right, y down, units of image width, origin between eyes and nose).
# ---------------------------------------------------------------------------------------


def _group(name: str) -> np.ndarray:
    start, stop = GROUPS[name]
    return np.arange(start, stop)


def _field(moves: dict[int, tuple[float, float]], mirror: bool = True) -> np.ndarray:
    """(68, 2) displacement field from ``{point: (outward, upward)}`` moves.

    Moves are given for image-left points (the subject's right side) and midline
    points; ``mirror`` copies each to its left-right partner (FLIP_PERMUTATION), so a
    symmetric action is written once. Outward on the image left is -x; upward is -y.
    """
    field = np.zeros((NUM_POINTS, 2))
    for i, (out, up) in moves.items():
        field[i] += (-out, -up)
        partner = int(FLIP_PERMUTATION[i])
        if partner == i:
            assert out == 0.0, f"midline point {i} cannot move outward"
        elif mirror:
            field[partner] += (out, -up)
    return field


def _moves(*groups: tuple[Sequence[int], tuple[float, float]]) -> dict[int, tuple[float, float]]:
    """Build a moves dict from (points, move) pairs, so lids and lips read as one line."""
    moves = {i: move for points, move in groups for i in points}
    assert len(moves) == sum(len(points) for points, _ in groups), "a point moves twice"
    return moves


# Upper and lower lid points of the image-left eye (mirrored onto the other eye).
_UPPER_LID, _LOWER_LID = (37, 38), (40, 41)


def expression_fields() -> tuple[np.ndarray, np.ndarray]:
    """Primary and variant displacement fields, each (7, 68, 2), at intensity 1.

    Written as action units move faces (Ekman & Friesen's FACS):
    happy AU6+12, sad AU1+4+15(+17), angry AU4+5/7+23/24, surprise AU1+2+5+26/27,
    fear AU1+2+4+5+20+25, disgust AU9+10(+4), neutral none. The variant is mixed in
    with a per-sample weight in [0, 1] (open smile, wider jaw drop, ...).
    """
    primary = np.zeros((7, NUM_POINTS, 2))
    variant = np.zeros((7, NUM_POINTS, 2))

    primary[HAPPY] = _field(
        _moves(
            ((48,), (0.035, 0.045)), ((60,), (0.03, 0.04)), ((49,), (0.015, 0.02)),
            ((50,), (0.005, 0.008)), ((59,), (0.02, 0.03)), ((58,), (0.006, 0.01)),
            ((61,), (0.01, 0.014)), ((67,), (0.01, 0.012)),
            ((1, 3), (0.006, 0.006)), ((2,), (0.01, 0.008)),
            (_LOWER_LID, (0.0, 0.012)), ((36,), (0.0, 0.004)), (_UPPER_LID, (0.0, -0.004)),
        )
    )  # fmt: skip
    variant[HAPPY] = _field(
        _moves(
            ((57, 66), (0.0, -0.035)), ((58, 67), (0.0, -0.028)), ((59,), (0.0, -0.012)),
            ((51, 62), (0.0, 0.006)), ((8,), (0.0, -0.015)), ((7,), (0.0, -0.011)),
            ((6,), (0.0, -0.005)),
        )
    )  # fmt: skip

    primary[SAD] = _field(
        _moves(
            ((21,), (-0.008, 0.035)), ((20,), (-0.004, 0.018)), ((19,), (0.0, 0.004)),
            ((18,), (0.0, -0.006)), ((17,), (0.0, -0.012)),
            ((37,), (0.0, -0.004)), ((38,), (0.0, -0.008)),
            ((48,), (-0.005, -0.035)), ((60,), (-0.005, -0.03)), ((49,), (0.0, -0.01)),
            ((59,), (0.0, -0.016)), ((61,), (0.0, -0.006)), ((67,), (0.0, -0.008)),
            ((57,), (0.0, -0.01)), ((58,), (0.0, -0.008)), ((66,), (0.0, 0.004)),
            ((8,), (0.0, 0.005)),
        )
    )  # fmt: skip
    variant[SAD] = _field(
        _moves(((21,), (0.0, 0.015)), ((20,), (0.0, 0.008)), ((48, 60), (0.0, -0.012)))
    )

    primary[ANGRY] = _field(
        _moves(
            ((17,), (0.0, -0.015)), ((18,), (0.0, -0.025)), ((19,), (-0.008, -0.032)),
            ((20,), (-0.015, -0.04)), ((21,), (-0.025, -0.045)),
            (_UPPER_LID, (0.0, -0.008)), (_LOWER_LID, (0.0, 0.01)),
            ((49,), (0.0, -0.008)), ((50, 51), (0.0, -0.012)),
            ((57, 58), (0.0, 0.015)), ((59,), (0.0, 0.008)),
            ((48,), (-0.015, 0.0)), ((60,), (-0.012, 0.0)),
            ((61, 62), (0.0, -0.003)), ((66, 67), (0.0, 0.003)), ((31,), (0.008, 0.003)),
        )
    )  # fmt: skip
    variant[ANGRY] = _field(
        _moves(((19,), (-0.004, -0.008)), ((20, 21), (-0.01, -0.015)), ((48, 60), (-0.01, 0.0)))
    )

    primary[SURPRISE] = _field(
        _moves(
            ((17,), (0.0, 0.04)), ((18,), (0.0, 0.055)), ((19,), (0.0, 0.06)),
            ((20,), (0.0, 0.058)), ((21,), (0.0, 0.05)),
            (_UPPER_LID, (0.0, 0.018)), (_LOWER_LID, (0.0, -0.008)),
            ((48,), (-0.03, -0.02)), ((60,), (-0.035, -0.015)), ((49,), (-0.012, 0.005)),
            ((50, 51, 61, 62), (0.0, 0.01)),
            ((59,), (-0.012, -0.05)), ((58,), (-0.005, -0.075)), ((57,), (0.0, -0.08)),
            ((67,), (-0.005, -0.07)), ((66,), (0.0, -0.075)),
            ((8,), (0.0, -0.06)), ((7,), (-0.004, -0.055)), ((6,), (-0.005, -0.045)),
            ((5,), (-0.004, -0.03)), ((4,), (0.0, -0.015)), ((3,), (0.0, -0.005)),
        )
    )  # fmt: skip
    variant[SURPRISE] = _field(
        _moves(
            ((57, 66), (0.0, -0.03)), ((58, 67), (0.0, -0.025)), ((59,), (0.0, -0.015)),
            ((8,), (0.0, -0.025)), ((7,), (0.0, -0.022)), ((6,), (0.0, -0.015)),
        )
    )  # fmt: skip

    primary[FEAR] = _field(
        _moves(
            ((21,), (-0.015, 0.045)), ((20,), (-0.01, 0.04)), ((19,), (-0.005, 0.03)),
            ((18,), (0.0, 0.022)), ((17,), (0.0, 0.012)),
            (_UPPER_LID, (0.0, 0.02)), (_LOWER_LID, (0.0, 0.004)),
            ((48,), (0.04, -0.012)), ((60,), (0.04, -0.01)), ((49,), (0.015, 0.0)),
            ((50,), (0.005, 0.004)), ((61,), (0.01, 0.003)),
            ((59,), (0.02, -0.015)), ((58,), (0.008, -0.02)), ((57,), (0.0, -0.022)),
            ((67,), (0.01, -0.018)), ((66,), (0.0, -0.02)),
            ((8,), (0.0, -0.012)), ((7,), (0.0, -0.01)),
        )
    )  # fmt: skip
    variant[FEAR] = _field(
        _moves(
            ((57, 66), (0.0, -0.02)),
            ((58, 67), (0.0, -0.018)),
            ((8,), (0.0, -0.01)),
        )
    )

    symmetric_disgust = _field(
        _moves(
            ((31,), (0.008, 0.02)), ((32,), (0.004, 0.022)), ((33,), (0.0, 0.02)),
            ((30,), (0.0, 0.012)), ((29,), (0.0, 0.006)),
            ((50,), (0.0, 0.035)), ((51,), (0.0, 0.03)), ((49,), (0.0, 0.025)),
            ((61,), (0.0, 0.03)), ((62,), (0.0, 0.028)),
            ((48,), (0.0, -0.01)), ((60,), (0.0, -0.005)),
            ((57,), (0.0, -0.012)), ((58,), (0.0, -0.01)), ((66,), (0.0, -0.005)),
            ((17,), (0.0, -0.015)), ((18,), (0.0, -0.02)), ((19,), (0.0, -0.025)),
            ((20,), (-0.004, -0.03)), ((21,), (-0.008, -0.03)),
            (_LOWER_LID, (0.0, 0.01)),
        )
    )  # fmt: skip
    one_sided_sneer = _field(
        _moves(
            ((48,), (0.0, 0.014)), ((49,), (0.0, 0.014)), ((50,), (0.0, 0.01)),
            ((60,), (0.0, 0.012)), ((61,), (0.0, 0.01)), ((31,), (0.0, 0.006)),
        ),
        mirror=False,
    )  # fmt: skip
    primary[DISGUST] = symmetric_disgust + one_sided_sneer
    variant[DISGUST] = one_sided_sneer
    return primary, variant


def identity_basis(mean: np.ndarray) -> np.ndarray:
    """(K, 68, 2) identity displacement fields at their largest (identity_jitter = 1).

    Each field is one way faces differ at rest; a sample mixes them with coefficients
    in [-identity_jitter, identity_jitter]. The resting mouth curve and brow tilt
    deliberately overlap weak happy / sad / angry expressions.
    """
    x, y = mean[:, 0], mean[:, 1]
    jaw, brows = _group("jaw"), np.r_[_group("right_brow"), _group("left_brow")]
    eyes = np.r_[_group("right_eye"), _group("left_eye")]
    nose_lower = _group("nose_lower")
    mouth = np.r_[_group("outer_lip"), _group("inner_lip")]
    fields = []

    def only(points: np.ndarray, dx: np.ndarray | float, dy: np.ndarray | float) -> np.ndarray:
        field = np.zeros((NUM_POINTS, 2))
        field[points, 0] = np.broadcast_to(dx, mean.shape[0])[points]
        field[points, 1] = np.broadcast_to(dy, mean.shape[0])[points]
        return field

    all_points = np.arange(NUM_POINTS)
    fields.append(only(all_points, 0.12 * x, 0.0))  # face width
    fields.append(only(all_points, 0.0, 0.1 * y))  # face height
    fields.append(only(jaw, 0.1 * x, 0.0))  # jaw width
    fields.append(only(jaw, 0.0, 0.2 * np.clip(y + 0.08, 0.0, None)))  # chin length
    fields.append(only(np.r_[eyes, brows], 0.03 * np.sign(x), 0.0))  # eye spacing
    eye_centre = np.where(x < 0, -0.17, 0.17)
    fields.append(only(eyes, 0.25 * (x - eye_centre), 0.25 * (y + 0.11)))  # eye size
    fields.append(only(brows, 0.0, -0.035))  # brow height
    fields.append(only(mouth, 0.2 * x, 0.0))  # mouth width
    fields.append(only(mouth, 0.0, 0.03))  # mouth height on the face
    fields.append(only(np.r_[nose_lower, 30], 0.0, 0.03))  # nose length
    fields.append(only(nose_lower, 0.3 * x, 0.0))  # nose width
    lips = _moves(((49, 50, 51), (0.0, 0.012)), ((57, 58, 59), (0.0, -0.015)))
    fields.append(_field(lips))  # lip fullness
    fields.append(_field(_moves(((48, 60), (0.0, 0.02)))))  # resting mouth curve
    fields.append(_field(_moves(((21,), (0.0, 0.02)), ((20,), (0.0, 0.01)))))  # brow tilt
    fields.append(_field(_moves((_UPPER_LID, (0.0, 0.012)))))  # eye openness
    return np.stack(fields)


_MEAN = mean_face()
_PRIMARY, _VARIANT = expression_fields()
_IDENTITY = identity_basis(_MEAN)
#: Regions with their own expression style gain per sample (how much a person moves
#: their brows vs their mouth, say).
_REGIONS = (
    ("jaw",),
    ("right_brow", "left_brow"),
    ("nose_bridge", "nose_lower"),
    ("right_eye", "left_eye"),
    ("outer_lip", "inner_lip"),
)
_N_REGIONS = len(_REGIONS)


def _region_of_points() -> np.ndarray:
    """(68,) index into _REGIONS of every landmark."""
    region = np.zeros(NUM_POINTS, dtype=np.int64)
    for k, names in enumerate(_REGIONS):
        for name in names:
            region[slice(*GROUPS[name])] = k
    return region


_REGION = _region_of_points()

_MEAN_FLAT = _MEAN.ravel()
_IDENTITY_FLAT = _IDENTITY.reshape(len(_IDENTITY), -1)
_MIRROR_X = np.array([-1.0, 1.0])


# ---------------------------------------------------------------------------------------
# Per-sample parameters. Small per-sample quantities are python floats on purpose:
# numpy's per-call overhead on 3-vectors would dominate the render time.
# ---------------------------------------------------------------------------------------

RGB = tuple[float, float, float]


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


@dataclass(frozen=True)
class FaceParams:
    """Everything that decides one face's landmarks: who, which expression, how posed."""

    label: int
    intensity: float
    identity: np.ndarray  # (K,) coefficients of identity_basis
    region_gains: np.ndarray  # (5,) expression style per region
    variant: float  # weight of the class's variant field
    blend_label: int  # a second expression mixed in (compound / ambiguous faces)
    blend: float  # its intensity
    mirrored: bool  # mirror the expression field (asymmetric disgust)
    roll: float  # radians
    scale: float
    shift: tuple[float, float]  # image units


@dataclass(frozen=True)
class _Look:
    """Class-independent appearance of one sample: colours, hair, lighting, corruptions."""

    colours: dict[str, RGB]  # name -> RGB in [0, 255]
    hair_style: int  # 0 none, 1 short, 2 long
    hairline: float  # how far the hair comes down the forehead, 0..1
    brow_width: float  # brow thickness, canonical units
    gaze: tuple[float, float]  # iris offset, in [-1, 1]
    light_angle: float
    light_strength: float
    noise_sigma: float  # in grey levels
    blur_radius: float  # output pixels, 0 = no blur
    occluder: int  # 0 none, 1 sunglasses bar, 2 hand-like patch, 3 random box
    occluder_u: list[float]  # 4 uniforms placing the occluder


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t)


def _times(a: RGB, k: float | RGB) -> RGB:
    kr, kg, kb = (k, k, k) if isinstance(k, float) else k
    return (a[0] * kr, a[1] * kg, a[2] * kb)


_DARK_SKIN, _LIGHT_SKIN = (70.0, 46.0, 34.0), (248.0, 218.0, 192.0)
_DARK_HAIR, _FAIR_HAIR = (18.0, 14.0, 12.0), (205.0, 165.0, 105.0)
_IRIS_TINTS = ((90.0, 60.0, 35.0), (60.0, 90.0, 130.0), (70.0, 95.0, 60.0))


def _sample_colours(u: _Uniforms) -> dict[str, RGB]:
    """Skin, hair, background, eye and mouth colours, independent of the class."""
    skin = _times(_mix(_DARK_SKIN, _LIGHT_SKIN, u.between(0.0, 1.0)),
                  tuple(0.92 + 0.16 * v for v in u.take(3)))  # fmt: skip
    hair = _mix(_DARK_HAIR, _FAIR_HAIR, u.between(0.0, 1.0) ** 2)
    greying, grey = u.between(0.0, 1.0), u.between(120.0, 220.0)
    if greying < 0.08:
        hair = (grey, grey, grey)
    grey = u.between(10.0, 245.0)
    background = tuple(grey * (0.75 + 0.5 * v) for v in u.take(3))
    iris = _times(_IRIS_TINTS[int(u.between(0.0, 2.999))], u.between(0.4, 1.2))
    dark_hair = sum(hair) < 0.45 * sum(skin)  # else brows must stay darker than the skin
    brow = _mix(_times(skin, 0.1), hair, 0.8) if dark_hair else _times(skin, 0.45)
    return {
        "skin": skin,
        "shade": _times(skin, 0.82),
        "crease": _times(skin, 0.6),
        "hair": hair,
        "brow": brow,
        "background": background,
        "lip": _times(skin, (0.95 * (k := u.between(0.75, 0.95)), 0.66 * k, 0.68 * k)),
        "sclera": _mix(skin, (240.0, 238.0, 232.0), 0.75),
        "iris": iris,
        "pupil": (12.0, 10.0, 10.0),
        "lash": _times(skin, 0.25),
        "mouth": _times((55.0, 22.0, 24.0), u.between(0.5, 1.3)),
        "teeth": _times((235.0, 228.0, 212.0), u.between(0.75, 1.0)),
        "nostril": _times(skin, 0.35),
    }


# ---------------------------------------------------------------------------------------
# Geometry: canonical shape -> posed canvas coordinates
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pose:
    """Similarity transform canonical -> image units: ``points @ matrix.T + offset``."""

    matrix: np.ndarray  # (2, 2) rotation times scale
    offset: np.ndarray  # (2,)
    scale: float

    def apply(self, points: np.ndarray) -> np.ndarray:
        return points @ self.matrix.T + self.offset


def _clamp(value: float, lo: float, hi: float) -> float:
    return lo if value < lo else (hi if value > hi else value)


def _fit_pose(neutral: np.ndarray, params: FaceParams) -> _Pose:
    """The sample's pose, with scale and shift clamped so the face stays in the image.

    Fitted on the identity's neutral shape plus room for a dropped jaw and some bulge,
    so every expression of one identity gets the same transform and landmark
    differences between expressions are pure expression.
    """
    c, s = math.cos(params.roll), math.sin(params.roll)
    rotation = np.array([[c, -s], [s, c]])
    rotated = neutral @ rotation.T
    (lx, ly), (hx, hy) = rotated.min(axis=0).tolist(), rotated.max(axis=0).tolist()
    chin_x, chin_y = rotated[8].tolist()
    drop_x, drop_y = chin_x - 0.12 * s, chin_y + 0.12 * c  # the chin of a wide-open mouth
    lx, hx = min(lx, drop_x) - 0.02, max(hx, drop_x) + 0.02
    ly, hy = min(ly, drop_y) - 0.02, max(hy, drop_y) + 0.02
    room = 1.0 - 2.0 * _MARGIN
    scale = min(params.scale, room / (hx - lx), room / (hy - ly))
    cx, cy = _FACE_CENTRE
    shift_x = _clamp(params.shift[0], _MARGIN - cx - scale * lx, 1.0 - _MARGIN - cx - scale * hx)
    shift_y = _clamp(params.shift[1], _MARGIN - cy - scale * ly, 1.0 - _MARGIN - cy - scale * hy)
    return _Pose(matrix=scale * rotation, offset=np.array([cx + shift_x, cy + shift_y]),
                 scale=scale)  # fmt: skip


def _unit_arc(n: int, t0: float, t1: float) -> np.ndarray:
    """(n, 2) points (cos t, -sin t) from t0 to t1: the upper half of a unit circle
    (t = 0 at the image right), to scale by the half-axes (a, b) and shift."""
    t = np.linspace(t0, t1, n)
    return np.stack([np.cos(t), -np.sin(t)], axis=1)


# Head outlines are unit arcs scaled per point by (a * KA, b * (KB + hairline * KH)),
# with (a, b) the half-width of the jaw top and the height of the head above it.
_ARCS = [  # (points, KA, KB, KH)
    (_unit_arc(13, 0.0, np.pi)[1:-1], 1.0, 1.0, 0.0),  # forehead, right to left
    (_unit_arc(15, -0.1, np.pi + 0.1), 1.12, 1.2, 0.0),  # outer hair, right to left
    (_unit_arc(15, np.pi + 0.1, -0.1), 1.0, 1.0, -0.3),  # hairline, left to right
]
_ARC_UNIT = np.concatenate([points for points, *_ in _ARCS])
_ARC_KA, _ARC_KB, _ARC_KH = (
    np.concatenate([np.full(len(points), k[i]) for points, *k in _ARCS]) for i in range(3)
)
_LINE_X = np.linspace(-0.16, 0.16, 5)
#: (3 * 5, 2) forehead lines, relative to the top of the brows, curving down at the ends.
_FOREHEAD_LINES = np.concatenate(
    [np.stack([_LINE_X, 0.02 * (_LINE_X / 0.16) ** 2 - dy], axis=1) for dy in (0.045, 0.075, 0.105)]
)

# Rows of the stacked canonical point array: landmarks, arcs, python-built points, lines.
_FOREHEAD, _HAIR_OUTER, _HAIRLINE = slice(68, 79), slice(79, 94), slice(94, 109)
_NECK, _HAIR_BOTTOM = slice(109, 113), slice(113, 115)
_FOLDS, _LINES = slice(115, 121), slice(121, 136)


def _extra_points(n: list, hairline: float) -> tuple[np.ndarray, list, np.ndarray]:
    """Head arcs, neck / hair-bottom / fold points, forehead lines; canonical coordinates.

    ``n`` is the neutral shape as a python list: the skin above the brows does not
    follow the brows and the hair does not follow the jaw; the folds follow the
    expression and are added by the caller.
    """
    (x0, y0), (x16, y16) = n[0], n[16]
    cx, cy, a = (x0 + x16) / 2.0, (y0 + y16) / 2.0, (x16 - x0) / 2.0
    brow_top = min(p[1] for p in n[17:27])
    b = cy - brow_top + 0.15
    half_axes = np.stack([a * _ARC_KA, b * (_ARC_KB + hairline * _ARC_KH)], axis=1)
    arcs = _ARC_UNIT * half_axes + (cx, cy)
    (x5, y5), (x11, y11), chin_y = n[5], n[11], n[8][1] + 0.06
    outer_left, outer_right = cx - 1.12 * a * math.cos(0.1), cx + 1.12 * a * math.cos(0.1)
    built = [[x5, y5], [x11, y11], [x11 + 0.02, 1.2], [x5 - 0.02, 1.2],
             [outer_left - 0.02, chin_y], [outer_right + 0.02, chin_y]]  # fmt: skip
    return arcs, built, _FOREHEAD_LINES + (0.0, brow_top)


def _fold_points(e: list) -> list:
    """Nasolabial folds (beside the nose wing, bulging, outside the mouth corner), from
    the expressive shape ``e`` as a python list: they deepen and move with a smile."""
    folds = []
    for wing, corner, side in ((31, 48, -1.0), (35, 54, 1.0)):
        start = [e[wing][0] + side * 0.03, e[wing][1] - 0.01]
        end = [e[corner][0] + side * 0.03, e[corner][1] + 0.03]
        mid = [(start[0] + end[0]) / 2.0 + side * 0.015, (start[1] + end[1]) / 2.0]
        folds += [start, mid, end]
    return folds


def _crease_strengths(e: list, n: list) -> dict[str, float]:
    """How deep skin folds where an expression compresses it (0 = smooth, 1 = deep).

    Real creases come with the movement (smile lines, frown furrows, forehead lines,
    nose wrinkles), so they are derived from the landmark motion, not from the label.
    """
    corner_rise = (n[48][1] - e[48][1] + n[54][1] - e[54][1]) / 2.0
    lip_rise = n[51][1] - e[51][1]
    brow_rise = sum(n[i][1] - e[i][1] for i in range(17, 27)) / 10.0
    inner_pull = (e[21][0] - n[21][0]) - (e[22][0] - n[22][0])
    inner_drop = (e[21][1] - n[21][1] + e[22][1] - n[22][1]) / 2.0
    return {
        "fold": _clamp(0.25 + corner_rise / 0.04 + lip_rise / 0.04, 0.0, 1.0),
        "furrow": _clamp((inner_pull / 0.03 + inner_drop / 0.04) / 2.0, 0.0, 1.0),
        "forehead": _clamp(brow_rise / 0.045, 0.0, 1.0),
        "nose": _clamp((n[33][1] - e[33][1]) / 0.02, 0.0, 1.0),
    }


@dataclass(frozen=True)
class _Geometry:
    """One sample's posed outlines in canvas pixels (python lists, ready for PIL)."""

    points: list  # all posed points; rows as in the _FOREHEAD ... _LINES slices
    landmarks: np.ndarray  # (68, 2) the first 68 rows, as an array
    unit: float  # canvas pixels per canonical unit
    creases: dict[str, float]  # fold / furrow / forehead / nose strengths in [0, 1]

    @property
    def face(self) -> list:
        return self.points[:17] + self.points[_FOREHEAD]  # jaw left to right, forehead back

    @property
    def hair_cap(self) -> list:
        return self.points[_HAIR_OUTER] + self.points[_HAIRLINE]

    @property
    def hair_back(self) -> list:
        return self.points[_HAIR_OUTER] + self.points[_HAIR_BOTTOM]


# ---------------------------------------------------------------------------------------
# Rendering (canvas pixels; every feature is drawn through its landmarks)
# ---------------------------------------------------------------------------------------

Ink = int | tuple[int, int, int]


def _path(points: list, indices: Sequence[int]) -> list:
    """Selected points as a python list (cheaper than numpy fancy indexing)."""
    return [points[i] for i in indices]


def _lerp(a: list, b: list, t: float) -> list:
    return [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t]


class _Painter:
    """Draws onto a PIL canvas in grey ("L", the luminance of the colours) or "RGB"."""

    def __init__(self, size: int, channels: int, colours: dict[str, RGB]) -> None:
        self.grey = channels == 1
        self.colours = colours
        self.inks = {name: self.rgb(colour) for name, colour in colours.items()}
        self.image = Image.new("L" if self.grey else "RGB", (size, size), self.inks["background"])
        self.draw = ImageDraw.Draw(self.image)

    def rgb(self, colour: RGB) -> Ink:
        """The PIL fill of an RGB triple (luminance when grey)."""
        r, g, b = (_clamp(c, 0.0, 255.0) for c in colour)
        return int(0.299 * r + 0.587 * g + 0.114 * b) if self.grey else (int(r), int(g), int(b))

    def ink(self, name: str) -> Ink:
        """The PIL fill of a named palette colour."""
        return self.inks[name]

    def mix(self, a: str, b: str, t: float) -> Ink:
        """Fill between named colours ``a`` (t = 0) and ``b`` (t = 1)."""
        return self.rgb(_mix(self.colours[a], self.colours[b], t))

    def polygon(self, points: list, fill: Ink) -> None:
        self.draw.polygon(points, fill=fill)

    def line(self, points: list, fill: Ink, width: float) -> None:
        self.draw.line(points, fill=fill, width=max(1, round(width)))

    def disc(self, x: float, y: float, radius: float, fill: Ink) -> None:
        self.draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=fill)


def _paint_head(p: _Painter, g: _Geometry, look: _Look) -> None:
    """Long hair behind, neck, face, skin creases, then the hair cap over the forehead."""
    if look.hair_style == 2:
        p.polygon(g.hair_back, p.ink("hair"))
    p.polygon(g.points[_NECK], p.ink("shade"))
    p.polygon(g.face, p.ink("skin"))
    _paint_creases(p, g)
    if look.hair_style >= 1:
        p.polygon(g.hair_cap, p.ink("hair"))


def _paint_creases(p: _Painter, g: _Geometry) -> None:
    """Smile folds always (faint at rest); furrows, forehead and nose lines when present."""
    pts, u, c = g.points, g.unit, g.creases
    folds = pts[_FOLDS]
    fold_ink = p.mix("skin", "crease", 0.7 * c["fold"])
    p.line(folds[:3], fold_ink, 0.012 * u)
    p.line(folds[3:], fold_ink, 0.012 * u)
    if c["forehead"] > 0.05:
        ink = p.mix("skin", "crease", 0.6 * c["forehead"])
        lines = pts[_LINES]
        for k in range(0, len(lines), 5):
            p.line(lines[k : k + 5], ink, 0.008 * u)
    if c["furrow"] > 0.05:
        ink = p.mix("skin", "crease", 0.8 * c["furrow"])
        for side in (0.35, 0.65):
            top = _lerp(pts[21], pts[22], side)
            p.line([top, _lerp(top, pts[27], 0.8)], ink, 0.009 * u)
    if c["nose"] > 0.05:
        ink = p.mix("skin", "crease", 0.8 * c["nose"])
        # short lines across the bridge, as wide as a third of the gap between the eyes
        half_x, half_y = (pts[42][0] - pts[39][0]) * 0.18, (pts[42][1] - pts[39][1]) * 0.18
        for k in (0.7, 1.2):
            x, y = _lerp(pts[27], pts[28], k)
            p.line([[x - half_x, y - half_y], [x + half_x, y + half_y]], ink, 0.008 * u)


def _paint_brow(p: _Painter, brow: list, width: float) -> None:
    """A thick line with round joints; PIL's own joint="curve" costs more than the rest
    of the face, discs at the points do the same job."""
    ink = p.ink("brow")
    p.line(brow, ink, width)
    for k, (x, y) in enumerate(brow):
        p.disc(x, y, width * (0.3 if k == 0 else 0.5), ink)  # thinner at the outer end


def _paint_eye(p: _Painter, eye: list, gaze: tuple[float, float], unit: float) -> None:
    """Sclera, iris and pupil (shrunk to fit a narrowed eye), lash line, lower lid."""
    p.polygon(eye, p.ink("sclera"))
    (x0, y0), (x1, y1), (x2, y2), (x3, y3), (x4, y4), (x5, y5) = eye
    ux, uy, lx, ly = (x1 + x2) / 2.0, (y1 + y2) / 2.0, (x4 + x5) / 2.0, (y4 + y5) / 2.0
    opening = math.hypot(lx - ux, ly - uy)
    half_width = math.hypot(x3 - x0, y3 - y0) / 2.0
    cx = (ux + lx) / 2.0 + gaze[0] * half_width * 0.4
    cy = (uy + ly) / 2.0 + gaze[1] * opening * 0.2
    radius = min(0.034 * unit, 0.55 * opening)
    p.disc(cx, cy, radius, p.ink("iris"))
    p.disc(cx, cy, radius * 0.45, p.ink("pupil"))
    p.line(eye[:4], p.ink("lash"), 0.014 * unit)
    p.line(eye[3:] + eye[:1], p.mix("skin", "lash", 0.5), 0.007 * unit)


def _paint_nose(p: _Painter, pts: list, unit: float) -> None:
    p.line(_path(pts, (28, 29, 31)), p.mix("skin", "crease", 0.35), 0.007 * unit)
    p.line(_path(pts, (28, 29, 35)), p.mix("skin", "crease", 0.2), 0.007 * unit)
    p.line(pts[31:36], p.mix("skin", "crease", 0.8), 0.01 * unit)
    (tip_x, tip_y), (base_x, base_y) = pts[30], pts[33]
    up_x, up_y = (tip_x - base_x) * 0.15, (tip_y - base_y) * 0.15
    for x, y in (pts[32], pts[34]):
        p.disc(x + up_x, y + up_y, 0.013 * unit, p.ink("nostril"))


def _paint_mouth(p: _Painter, pts: list, unit: float) -> None:
    """Lips; when open, a dark interior with an upper row of teeth; the lip line."""
    p.polygon(pts[48:60], p.ink("lip"))
    upper, lower = pts[61:64], _path(pts, (67, 66, 65))
    pairs = list(zip(upper, lower, strict=True))
    opening = sum(math.hypot(lo[0] - up[0], lo[1] - up[1]) for up, lo in pairs) / 3.0
    if opening > 0.006 * unit:
        p.polygon(pts[60:68], p.ink("mouth"))
        depth = min(0.45, 0.02 * unit / opening)
        teeth = [_lerp(up, lo, depth) for up, lo in pairs]
        p.polygon(pts[60:65] + teeth[::-1], p.ink("teeth"))
    lip_line = p.mix("lip", "mouth", 0.7)
    p.line(pts[60:65], lip_line, 0.008 * unit)
    p.line(pts[64:68] + pts[60:61], lip_line, 0.006 * unit)


def _paint_features(p: _Painter, g: _Geometry, look: _Look) -> None:
    pts, u = g.points, g.unit
    _paint_brow(p, pts[17:22], look.brow_width * u)
    _paint_brow(p, pts[26:21:-1], look.brow_width * u)
    _paint_eye(p, pts[36:42], look.gaze, u)
    _paint_eye(p, pts[42:48], look.gaze, u)
    _paint_nose(p, pts, u)
    _paint_mouth(p, pts, u)


def _paint_occluder(p: _Painter, g: _Geometry, look: _Look, size: int) -> None:
    """Sunglasses bar, hand-like skin patch or random box; landmarks stay ground truth."""
    pts, u, r = g.points, g.unit, look.occluder_u
    if look.occluder == 1:
        (ax, ay), (bx, by) = pts[36], pts[45]
        dx, dy = (bx - ax) * 0.12, (by - ay) * 0.12
        norm = math.hypot(bx - ax, by - ay) + 1e-9
        half = (0.05 + 0.03 * r[0]) * u / norm
        nx, ny = -(by - ay) * half, (bx - ax) * half
        a, b = (ax - dx, ay - dy), (bx + dx, by + dy)
        bar = [(a[0] - nx, a[1] - ny), (b[0] - nx, b[1] - ny), (b[0] + nx, b[1] + ny),
               (a[0] + nx, a[1] + ny)]  # fmt: skip
        grey = 10.0 + 60.0 * r[1]
        p.polygon(bar, p.rgb((grey, grey, grey)))
    elif look.occluder == 2:
        x, y = pts[int(r[0] * 67.99)]
        radius = (0.08 + 0.08 * r[1]) * u
        box = [x - radius, y - radius * 1.3, x + radius, y + radius * 1.3]
        p.draw.ellipse(box, fill=p.rgb(_times(p.colours["skin"], 0.8 + 0.4 * r[2])))
    elif look.occluder == 3:
        x, y = r[0] * size, r[1] * size
        w, h = (0.15 + 0.25 * r[2]) * size, (0.1 + 0.2 * r[3]) * size
        grey = 255.0 * r[2]
        p.draw.rectangle([x - w / 2, y - h / 2, x + w / 2, y + h / 2],
                         fill=p.rgb((grey, grey, grey)))  # fmt: skip


@lru_cache(maxsize=8)
def _ramps(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal and vertical ramps in [-1, 1] for the lighting gradient."""
    ramp = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    return ramp[None, :], ramp[:, None]


def _finish(image: Image.Image, look: _Look, size: int, rng: np.random.Generator) -> np.ndarray:
    """Downsample, blur, light and add noise; returns uint8 (H, W) or (H, W, 3)."""
    small = image.reduce(SUPERSAMPLE)
    if look.blur_radius > 0:
        small = small.filter(ImageFilter.GaussianBlur(look.blur_radius))
    pixels = np.asarray(small, dtype=np.float32)
    across, down = _ramps(size)
    strength = look.light_strength
    gain = (1.0 + strength * math.cos(look.light_angle) * across) + (
        strength * math.sin(look.light_angle) * down
    )
    pixels = pixels * (gain if pixels.ndim == 2 else gain[..., None])
    if look.noise_sigma > 0:
        noise = rng.standard_normal(pixels.shape, dtype=np.float32)
        pixels += noise * np.float32(look.noise_sigma)
    pixels += 0.5  # round, not truncate
    return np.clip(pixels, 0.0, 255.0, out=pixels).astype(np.uint8)


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
    renders the luminance of the same scene directly in grey.
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
            split: _check_number(f"{split}_size", n, 0, 10**9, integer=True)
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
        geometry = self._geometry(params, look)
        canvas = self.image_size * SUPERSAMPLE
        painter = _Painter(canvas, self.channels, look.colours)
        _paint_head(painter, geometry, look)
        _paint_features(painter, geometry, look)
        if look.occluder:
            _paint_occluder(painter, geometry, look, canvas)
        image = _finish(painter.image, look, self.image_size, rng)
        landmarks = (geometry.landmarks + 0.5) / canvas
        landmarks = np.clip(landmarks, 0.0, 1.0, out=landmarks).astype(np.float32)
        return RawSample(image=image, label=params.label, landmarks=landmarks, landmarks_valid=True)

    def sample_digest(self, split: str, index: int) -> bytes:
        """Content digest for the landmark cache: the image follows from the config."""
        return f"{self.fingerprint()}/{split}/{index}".encode()

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
        params = self._override(self.face_params(split, index), label, intensity)
        neutral = self._neutral(params)
        posed = _fit_pose(neutral, params).apply(self._shape(params, neutral))
        return np.clip(posed, 0.0, 1.0).astype(np.float32)

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
        if split not in self._labels:
            rng = np.random.default_rng([self.seed, _LABEL_STREAM + _SPLIT_IDS[split]])
            n = self.sizes[split]
            self._labels[split] = rng.choice(len(CLASS_NAMES), size=n, p=self.class_probs)
        return self._labels[split]

    def _sample(self, split: str, index: int) -> tuple[FaceParams, _Look, np.random.Generator]:
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
            identity=u.symmetric(len(_IDENTITY)) * self.identity_jitter,
            region_gains=1.0 + _STYLE_SPREAD * u.symmetric(_N_REGIONS),
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

    def _sample_look(self, u: _Uniforms) -> _Look:
        colours = _sample_colours(u)
        hair_pick = u.between(0.0, 1.0)
        blurred, blur_radius = u.between(0.0, 1.0) < self.blur_prob, u.between(0.4, 1.0)
        occluded, occluder = u.between(0.0, 1.0) < self.occluder_prob, u.between(1.0, 3.999)
        return _Look(
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

    @staticmethod
    def _neutral(params: FaceParams) -> np.ndarray:
        """The identity's resting shape, canonical coordinates."""
        return (_MEAN_FLAT + params.identity @ _IDENTITY_FLAT).reshape(NUM_POINTS, 2)

    @staticmethod
    def _shape(params: FaceParams, neutral: np.ndarray) -> np.ndarray:
        """The identity's shape with the sample's expression, canonical coordinates."""
        label, other = params.label, params.blend_label
        field = params.intensity * (_PRIMARY[label] + params.variant * _VARIANT[label])
        field = field + params.blend * (_PRIMARY[other] + params.variant * _VARIANT[other])
        if params.mirrored:
            field = field[FLIP_PERMUTATION] * _MIRROR_X
        return neutral + params.region_gains[_REGION][:, None] * field

    def _geometry(self, params: FaceParams, look: _Look) -> _Geometry:
        """Shape, head outlines and creases, posed once into canvas pixels."""
        neutral = self._neutral(params)
        shape = self._shape(params, neutral)
        pose = _fit_pose(neutral, params)
        n, e = neutral.tolist(), shape.tolist()
        arcs, built, lines = _extra_points(n, look.hairline)
        canonical = np.concatenate([shape, arcs, np.array(built + _fold_points(e)), lines])
        canvas = self.image_size * SUPERSAMPLE
        posed = canonical @ (pose.matrix.T * canvas) + (pose.offset * canvas - 0.5)
        return _Geometry(
            points=posed.tolist(),
            landmarks=posed[:NUM_POINTS],
            unit=canvas * pose.scale,
            creases=_crease_strengths(e, n),
        )
