"""The worker processes that build the caches (decoded splits, landmarks) the first time.

They are started with ``spawn`` (no fork after torch or OpenMP threads exist), so each
imports the main module again. A script that builds a DataModule at its top level, with
no ``if __name__ == "__main__":`` guard, makes every worker fail at start-up and the
pool report only ``BrokenProcessPool``; so does a worker killed mid-chunk (out of memory,
a signal). ``spawn_pool`` turns that into an error that names the cache and both causes.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any

from fer_lightning.errors import WorkerError


@contextmanager
def spawn_pool(workers: int, building: str, **pool_options: Any
               ) -> Iterator[ProcessPoolExecutor]:
    """A ``spawn`` process pool of ``workers`` processes for ``building`` (what is being
    written, named in the error); ``pool_options`` go to ``ProcessPoolExecutor``."""
    context = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(workers, mp_context=context, **pool_options) as pool:
            yield pool
    except BrokenProcessPool as error:
        raise WorkerError(
            f"{building}: a worker process ended before writing its chunk. Either it was "
            f"killed (out of memory, a signal), or it could not start: workers are "
            f"spawned and import the main module again, so a script that builds the data "
            f"must do it under `if __name__ == \"__main__\":`. Nothing unfinished is "
            f"used; the next run writes what is missing.") from error
