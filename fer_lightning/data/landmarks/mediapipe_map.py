"""MediaPipe face mesh (468 / 478 points) -> the 68-point iBUG / dlib scheme.

No official correspondence exists; this is the commonly used one (after the public
PeizhiYan/Mediapipe_2_Dlib_Landmarks; docs/landmarks.md lists it): each iBUG point is
one mesh vertex or the mean of two. The 10 iris points that ``refine_landmarks`` adds
(468-477) are not used, so 468- and 478-point meshes map alike.
"""

from __future__ import annotations

import numpy as np

#: Mesh vertex (or pair averaged) for each iBUG point 0..67.
MP_TO_IBUG: tuple[int | tuple[int, int], ...] = (
    # jaw 0-16
    127, 234, 93, (132, 58), (58, 172), 136, 150, 176, 152, 400, 379, 365, (397, 288), 361,
    323, 454, 356,
    # right brow 17-21, left brow 22-26
    70, 63, 105, 66, 107,
    336, 296, 334, 293, 300,
    # nose 27-35
    (168, 6), (197, 195), 5, 4, 75, 97, 2, 326, 305,
    # right eye 36-41, left eye 42-47
    33, 160, 158, 133, 153, 144,
    362, 385, 387, 263, 373, 380,
    # outer lip 48-59, inner lip 60-67
    61, 39, 37, 0, 267, 269, 291, 321, 314, 17, 84, 91,
    78, 82, 13, 312, 308, 317, 14, 87,
)


def _pair_indices() -> tuple[np.ndarray, np.ndarray]:
    pairs = [entry if isinstance(entry, tuple) else (entry, entry) for entry in MP_TO_IBUG]
    first, second = zip(*pairs, strict=True)
    return np.asarray(first), np.asarray(second)


FIRST, SECOND = _pair_indices()


def mesh_to_68(mesh: np.ndarray) -> np.ndarray:
    """(468 or 478, D) mesh -> (68, D) iBUG-ordered points (pairs averaged), float32."""
    mesh = np.asarray(mesh, np.float32)
    if mesh.ndim != 2 or mesh.shape[0] < 468:
        raise ValueError(f"expected a MediaPipe mesh of shape (468 or 478, D), got {mesh.shape}")
    return (mesh[FIRST] + mesh[SECOND]) / 2.0
