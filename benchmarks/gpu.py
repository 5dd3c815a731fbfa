"""One-GPU benchmark: what each family trains per second, what the data path feeds, and
what Lightning costs over a bare loop, appended to benchmarks/RESULTS.md.

    python -m benchmarks.gpu            # about 5 minutes on one GPU
    python -m benchmarks.gpu --quick    # tiny sizes, any device (the smoke test runs it)

Per family (mini_xception, mba, ms_fpn with resnet18, vgg_cbam) at its paper's input
size: training images / s (forward, backward, Adam step on random inputs already on the
device) at batch 32 / 128 / 512 in precision 32, 16-mixed and bf16-mixed, eager with and
without channels_last, plus ``torch.compile`` cells (batch 512, bf16-mixed,
channels_last; one compilation each, run after every eager cell), with peak device
memory. Then the data path's ceiling with no model (the training loader of the default
synthetic data, its split placed as on a GPU Trainer, through the batch transform; and a
batched gather from a uint8 tensor on the device through the same transform), and one
Lightning epoch of FERClassifier against a bare PyTorch loop over the same batches. A
``--budget-s`` guard skips the cells left when time runs out and says so. The ms_fpn
cells time its emotion classifier with the detector's inference path (no detection loss:
that needs region targets).
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from fer_lightning.config import build_net, compose_config
from fer_lightning.data.transforms import BatchTransform
from fer_lightning.losses import CrossEntropy
from fer_lightning.modules.classifier import FERClassifier

from .common import RESULTS, best_rate, machine, random_inputs

CLASSES = 7
PRECISIONS = ("32", "16-mixed", "bf16-mixed")
AUTOCAST = {"32": None, "16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}


@dataclass(frozen=True)
class Family:
    """A family as ``python -m fer_lightning`` builds it, at its paper's input size."""

    label: str
    overrides: tuple[str, ...]
    size: int
    channels: int


FAMILIES = (
    Family("mini_xception", ("model=mini_xception",), 48, 1),
    Family("mba", ("+experiment=mba",), 48, 1),
    Family("ms_fpn resnet18", ("+experiment=ms_fpn", "model.backbone=resnet18"), 224, 3),
    Family("vgg_cbam", ("+experiment=vgg_cbam",), 224, 3),
)


def configured_net(family: Family, size: int) -> torch.nn.Module:
    """The family's net as a run configures it (7 classes), at ``size`` px."""
    overrides = [*family.overrides, "data=synthetic", f"data.image_size={size}",
                 f"data.channels={family.channels}"]
    with tempfile.TemporaryDirectory() as scratch:
        return build_net(compose_config(overrides, scratch), num_classes=CLASSES)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_rate(step: Callable[[], None], items: int, device: torch.device, steps: int,
               warmup: int) -> float:
    """Items per second over ``steps`` calls of ``step`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return items * steps / (time.perf_counter() - start)


def train_cell(template: torch.nn.Module, family: Family, size: int, batch: int,
               precision: str, channels_last: bool, compiled: bool, device: torch.device,
               steps: int, warmup: int) -> tuple[float, float | None]:
    """(training images / s, peak device memory in GiB or None off CUDA) of one cell."""
    net = copy.deepcopy(template).to(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=memory_format)
    if compiled:
        net.compile()
    fused = {"fused": True} if device.type == "cuda" else {}
    optimizer = torch.optim.Adam(net.parameters(), 1e-3, **fused)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "16-mixed")
    loss_fn = CrossEntropy()
    inputs = {key: value.to(device) for key, value in
              random_inputs(net.input_keys, batch, family.channels, size).items()}
    inputs = {key: value.contiguous(memory_format=memory_format) if value.ndim == 4 else value
              for key, value in inputs.items()}
    labels = torch.randint(0, CLASSES, (batch,), device=device)
    dtype = AUTOCAST[precision]

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        context = torch.autocast(device.type, dtype=dtype) if dtype else nullcontext()
        with context:
            loss = loss_fn(net(**inputs), labels)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rate = timed_rate(step, batch, device, steps, warmup)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return rate, peak


def measured_row(where: str, measure: Callable[[], tuple[float, float | None]],
                 device: torch.device) -> str:
    """``where`` completed by ``measure()``'s rate and peak memory, or by its failure (a
    RuntimeError: out of memory on a smaller GPU, an op the device lacks)."""
    failure = None
    try:
        rate, peak = measure()
    except RuntimeError as error:  # torch.cuda.OutOfMemoryError among them
        failure = str(error).splitlines()[0][:80]
    if failure is not None:
        # here the error and its frames (the cell's net, optimiser, activations) are
        # gone, so the cached blocks can go back before the next cell
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return f"{where} failed: {failure} | |"
    memory = f"{peak:.2f}" if peak is not None else "n/a"
    shown = f"{rate:,.0f}" if rate >= 100 else f"{rate:.2f}"
    return f"{where} {shown} | {memory} |"


def training_rows(device: torch.device, quick: bool, deadline: float) -> list[str]:
    """Markdown rows of every family's training throughput grid."""
    batches = (2,) if quick else (32, 128, 512)
    precisions = ("32",) if quick else PRECISIONS
    steps, warmup = (1, 1) if quick else (8, 3)
    rows = ["| family | input | batch | precision | channels_last | compile | "
            "train images / s | peak GiB |", "|---|---|---|---|---|---|---|---|"]
    # every family's eager cells first, the compiled ones (a compilation each, the slow
    # part) last: a run that meets its time budget loses compile cells, not eager ones
    cells = [(family, b, p, cl, False) for family in FAMILIES for b in batches
             for p in precisions for cl in (False, True)]
    if not quick and device.type == "cuda":
        cells += [(family, 512, "bf16-mixed", True, True) for family in FAMILIES]
    templates: dict[str, torch.nn.Module] = {}
    for family, batch, precision, channels_last, compiled in cells:
        size = min(family.size, 48) if quick else family.size  # quick: >= nets' minimum
        if family.label not in templates:
            templates[family.label] = configured_net(family, size)
        template = templates[family.label]
        where = (f"| {family.label} | {size}x{size}x{family.channels} | {batch} | "
                 f"{precision} | {channels_last} | {compiled} |")
        if time.perf_counter() > deadline:
            rows.append(f"{where} skipped (time budget) | |")
            continue
        rows.append(measured_row(where, partial(
            train_cell, template, family, size, batch, precision, channels_last, compiled,
            device, steps, warmup), device))
        print(rows[-1], flush=True)
    return rows


def data_path_rows(device: torch.device, quick: bool) -> list[str]:
    """The data path's ceiling with no model: the default training loader of the
    synthetic faces (its split placed on ``device`` as a Trainer there would place it)
    through the batch transform, and a batched gather from one uint8
    tensor on the device through the same transform, samples / s."""
    from fer_lightning.build import build_datamodule

    batch, size, count = (8, 48, 32) if quick else (512, 48, 5000)
    with tempfile.TemporaryDirectory() as scratch:
        cfg = compose_config(["data=synthetic", f"data.batch_size={batch}",
                              f"data.source.train_size={count}",
                              "data.num_workers=0"], scratch)
        datamodule = build_datamodule(cfg)
        datamodule.placement_device = device  # where a Trainer on this device puts it
        datamodule.setup("fit")
        transform = datamodule.batch_transform
        loader = datamodule.train_dataloader()
        placed = datamodule.placed_split("train")
        where = "no batched split" if placed is None else \
            f"split {'in pinned host memory' if placed.pinned else f'on {placed.device}'}"

        def epoch() -> int:
            seen = 0
            for raw in loader:
                moved = {key: value.to(device, non_blocking=True) if torch.is_tensor(value)
                         else value for key, value in raw.items()}
                seen += len(transform(moved, training=True)["image"])
            synchronize(device)
            return seen

        loader_rate = best_rate(epoch, repeats=1 if quick else 3, warmup=1)
    images = torch.randint(0, 256, (count, 1, size, size), dtype=torch.uint8, device=device)
    landmarks = torch.rand(count, 68, 2, device=device) * 0.6 + 0.2
    gather_transform = BatchTransform(augment=transform.augment, mean=0.5, std=0.5)

    def gather() -> None:
        index = torch.randint(0, count, (batch,), device=device)
        gather_transform({"image": images[index], "landmarks": landmarks[index],
                          "landmarks_valid": torch.ones(batch, dtype=torch.bool,
                                                        device=device)}, training=True)

    gather_rate = timed_rate(gather, batch, device, 5 if quick else 50, 2)
    return ["| data path, no model | samples / s |", "|---|---|",
            f"| training loader (synthetic, {size} px, batch {batch}, {where}) + "
            f"batch transform with augmentation on {device.type}, best epoch of 3 | "
            f"{loader_rate:,.0f} |",
            f"| batched gather of a uint8 tensor on {device.type} + the same transform | "
            f"{gather_rate:,.0f} |"]


def lightning_against_bare(device: torch.device, quick: bool) -> list[str]:
    """One Lightning epoch of FERClassifier / a bare PyTorch loop of the same net over the
    same batches (already on the device), mini_xception 48 px, fp32."""
    batch, count, size = (4, 3, 48) if quick else (512, 40, 48)
    family = FAMILIES[0]
    template = configured_net(family, size)
    generator = torch.Generator().manual_seed(0)
    data = [{"image": torch.randn(batch, 1, size, size, generator=generator).to(device),
             "label": torch.randint(0, CLASSES, (batch,), generator=generator).to(device)}
            for _ in range(count)]

    def bare() -> float:
        net = copy.deepcopy(template).to(device)
        optimizer = torch.optim.Adam(net.parameters(), 1e-3)
        loss_fn = CrossEntropy()
        synchronize(device)
        start = time.perf_counter()
        for item in data:
            optimizer.zero_grad()
            loss_fn(net(item["image"]), item["label"]).backward()
            optimizer.step()
        synchronize(device)
        return time.perf_counter() - start

    def framework() -> float:
        module = FERClassifier(copy.deepcopy(template), CrossEntropy(),
                               [str(i) for i in range(CLASSES)],
                               optimizer={"_target_": "torch.optim.Adam", "lr": 1e-3})
        trainer = L.Trainer(max_epochs=1, accelerator=device.type, devices=1, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, num_sanity_val_steps=0)
        start = time.perf_counter()
        trainer.fit(module, train_dataloaders=DataLoader(data, batch_size=None))
        synchronize(device)
        return time.perf_counter() - start

    bare()  # warm-up (kernels, allocator)
    bare_s, lightning_s = float("inf"), float("inf")
    for _ in range(1 if quick else 2):  # interleaved
        bare_s = min(bare_s, bare())
        lightning_s = min(lightning_s, framework())
    return ["| Lightning against a bare loop | value |", "|---|---|",
            f"| Lightning epoch / bare PyTorch loop, mini_xception {size} px, {count} batches "
            f"of {batch}, fp32, {device.type} | {lightning_s / bare_s:.2f} "
            f"({lightning_s:.2f} s / {bare_s:.2f} s) |"]


def device_line(device: torch.device) -> str:
    """The device measured, in words."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, {machine()}"
    return f"CPU: {machine()}"


def main(argv: Sequence[str] | None = None) -> str:
    """Measure, print, append to ``--out``; returns the section written."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes and one step per cell: checks that it runs")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--budget-s", type=float, default=270.0,
                        help="skip the training cells left after this many seconds")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = device.type == "cuda"
    started = time.perf_counter()
    command = "python -m benchmarks.gpu" + (" --quick" if args.quick else "")
    lines = [f"\n## {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC — `{command}`",
             f"device: {device_line(device)}; cudnn.benchmark on CUDA", ""]
    lines += training_rows(device, args.quick, started + args.budget_s) + [""]
    lines += data_path_rows(device, args.quick) + [""]
    lines += lightning_against_bare(device, args.quick)
    lines.append(f"\n{time.perf_counter() - started:.0f} s in all.")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.out.exists():
        args.out.write_text("# Benchmark results\n")
    with args.out.open("a") as handle:
        handle.write(text)
    return text


if __name__ == "__main__":
    main()
