"""The landmark schemes (68 iBUG / dlib points, MTCNN's 5): index groups, horizontal-flip
permutations, organ centres and the mean face.

Every landmark in fer_lightning is stored in one of these orders, whatever backend
produced it, so that encodings, augmentation, region boxes and the quality filter can
rely on fixed indices. This module imports nothing of the project: it is the lowest
floor, and sources, the cache and the encodings all import from it (docs/landmarks.md
shows the scheme).
"""

from __future__ import annotations

from typing import Any

import numpy as np

NUM_POINTS = 68

#: Index ranges (start, stop) of each facial part. "right" is the subject's right,
#: which appears on the left of an un-mirrored image (iBUG convention).
GROUPS: dict[str, tuple[int, int]] = {
    "jaw": (0, 17),
    "right_brow": (17, 22),
    "left_brow": (22, 27),
    "nose_bridge": (27, 31),
    "nose_lower": (31, 36),
    "right_eye": (36, 42),
    "left_eye": (42, 48),
    "outer_lip": (48, 60),
    "inner_lip": (60, 68),
}

#: Groups drawn as closed contours (the last point joins the first).
CLOSED_GROUPS = ("right_eye", "left_eye", "outer_lip", "inner_lip")


def _mirror_pairs() -> list[tuple[int, int]]:
    jaw = [(i, 16 - i) for i in range(8)]
    brows = [(17 + i, 26 - i) for i in range(5)]
    nose = [(31, 35), (32, 34)]
    eyes = [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
    outer_lip = [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]
    inner_lip = [(60, 64), (61, 63), (65, 67)]
    return jaw + brows + nose + eyes + outer_lip + inner_lip


def flip_permutation() -> np.ndarray:
    """Index permutation that relabels points after a horizontal image flip.

    Mirroring the x coordinate alone turns the left eye into a second "right eye";
    after ``x -> 1 - x`` the point stored at ``perm[i]`` becomes point ``i``.
    """
    perm = np.arange(NUM_POINTS)
    for a, b in _mirror_pairs():
        perm[a], perm[b] = b, a
    return perm


FLIP_PERMUTATION: np.ndarray = flip_permutation()

#: MTCNN's five points, in MTCNN's order: the eye on the image's left (the subject's
#: right), the other eye, the nose tip, the image-left mouth corner, the other corner.
FIVE_POINT_NAMES = ("right_eye", "left_eye", "nose", "mouth_right", "mouth_left")
#: After a flip the image-left eye is the former image-right one: swap eyes and corners.
FIVE_POINT_FLIP_PERMUTATION: np.ndarray = np.array([1, 0, 2, 4, 3])


def flip_permutation_for(num_points: int) -> np.ndarray:
    """The flip permutation of a landmark scheme, by its number of points (68 or 5)."""
    permutations = {NUM_POINTS: FLIP_PERMUTATION, 5: FIVE_POINT_FLIP_PERMUTATION}
    if num_points not in permutations:
        raise ValueError(f"no flip permutation for {num_points}-point landmarks; "
                         f"known schemes: {sorted(permutations)} points")
    return permutations[num_points]


#: The emotion regions of MS-FPN (Zhang et al., Sec. 3.1), in the order of the `regions`
#: encoding.
#: Left and right are the subject's, as in iBUG (left eye = points 42-47).
REGION_NAMES = ("face", "left_eye", "right_eye", "nose", "mouth")


def contour_segments() -> np.ndarray:
    """(S, 2) array of point-index pairs joined when landmarks are drawn as contours."""
    segments: list[tuple[int, int]] = []
    for name, (start, stop) in GROUPS.items():
        segments += [(i, i + 1) for i in range(start, stop - 1)]
        if name in CLOSED_GROUPS:
            segments.append((stop - 1, start))
    return np.asarray(segments, dtype=np.int64)


CONTOUR_SEGMENTS: np.ndarray = contour_segments()


def organ_centres(points: Any) -> tuple[Any, Any, Any, Any, Any]:
    """Image-left eye, image-right eye, nose, image-left and image-right mouth corner of
    (B, P, 2) landmarks (numpy or torch, 68 or 5 points), each (B, 2).

    The image-left eye is the subject's right one (iBUG 36-41, MTCNN's first point). The
    68-point nose sits 70 % of the way from the bridge's mean to the tip (30), where
    MTCNN puts its nose point.
    """
    if points.shape[1] == NUM_POINTS:
        nose = points[:, slice(*GROUPS["nose_bridge"])].mean(1) * 0.3 + points[:, 30] * 0.7
        return (points[:, slice(*GROUPS["right_eye"])].mean(1),
                points[:, slice(*GROUPS["left_eye"])].mean(1), nose, points[:, 48],
                points[:, 54])
    if points.shape[1] == len(FIVE_POINT_NAMES):
        return points[:, 0], points[:, 1], points[:, 2], points[:, 3], points[:, 4]
    raise ValueError(f"expected 68-point or 5-point landmarks, got {points.shape[1]} points")


# -- the mean face ---------------------------------------------------------------------


def _eye(cx: float, cy: float = -0.11, half_w: float = 0.075) -> np.ndarray:
    """Six eye points: the corner nearer the image left first, then upper lid, far corner,
    lower lid. That order is iBUG's for both eyes (36 outer right, 42 inner left)."""
    up, down = 0.034, 0.027
    return np.array(
        [
            [cx - half_w, cy],
            [cx - half_w / 3, cy - up],
            [cx + half_w / 3, cy - up],
            [cx + half_w, cy],
            [cx + half_w / 3, cy + down],
            [cx - half_w / 3, cy + down],
        ]
    )


def mean_face() -> np.ndarray:
    """(68, 2) landmarks of the mean neutral face in canonical coordinates, iBUG order:
    x to the image right, y down, in units of the image width, origin between the eyes
    and the nose. The synthetic faces are drawn around it; shifted by ``FACE_CENTRE`` it
    is the fallback shape of faces no backend found (``canonical_mean_shape``)."""
    t = np.linspace(0.0, np.pi, 17)
    jaw = np.stack([-0.39 * np.cos(t), -0.08 + 0.44 * np.sin(t) ** 0.8], axis=1)
    right_brow = np.array(
        [[-0.34, -0.185], [-0.28, -0.215], [-0.21, -0.228], [-0.14, -0.222], [-0.075, -0.205]]
    )
    left_brow = right_brow[::-1] * [-1.0, 1.0]
    bridge = np.array([[0.0, -0.14], [0.0, -0.085], [0.0, -0.03], [0.0, 0.03]])
    nose = np.array([[-0.06, 0.075], [-0.03, 0.09], [0.0, 0.098], [0.03, 0.09], [0.06, 0.075]])
    outer_lip = np.array(
        [
            [-0.13, 0.22], [-0.085, 0.194], [-0.035, 0.178], [0.0, 0.184], [0.035, 0.178],
            [0.085, 0.194], [0.13, 0.22], [0.085, 0.254], [0.04, 0.27], [0.0, 0.273],
            [-0.04, 0.27], [-0.085, 0.254],
        ]
    )  # fmt: skip
    inner_lip = np.array(
        [
            [-0.11, 0.22], [-0.04, 0.214], [0.0, 0.215], [0.04, 0.214],
            [0.11, 0.22], [0.04, 0.225], [0.0, 0.226], [-0.04, 0.225],
        ]
    )  # fmt: skip
    parts = [jaw, right_brow, left_brow, bridge, nose, _eye(-0.17), _eye(0.17)]
    return np.concatenate(parts + [outer_lip, inner_lip]).astype(np.float64)


#: Where ``mean_face``'s origin sits in a FER2013-like face crop, in [0, 1] coordinates.
FACE_CENTRE = (0.5, 0.47)


def canonical_mean_shape(num_points: int) -> np.ndarray:
    """A neutral frontal face in [0, 1] image coordinates, centred like a FER2013 crop:
    the mean face (68 points), or its 5 MTCNN points (eye centres, nose, mouth corners,
    in image order). Float32."""
    face = (mean_face() + np.array(FACE_CENTRE))[None].astype(np.float32)
    if num_points == NUM_POINTS:
        return face[0]
    if num_points == len(FIVE_POINT_NAMES):
        left_eye, right_eye, _, left_mouth, right_mouth = organ_centres(face)
        return np.concatenate([left_eye, right_eye, face[:, 30], left_mouth, right_mouth]
                              ).astype(np.float32)
    raise ValueError(f"no canonical mean shape for {num_points} points (68 or 5)")
