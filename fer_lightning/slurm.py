"""What ``hydra/launcher=slurm`` asks SLURM for, derived from the trainer config.

Lightning under SLURM expects one SLURM task per device (``--ntasks-per-node`` =
``trainer.devices``) and starts DDP from those tasks; a GPU run also needs that many GPUs
per node. ``trainer.devices=-1`` ("every visible GPU") cannot be requested from SLURM, so
it fails here, before any job is submitted, naming the key to set.
"""

from __future__ import annotations

from typing import Any


def slurm_tasks(devices: Any) -> int:
    """``${slurm_tasks:${trainer.devices}}``: SLURM tasks per node, one per device."""
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise ValueError(
            f"hydra/launcher=slurm starts one SLURM task per device: set trainer.devices "
            f"to the number of devices per node (got {devices!r}; -1 = all visible GPUs "
            f"cannot be requested from SLURM), e.g. trainer.devices=4")
    return devices


def slurm_gpus(accelerator: Any, devices: Any) -> int | None:
    """``${slurm_gpus:${trainer.accelerator},${trainer.devices}}``: GPUs per node, none
    for a CPU run."""
    return None if str(accelerator) == "cpu" else slurm_tasks(devices)
