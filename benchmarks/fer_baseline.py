"""Latency of the `fer` package's FER class on photos; runs in fer's own environment.

Not part of fer_lightning (imports neither it nor this repository's code): the inference
benchmark (``benchmarks/inference.py``) starts it with the Python of a separate venv,
because `fer` needs TensorFlow and setuptools < 81. Recipe (see docs/inference.md):

    python3.11 -m venv .venv-fer
    .venv-fer/bin/pip install "setuptools<81" torch==2.14.1 torchvision==0.29.1
    .venv-fer/bin/pip install --no-deps facenet-pytorch==2.6.0 fer==25.10.3
    .venv-fer/bin/pip install tensorflow opencv-contrib-python matplotlib \\
        pandas requests tqdm "moviepy<2" ffmpeg-python Pillow

Usage: ``python fer_baseline.py --repeats 5 --threads 1 photo1.png ...``; prints one JSON
object: the median milliseconds of each photo end to end (MTCNN detection + crop +
classify), the median for classification alone (faces given), faces found per photo,
versions.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("photos", nargs="+")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    importlib.import_module("facenet_pytorch")  # fer imports MTCNN from it: load it first
    import cv2
    import fer
    from fer.fer import FER

    cascade = os.path.join(os.path.dirname(fer.__file__), "data",
                           "haarcascade_frontalface_default.xml")
    detector = FER(mtcnn=True, cascade_file=cascade)
    images = [cv2.imread(path) for path in args.photos]  # BGR, as fer documents
    for image in images:  # warm-up: first MTCNN / TFLite calls allocate
        detector.detect_emotions(image)
    per_photo, per_photo_rgb, classify_only, faces = [], [], [], []
    for image in images:
        rectangles = detector.find_faces(image, bgr=True)
        faces.append(len(rectangles))
        times, times_rgb = [], []
        # fer hands its BGR input to MTCNN, which expects RGB; given RGB, MTCNN sees the
        # colours it was trained on (and proposes more candidate windows: slower).
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        for _ in range(args.repeats):
            start = time.perf_counter()
            detector.detect_emotions(image)
            times.append(time.perf_counter() - start)
            start = time.perf_counter()
            detector.detect_emotions(rgb)
            times_rgb.append(time.perf_counter() - start)
            if rectangles:
                start = time.perf_counter()
                detector.detect_emotions(image, face_rectangles=rectangles)
                classify_only.append(time.perf_counter() - start)
        per_photo.append(1000 * statistics.median(times))
        per_photo_rgb.append(1000 * statistics.median(times_rgb))
    import tensorflow

    print(json.dumps({
        "per_photo_ms": per_photo, "per_photo_rgb_ms": per_photo_rgb,
        "classify_ms": 1000 * statistics.median(classify_only) if classify_only else None,
        "faces": faces, "fer": fer.__version__, "tensorflow": tensorflow.__version__,
        "classifier": "fer's quantized TFLite model (its default), 64x64 grey",
    }))


if __name__ == "__main__":
    main()
