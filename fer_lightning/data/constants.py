"""Small constant tensors (image sizes, coordinate maps, index tables) made once per
device and dtype.

A tensor built from Python numbers on a GPU (``torch.tensor(..., device="cuda")``,
``x.new_tensor(...)``) is a blocking host-to-device copy, and a blocking copy waits for
all the work queued on the device before it: made in every training step, such constants
would make the host wait for the GPU once per step. ``device_constant`` makes each one
once and hands back the same tensor after that.
"""

from __future__ import annotations

import functools

import torch


def device_constant(values: tuple, like: torch.Tensor, dtype: torch.dtype | None = None
                    ) -> torch.Tensor:
    """``torch.tensor(values)`` on ``like``'s device with ``dtype`` (default: ``like``'s),
    made on first use and shared after: read it, never write into it. ``values``: a
    number or nested tuples of numbers (hashable)."""
    return _constant(values, dtype or like.dtype, like.device)


@functools.lru_cache(maxsize=512)
def _constant(values: tuple, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype, device=device)
