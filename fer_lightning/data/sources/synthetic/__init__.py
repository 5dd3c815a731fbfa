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

The package is split by concern: ``geometry`` (shape model and pose, steps 1-4),
``paint`` (step 5) and ``source`` (the random draws and ``SyntheticFaces``).
"""

from fer_lightning.data.sources.synthetic.geometry import (
    ANGRY,
    CLASS_NAMES,
    DISGUST,
    FEAR,
    HAPPY,
    NEUTRAL,
    SAD,
    SURPRISE,
    FaceParams,
    expression_fields,
    identity_basis,
    mean_face,
)
from fer_lightning.data.sources.synthetic.paint import SUPERSAMPLE
from fer_lightning.data.sources.synthetic.source import GENERATOR_VERSION, SyntheticFaces

__all__ = [
    "ANGRY", "CLASS_NAMES", "DISGUST", "FEAR", "GENERATOR_VERSION", "HAPPY", "NEUTRAL", "SAD",
    "SUPERSAMPLE", "SURPRISE", "FaceParams", "SyntheticFaces", "expression_fields",
    "identity_basis", "mean_face",
]
