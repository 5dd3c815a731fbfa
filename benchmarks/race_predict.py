"""Our own ``predict`` (``detector=haar``) against the `fer` package on a folder of real photos.

benchmarks/race_fer.py runs fer's pipeline on both sides; here our side is our code:
``python -m fer_lightning.predict input=DIR detector=haar`` (OpenCV's Haar cascade with
fer's settings, a square crop 10 px larger on every side, our grey conversion and
``resize=linear``, the resampling fer uses; ``antialias``, predict's default, as a
fourth argument) for the top classes, and its Python API (``Predictor``, the code the
command runs) for the timings, against ``FER(use_tflite=False)`` (the same Keras
weights). Run from the repository root::

    python -m benchmarks.race_predict folder /tmp/race_photos              # project venv
    for i in 1 2 3; do                                                     # interleaved
      /tmp/kerasenv/bin/python benchmarks/race_predict.py fer /tmp/race_photos /tmp/race_fer_$i.json
      python -m benchmarks.race_predict ours /tmp/race_photos /tmp/race_ours_$i.json
    done
    python -m benchmarks.race_predict compare /tmp/race_fer_*.json -- /tmp/race_ours_*.json

The folder: skimage's astronaut, matplotlib's grace_hopper, their mirror images, and the
first ``LFW_FACES`` faces of ``skimage.data.lfw_subset()`` (25 x 25) enlarged to 150 px
on a 300 x 300 canvas of their own mean grey (Haar needs faces of 50 px or more).
Whole processes (start-up included), the two commands in turn::

    OMP_NUM_THREADS=1 farm-bench -n 3 --timeout 600 -- python -m fer_lightning.predict \
      input=/tmp/race_photos detector=haar resize=linear \
      ckpt_path=weights/fer2013_mini_xception.ckpt out=/tmp/race_cmd progress=false \
      --vs '/tmp/kerasenv/bin/python benchmarks/race_predict.py fer-folder /tmp/race_photos'

Latency: median of ``REPEATS`` calls per photo at batch 1 (the four photos) after a
warm-up; throughput: the whole folder, images per second. One thread each side.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

EMOTIONS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
ROOT = Path(__file__).resolve().parent.parent
CKPT = ROOT / "weights" / "fer2013_mini_xception.ckpt"
PHOTOS = ("astronaut.png", "astronaut_mirrored.png", "grace_hopper.png",
          "grace_hopper_mirrored.png")
LFW_FACES, FACE_SIZE, CANVAS = 40, 150, 300
REPEATS = 10


def make_folder(folder: Path) -> None:
    """Write the race's photos (module docstring) as PNG files into ``folder``."""
    import matplotlib.cbook
    import skimage.data
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    hopper = np.asarray(Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")))
    for name, image in (("astronaut", skimage.data.astronaut()), ("grace_hopper", hopper)):
        Image.fromarray(image).save(folder / f"{name}.png")
        Image.fromarray(np.ascontiguousarray(image[:, ::-1])).save(
            folder / f"{name}_mirrored.png")
    faces = skimage.data.lfw_subset()[:LFW_FACES]
    for i, face in enumerate(faces):
        grey = Image.fromarray(np.uint8(np.round(face * 255)))
        canvas = Image.new("L", (CANVAS, CANVAS), int(round(face.mean() * 255)))
        offset = (CANVAS - FACE_SIZE) // 2
        canvas.paste(grey.resize((FACE_SIZE, FACE_SIZE), Image.BICUBIC), (offset, offset))
        canvas.convert("RGB").save(folder / f"lfw_{i:03d}.png")


def files_of(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png"))


def timed(run, files: list[Path]) -> dict:
    """Batch-1 latency (ms) per photo and throughput (images/s) of ``run(path)``."""
    latency = {}
    for path in (p for p in files if p.name in PHOTOS):
        run(path)
        times = []
        for _ in range(REPEATS):
            start = time.perf_counter()
            run(path)
            times.append(time.perf_counter() - start)
        latency[path.name] = statistics.median(times) * 1000
    start = time.perf_counter()
    for path in files:
        run(path)
    return {"latency_ms": latency, "images_per_s": len(files) / (time.perf_counter() - start)}


def run_fer(folder: Path) -> dict:
    """fer's faces (box xywh, top class, probabilities) per file and its timings."""
    import tensorflow as tf
    from fer.fer import FER

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    detector = FER(use_tflite=False)
    files = files_of(folder)
    faces = {}
    for path in files:
        faces[path.name] = [
            {"box": [int(v) for v in face["box"]],
             "label": max(face["emotions"], key=face["emotions"].get),
             "probs": [face["emotions"][e] for e in EMOTIONS]}
            for face in detector.detect_emotions(str(path))]
    return {"tool": f"fer (Keras, tensorflow {tf.__version__})", "faces": faces,
            **timed(lambda path: detector.detect_emotions(str(path)), files)}


def run_fer_folder(folder: Path) -> None:
    """fer over the folder once, printing one line per face: the side of a whole-process
    race (``farm-bench``) with ``python -m fer_lightning.predict``."""
    import tensorflow as tf
    from fer.fer import FER

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    detector = FER(use_tflite=False)
    for path in files_of(folder):
        for face in detector.detect_emotions(str(path)):
            print(path.name, face["box"], max(face["emotions"], key=face["emotions"].get))


def command_faces(folder: Path, out: Path, resize: str) -> dict:
    """Faces per file from ``python -m fer_lightning.predict input=folder detector=haar
    resize=...`` (box as xywh like fer's)."""
    import csv

    subprocess.run([sys.executable, "-m", "fer_lightning.predict", f"input={folder}",
                    "detector=haar", f"resize={resize}", f"ckpt_path={CKPT}", f"out={out}",
                    "progress=false"],
                   check=True, cwd=ROOT, capture_output=True)
    faces: dict[str, list] = {}
    with (out / "predictions.csv").open() as handle:
        for row in csv.DictReader(handle):
            faces.setdefault(row["file"], [])
            if row["status"] != "ok":
                continue
            x0, y0, x1, y1 = (int(float(row[k])) for k in ("x0", "y0", "x1", "y1"))
            faces[row["file"]].append({"box": [x0, y0, x1 - x0, y1 - y0],
                                       "label": row["label"],
                                       "probs": [float(row[f"p_{e}"]) for e in EMOTIONS]})
    return faces


def run_ours(folder: Path, out: Path, resize: str) -> dict:
    """The command's faces per file, and the timings of its Python API (``Predictor``)."""
    import torch

    from fer_lightning.inference.predictor import Predictor

    torch.set_num_threads(1)
    faces = command_faces(folder, out, resize)
    predictor = Predictor.from_checkpoint(CKPT, detector="haar", batch_size=1, resize=resize)
    return {"tool": f"fer_lightning predict detector=haar resize={resize} "
                    f"(torch {torch.__version__})",
            "faces": faces, **timed(predictor.predict, files_of(folder))}


def matched(fer_faces: list, ours: list) -> list[tuple[dict, dict | None]]:
    """Each fer face with our face of the same box (None: we have no such box)."""
    by_box = {tuple(face["box"]): face for face in ours}
    return [(face, by_box.get(tuple(face["box"]))) for face in fer_faces]


def compare(fer_files: list[str], ours_files: list[str]) -> str:
    """Agreement (from the first pair) and timing ratios (ours / fer per round) as markdown."""
    fer_runs = [json.loads(Path(f).read_text()) for f in fer_files]
    ours_runs = [json.loads(Path(f).read_text()) for f in ours_files]
    fer, ours = fer_runs[0], ours_runs[0]
    same_box = agree = fer_total = 0
    only_ours, largest_gap = 0, 0.0
    lines = []
    for name, faces in fer["faces"].items():
        mine = ours["faces"].get(name, [])
        fer_total += len(faces)
        only_ours += len({tuple(f["box"]) for f in mine} - {tuple(f["box"]) for f in faces})
        for theirs, own in matched(faces, mine):
            if own is None:
                lines.append(f"- {name}: fer box {theirs['box']} ({theirs['label']}) not "
                             f"found by ours (boxes {[f['box'] for f in mine]})")
                continue
            same_box += 1
            largest_gap = max([largest_gap] + [abs(x - y) for x, y in
                                               zip(own["probs"], theirs["probs"], strict=True)])
            if own["label"] == theirs["label"]:
                agree += 1
            else:
                gap = max(abs(a - b) for a, b in zip(own["probs"], theirs["probs"], strict=True))
                lines.append(f"- {name}: fer {theirs['label']} "
                             f"{max(theirs['probs']):.2f}, ours {own['label']} "
                             f"{max(own['probs']):.2f} (largest probability gap {gap:.2f})")
    ratios_latency = [statistics.median(o["latency_ms"].values())
                      / statistics.median(f["latency_ms"].values())
                      for f, o in zip(fer_runs, ours_runs, strict=True)]
    ratios_rate = [o["images_per_s"] / f["images_per_s"]
                   for f, o in zip(fer_runs, ours_runs, strict=True)]
    table = [
        f"{len(fer['faces'])} images; fer finds {fer_total} faces, ours the same box for "
        f"{same_box} of them (+{only_ours} boxes only ours has); top class agrees on "
        f"{agree} of {same_box} common faces; largest probability difference "
        f"{largest_gap:.3f} (fer rounds its probabilities to 2 decimals).",
        "",
        "| round | fer median latency ms | ours | ours / fer | fer images/s | ours | "
        "ours / fer |",
        "|---|---|---|---|---|---|---|"]
    for i, (f, o) in enumerate(zip(fer_runs, ours_runs, strict=True)):
        table.append(f"| {i + 1} | {statistics.median(f['latency_ms'].values()):.1f} | "
                     f"{statistics.median(o['latency_ms'].values()):.1f} | "
                     f"{ratios_latency[i]:.2f} | {f['images_per_s']:.2f} | "
                     f"{o['images_per_s']:.2f} | {ratios_rate[i]:.2f} |")
    table.append(f"\nMedian over rounds: latency ours / fer {statistics.median(ratios_latency):.2f}"
                 f", throughput ours / fer {statistics.median(ratios_rate):.2f} "
                 f"({fer['tool']} vs {ours['tool']}).")
    return "\n".join(table + ([""] + lines if lines else []))


def main(argv: list[str]) -> None:
    if argv[:1] == ["folder"] and len(argv) == 2:
        make_folder(Path(argv[1]))
    elif argv[:1] == ["fer-folder"] and len(argv) == 2:
        run_fer_folder(Path(argv[1]))
    elif argv[:1] == ["fer"] and len(argv) == 3:
        Path(argv[2]).write_text(json.dumps(run_fer(Path(argv[1])), indent=1))
    elif argv[:1] == ["ours"] and len(argv) in (3, 4):
        out = Path(argv[2]).with_suffix(".predict")
        resize = argv[3] if len(argv) == 4 else "linear"
        Path(argv[2]).write_text(json.dumps(run_ours(Path(argv[1]), out, resize), indent=1))
    elif argv[:1] == ["compare"] and "--" in argv:
        split = argv.index("--")
        print(compare(argv[1:split], argv[split + 1:]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
