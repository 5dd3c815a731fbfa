"""Shape and pose of the synthetic faces: the 68-point mean face, the identity and
expression displacement fields, and posing one face into canvas pixels with the head
outlines and skin creases the painter draws through.

Canonical coordinates: x to the image right, y down, units of image width, origin between
eyes and nose. Landmarks follow the iBUG 68-point order (``landmarks.schema``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fer_lightning.data.landmarks.schema import (  # mean_face lives in schema (lowest floor)
    FACE_CENTRE,
    FLIP_PERMUTATION,
    GROUPS,
    NUM_POINTS,
    mean_face,
)

CLASS_NAMES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
ANGRY, DISGUST, FEAR, HAPPY, SAD, SURPRISE, NEUTRAL = range(7)

_MARGIN = 0.01  # landmarks are kept this far inside the image border


# ---------------------------------------------------------------------------------------
# Shape model: identity basis, expression fields around schema.mean_face (canonical coordinates:
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
# Per-sample shape parameters
# ---------------------------------------------------------------------------------------


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


def clamp(value: float, lo: float, hi: float) -> float:
    """``value`` limited to [lo, hi] (python floats: cheaper than numpy for scalars)."""
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
    cx, cy = FACE_CENTRE
    shift_x = clamp(params.shift[0], _MARGIN - cx - scale * lx, 1.0 - _MARGIN - cx - scale * hx)
    shift_y = clamp(params.shift[1], _MARGIN - cy - scale * ly, 1.0 - _MARGIN - cy - scale * hy)
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
        "fold": clamp(0.25 + corner_rise / 0.04 + lip_rise / 0.04, 0.0, 1.0),
        "furrow": clamp((inner_pull / 0.03 + inner_drop / 0.04) / 2.0, 0.0, 1.0),
        "forehead": clamp(brow_rise / 0.045, 0.0, 1.0),
        "nose": clamp((n[33][1] - e[33][1]) / 0.02, 0.0, 1.0),
    }


@dataclass(frozen=True)
class Geometry:
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

    @property
    def neck(self) -> list:
        return self.points[_NECK]

    @property
    def folds(self) -> list:
        """Two nasolabial folds, three points each."""
        return self.points[_FOLDS]

    @property
    def forehead_lines(self) -> list:
        """Three forehead lines, five points each."""
        return self.points[_LINES]


# ---------------------------------------------------------------------------------------
# One face: shape with expression, posed
# ---------------------------------------------------------------------------------------

#: Number of identity coefficients and of expression-style regions a FaceParams holds.
NUM_IDENTITY_FIELDS = len(_IDENTITY)
NUM_REGIONS = _N_REGIONS


def neutral_shape(params: FaceParams) -> np.ndarray:
    """The identity's resting shape, canonical coordinates."""
    return (_MEAN_FLAT + params.identity @ _IDENTITY_FLAT).reshape(NUM_POINTS, 2)


def expressive_shape(params: FaceParams, neutral: np.ndarray) -> np.ndarray:
    """The identity's shape with the sample's expression, canonical coordinates."""
    label, other = params.label, params.blend_label
    field = params.intensity * (_PRIMARY[label] + params.variant * _VARIANT[label])
    field = field + params.blend * (_PRIMARY[other] + params.variant * _VARIANT[other])
    if params.mirrored:
        field = field[FLIP_PERMUTATION] * _MIRROR_X
    return neutral + params.region_gains[_REGION][:, None] * field


def posed_landmarks(params: FaceParams) -> np.ndarray:
    """(68, 2) landmarks of ``params`` in image units [0, 1], without rendering."""
    neutral = neutral_shape(params)
    posed = _fit_pose(neutral, params).apply(expressive_shape(params, neutral))
    return np.clip(posed, 0.0, 1.0).astype(np.float32)


def face_geometry(params: FaceParams, hairline: float, canvas: int) -> Geometry:
    """Shape, head outlines and creases of ``params``, posed once into the pixels of a
    ``canvas`` x ``canvas`` drawing."""
    neutral = neutral_shape(params)
    shape = expressive_shape(params, neutral)
    pose = _fit_pose(neutral, params)
    n, e = neutral.tolist(), shape.tolist()
    arcs, built, lines = _extra_points(n, hairline)
    canonical = np.concatenate([shape, arcs, np.array(built + _fold_points(e)), lines])
    posed = canonical @ (pose.matrix.T * canvas) + (pose.offset * canvas - 0.5)
    return Geometry(
        points=posed.tolist(),
        landmarks=posed[:NUM_POINTS],
        unit=canvas * pose.scale,
        creases=_crease_strengths(e, n),
    )
