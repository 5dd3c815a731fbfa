"""Inference speed: end-to-end latency per photo against the `fer` package, and the
throughput of ``predict`` and ``eval``.

    python -m benchmarks.inference [--fer-python /work/bench-venvs/fer/bin/python]

Latency: real photos (skimage's astronaut, matplotlib's grace_hopper, four LFW faces
upscaled to 100 px), batch 1, the median of ``repeats`` runs per photo after a warm-up
(reported: the mean over the two portraits, the median over the LFW faces), one torch
thread on each side (``--threads``; on a shared machine one thread is the stable
measure). The two sides take turns twice and each row keeps its better round, so a
change of machine load between them does not decide the race. Both sides
detect with facenet-pytorch's MTCNN at its default settings (min face 20 px, thresholds
0.6 / 0.7 / 0.7), so the race is on the same detector: ours is
``Predictor.predict(image)`` (detect, crop, landmarks when the model uses them,
classify), theirs ``FER(mtcnn=True).detect_emotions(image)`` run in fer's own venv
(``benchmarks/fer_baseline.py``). The models are untrained (speed does not depend on the
weights): the default mini_xception (48 x 48 grey, 0.2 M parameters), without landmarks
and with dlib landmarks drawn as an overlay, run by PyTorch and by onnxruntime.
Appends a dated section to benchmarks/RESULTS.md (also part of ``make bench``).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmarks.common import RESULTS, machine
from fer_lightning.build import write_checkpoint
from fer_lightning.config import compose_config

FER_PYTHON = Path("/work/bench-venvs/fer/bin/python")
MODELS = {"mini_xception, no landmarks": ("model=mini_xception",),
          "mini_xception + dlib overlay": ("model=mini_xception", "landmarks=dlib")}


def photos() -> list[np.ndarray]:
    """The benchmark photos (module docstring)."""
    import matplotlib.cbook
    import skimage.data

    from fer_lightning.inference.media import load_image

    faces = [(face * 255).round().astype(np.uint8) for face in skimage.data.lfw_subset()[:4]]
    return [skimage.data.astronaut(),
            load_image(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)),
            *[np.asarray(Image.fromarray(face).convert("RGB").resize((100, 100),
                                                                      Image.BILINEAR))
              for face in faces]]


def per_photo_ms(work: Callable[[np.ndarray], object], images: Sequence[np.ndarray],
                 repeats: int) -> list[float]:
    """Median milliseconds of ``work(image)`` per image over ``repeats`` (after a warm-up)."""
    for image in images:
        work(image)
    medians = []
    for image in images:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            work(image)
            times.append(time.perf_counter() - start)
        medians.append(1000 * statistics.median(times))
    return medians


@functools.cache
def checkpoint_for(overrides: tuple[str, ...], folder: Path) -> Path:
    """An untrained checkpoint of the configured model, written once per folder (a new
    file would also make its ONNX export stale and re-exported)."""
    name = "-".join(o.replace("=", "_") for o in overrides)
    return write_checkpoint(compose_config(list(overrides), folder / name), folder / f"{name}.ckpt")


def our_latency(images: Sequence[np.ndarray], folder: Path, repeats: int
                ) -> list[tuple[str, list[float], float, list[int]]]:
    """(label, end-to-end ms per photo, classify-only ms, faces per photo) per model and
    backend."""
    from fer_lightning.inference.onnx_export import ensure_onnx
    from fer_lightning.inference.predictor import Predictor

    rows = []
    for label, overrides in MODELS.items():
        checkpoint = checkpoint_for(overrides, folder)
        for backend in ("torch", "onnx"):
            if backend == "onnx":
                ensure_onnx(checkpoint, checkpoint.with_suffix(".onnx"))  # Predictor never exports
            predictor = Predictor.from_checkpoint(checkpoint, backend=backend,
                                                  onnx_path=checkpoint.with_suffix(".onnx"))
            faces = [predictor.faces(image) for image in images]
            end_to_end = per_photo_ms(predictor.predict, images, repeats)
            with_faces = [found for found in faces if found]
            classify = statistics.median(per_photo_ms(predictor.classify, with_faces, repeats))
            rows.append((f"fer_lightning {label}, {backend}", end_to_end, classify,
                         [len(found) for found in faces]))
    return rows


def fer_latency(images: Sequence[np.ndarray], folder: Path, repeats: int, python: Path,
                threads: int) -> list[tuple[str, list[float] | None, float | None, Any]]:
    """The `fer` package's rows (its BGR input as documented, and RGB input, which is
    what its MTCNN expects), measured by benchmarks/fer_baseline.py in its venv."""
    if not python.is_file():
        return [("fer (not measured)", None, None,
                 f"no fer venv at {python}: see docs/inference.md for the recipe")]
    paths = []
    for index, image in enumerate(images):
        paths.append(folder / f"photo{index}.png")
        Image.fromarray(image).save(paths[-1])
    script = Path(__file__).with_name("fer_baseline.py")
    done = subprocess.run([str(python), str(script), "--repeats", str(repeats), "--threads",
                           str(threads), *map(str, paths)], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        return [("fer (failed)", None, None, done.stderr.strip().splitlines()[-1])]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    name = f"fer {result['fer']} FER(mtcnn=True), TFLite (tensorflow {result['tensorflow']})"
    return [(f"{name}, BGR input (MTCNN sees BGR)", result["per_photo_ms"],
             result["classify_ms"], result["faces"]),
            (f"{name}, RGB input (MTCNN sees RGB, as ours)", result["per_photo_rgb_ms"],
             result["classify_ms"], result["faces"])]


def steady_rate(run: Callable[[int], object], large: int, small: int) -> tuple[float, float]:
    """(items / s between a run of ``small`` and one of ``large`` items, i.e. without the
    start-up; seconds of start-up) of ``run(count)``."""
    run(small)  # warm-up (caches, and an ONNX export when one is due)
    times = {}
    for count in (small, large):
        start = time.perf_counter()
        run(count)
        times[count] = time.perf_counter() - start
    rate = (large - small) / max(times[large] - times[small], 1e-9)
    return rate, times[small] - small / rate


def predict_throughput(folder: Path, count: int = 200) -> list[str]:
    """Rows: images / s of the predict command on a folder of LFW face crops."""
    import skimage.data

    from fer_lightning.predict import predict

    faces = skimage.data.lfw_subset()[:count]
    checkpoint = checkpoint_for(MODELS["mini_xception, no landmarks"], folder)
    rows = []
    for backend, detect in (("torch", False), ("onnx", False), ("torch", True), ("onnx", True)):
        def run(size: int, backend: str = backend, detect: bool = detect) -> None:
            inputs = folder / f"faces{size}"
            if not inputs.exists():
                inputs.mkdir(parents=True)
                for index, face in enumerate(faces[:size]):
                    Image.fromarray((face * 255).round().astype(np.uint8)).save(
                        inputs / f"{index:03d}.png")
            predict(compose_config(
                [f"ckpt_path={checkpoint}", f"input={inputs}", f"backend={backend}",
                 f"detect={str(detect).lower()}", "progress=false",
                 f"onnx_path={checkpoint.with_suffix('.onnx')}"],
                folder / f"predict-{backend}-{detect}-{size}", config_name="predict"))

        large = count if not detect else count // 4
        rate, startup = steady_rate(run, large, large // 5)
        what = "MTCNN + classify" if detect else "detect=false, classify only"
        rows.append(f"| `predict` on a folder of LFW faces (25 px), {what}, {backend}, "
                    f"batch 32: images / s after start-up (start-up s) | {rate:.0f} "
                    f"({startup:.1f}) |")
    return rows


def eval_throughput(folder: Path, size: int = 1000) -> list[str]:
    """Rows: images / s of eval on the synthetic test split per TTA mode."""
    from fer_lightning.eval import compose_eval_config, evaluate

    checkpoint = checkpoint_for(MODELS["mini_xception, no landmarks"], folder)
    rows = []
    for tta in ("none", "flip", "ten_crop"):
        def run(count: int, tta: str = tta) -> None:
            evaluate(compose_eval_config(
                [f"ckpt_path={checkpoint}", f"tta={tta}", "callbacks.progress_bar=null",
                 "data.batch_size=128", f"data.source.test_size={count}"],
                folder / f"eval-{tta}-{count}"))

        rate, startup = steady_rate(run, size, size // 5)
        rows.append(f"| `eval` mini_xception on synthetic faces (rendered on the fly), "
                    f"tta={tta}, batch 128: images / s after start-up (start-up s) | "
                    f"{rate:.0f} ({startup:.1f}) |")
    return rows


def rows(repeats: int = 5, fer_python: Path = FER_PYTHON, threads: int = 1) -> list[str]:
    """The inference section of RESULTS.md."""
    import torch

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    load = os.getloadavg()[0]
    lines = [f"\nInference (`python -m benchmarks.inference`; load average {load:.1f} on "
             f"{os.cpu_count()} cores when it started; {threads} torch thread per side):", "",
             "| end to end per photo, batch 1 (MTCNN vs MTCNN) | astronaut, grace_hopper "
             "(512-600 px), ms | 4 LFW faces (100 px), median ms | classify only, ms | faces "
             "per photo |", "|---|---|---|---|---|"]
    images = photos()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        best: dict[str, tuple] = {}
        for _ in range(2):  # take turns; keep each row's better round
            for row in [*fer_latency(images, folder, repeats, fer_python, threads),
                        *our_latency(images, folder, repeats)]:
                if row[0] not in best or sum(row[1] or [0]) < sum(best[row[0]][1] or [0]):
                    best[row[0]] = row
        for label, per_photo, classify, faces in best.values():
            portraits = statistics.mean(per_photo[:2]) if per_photo else None
            small = statistics.median(per_photo[2:]) if per_photo else None
            cells = [f"{v:.1f}" if isinstance(v, float) else "n/a"
                     for v in (portraits, small, classify)]
            lines.append(f"| {label} | {' | '.join(cells)} | {faces} |")
        lines += ["", "| throughput | value |", "|---|---|"]
        lines += predict_throughput(folder)
        lines += eval_throughput(folder)
    torch.set_num_threads(previous_threads)
    return lines


def main() -> None:
    """Measure and append a dated section to RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--fer-python", type=Path, default=FER_PYTHON)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    lines = [f"\n## {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC — "
             f"`python -m benchmarks.inference`", f"machine: {machine()}",
             *rows(args.repeats, args.fer_python, args.threads)]
    text = "\n".join(lines) + "\n"
    print(text)
    with args.out.open("a") as handle:
        handle.write(text)


if __name__ == "__main__":
    main()
