"""A synthetic-faces source whose samples kill the process that loads them when it is a
worker of a cache's pool (a worker killed mid-chunk, as the out-of-memory killer does);
a module of its own, so the spawned workers import little."""

from __future__ import annotations

import multiprocessing
import os

from fer_lightning.data.sources.synthetic import SyntheticFaces


class DyingInWorkers(SyntheticFaces):
    """SyntheticFaces, except that a pool worker loading a sample exits at once."""

    def load(self, split, index):
        if multiprocessing.parent_process() is not None:
            os._exit(3)
        return super().load(split, index)
