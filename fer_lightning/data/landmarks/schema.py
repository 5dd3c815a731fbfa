"""The 68-point iBUG / dlib landmark scheme: index groups and the horizontal-flip permutation.

Every landmark in fer_lightning is stored in this order, whatever backend produced it,
so that encodings, augmentation and region boxes can rely on fixed indices.
"""

from __future__ import annotations

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


#: The emotion regions of seed 003 (Sec. 3.2), in the order of the `regions` encoding.
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
