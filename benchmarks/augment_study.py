"""Does the batched device augmentation train as well as kornia's RandomAffine it replaced?

    python -m benchmarks.augment_study --seeds 1 2 3 4           # the default run, 10 epochs
    python -m benchmarks.augment_study --seeds 1 2 --arms batched none -- trainer.max_epochs=4

Each seed trains the default run (``python -m fer_lightning``: mini_xception on the synthetic
faces, augmentation on) once per arm, with everything but the augmentation's code shared:
the same seed gives the same initial weights, data and batch order. Arms:

- ``batched``: this framework's ``LandmarkAugment`` (one affine matrix per sample, one
  ``grid_sample``);
- ``kornia``: the flip, then ``kornia.augmentation.RandomAffine(degrees, translate, scale,
  padding_mode="border")`` on the same ``data.augment`` values: the code the batched path
  replaced;
- ``none``: ``data.augment=null``, to show what augmentation is worth at all.

Runs go two at a time, one thread each, in their own processes. The table gives each
arm's test accuracy per seed, its mean and standard deviation, and a paired t-test of
every arm against ``batched``. CPU only; a benchmark, so it never runs in the test suite.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ARMS = ("batched", "kornia", "none")
METRICS = ("acc", "macro_f1")


def use_kornia_affine() -> None:
    """Make ``LandmarkAugment`` draw through kornia's RandomAffine (images only), as the
    framework did before the batched path."""
    import kornia.augmentation as K
    import torch

    from fer_lightning.data import transforms

    def forward(self, image, landmarks, boxes=None, params=None):
        if landmarks is not None or boxes is not None:
            raise ValueError("the kornia arm moves images only; run it with landmarks=none "
                             "and no face boxes")
        if not hasattr(self, "_kornia"):
            self._kornia = K.RandomAffine(degrees=self.rotate,
                                          translate=(self.translate, self.translate),
                                          scale=self.scale, padding_mode="border", p=1.0)
            print(f"kornia arm: {self._kornia}", flush=True)
        flip = torch.rand(image.shape[0], device=image.device) < self.hflip
        image = torch.where(flip[:, None, None, None], image.flip(-1), image)
        return self._kornia(image), None, None

    transforms.LandmarkAugment.forward = forward


def run_one(arm: str, overrides: Sequence[str], output_dir: Path) -> None:
    """Train one arm in this process (the child side of ``launch``)."""
    from fer_lightning.config import compose_config
    from fer_lightning.train import train

    if arm == "kornia":
        use_kornia_affine()
    extra = ["data.augment=null"] if arm == "none" else []
    train(compose_config([*overrides, *extra], output_dir))


def launch(arm: str, seed: int, overrides: Sequence[str], output_dir: Path) -> dict:
    """Run one arm and seed in a child process; its results.json."""
    output_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "benchmarks.augment_study", "--child", arm,
               str(output_dir), "--", f"seed={seed}", *overrides]
    with (output_dir / "log.txt").open("w") as log:
        subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
    return json.loads((output_dir / "results.json").read_text())


def paired_t(first: Sequence[float], second: Sequence[float]) -> tuple[float, float]:
    """Paired t statistic of ``second - first`` and its two-sided p-value."""
    from scipy import stats

    differences = [b - a for a, b in zip(first, second, strict=True)]
    if len(differences) < 2 or statistics.stdev(differences) == 0:
        return math.nan, math.nan
    result = stats.ttest_1samp(differences, 0.0)
    return float(result.statistic), float(result.pvalue)


def table(results: dict[str, dict[int, dict]], seeds: Sequence[int]) -> list[str]:
    """Markdown rows: arm, per-seed test acc, mean ± sd of acc and macro-F1, t and p."""
    header = ("| arm | " + " | ".join(f"seed {seed}" for seed in seeds)
              + " | test acc mean ± sd | test macro-F1 mean ± sd | paired t vs batched (p) |")
    lines = [header, "|" + "---|" * (len(seeds) + 4)]
    base = [results["batched"][s]["test"]["metrics"]["acc"] for s in seeds] \
        if "batched" in results else None
    for arm, by_seed in results.items():
        values = {m: [by_seed[s]["test"]["metrics"][m] for s in seeds] for m in METRICS}
        spread = {m: (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else math.nan)
                  for m, v in values.items()}
        test = "" if base is None or arm == "batched" else \
            "t = {:.2f} (p = {:.2f})".format(*paired_t(base, values["acc"]))
        lines.append(f"| {arm} | " + " | ".join(f"{v:.3f}" for v in values["acc"])
                     + " | " + " | ".join(f"{mean:.3f} ± {sd:.3f}"
                                          for mean, sd in spread.values()) + f" | {test} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=["batched", "kornia"])
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the runs (default: a temporary folder, kept)")
    parser.add_argument("--child", nargs=2, metavar=("ARM", "DIR"), help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="after --: overrides for every run")
    args = parser.parse_args()
    if args.child:
        run_one(args.child[0], args.overrides, Path(args.child[1]))
        return
    out = args.out or Path(tempfile.mkdtemp(prefix="augment_study_"))
    runs = [(arm, seed) for seed in args.seeds for arm in args.arms]
    base = [f"data.cache_dir={out / 'decode_cache'}", "logger=none",
            "callbacks.progress_bar=null", "callbacks.model_summary=null",
            "callbacks.confusion_matrix=null", *args.overrides]
    with ThreadPoolExecutor(args.jobs) as pool:
        outputs = pool.map(
            lambda run: launch(run[0], run[1], base, out / f"{run[0]}_seed{run[1]}"), runs)
        done = dict(zip(runs, outputs, strict=True))
    results = {arm: {seed: done[arm, seed] for seed in args.seeds} for arm in args.arms}
    print(f"runs in {out}; overrides: {' '.join(args.overrides) or '(none)'}")
    print("\n".join(table(results, args.seeds)))


if __name__ == "__main__":
    main()
