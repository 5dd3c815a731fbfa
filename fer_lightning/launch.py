"""Several trainings on one machine: each gets its share of the cores, not all of them.

Imported by the launcher plugin at every Hydra start, so it imports nothing heavy at the top.

torch starts as many compute threads as the machine has cores. Two or more trainings
started at once (``hydra/launcher=local`` starts every job of a grid at once) then run
``jobs x cores`` threads on ``cores`` cores, and each epoch takes many times longer than
alone (thread contention, not a fair share).

- ``hydra/launcher=local`` (``hydra_plugins/fer_lightning_launcher``: Hydra loads
  launchers from that package only) gives every job ``cores // jobs`` threads (at least
  one), through the ``FER_THREADS`` environment variable its job processes inherit;
  ``hydra.launcher.threads_per_job=N`` sets another number.
- ``apply_thread_budget`` (called by every training) applies ``FER_THREADS`` when it is
  set, so two trainings started by hand share a machine with e.g. ``FER_THREADS=1``.
"""

from __future__ import annotations

import logging
import os

from fer_lightning.errors import ConfigError

log = logging.getLogger(__name__)

#: Torch compute threads of one training (a positive integer); unset: torch's default.
THREADS_ENV = "FER_THREADS"


def available_cpus() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. a cluster job's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def threads_per_job(jobs: int, cpus: int, setting: int | str = "auto") -> int:
    """Threads for each of ``jobs`` trainings running at once on ``cpus`` cores:
    ``setting`` when it is a positive integer, else ``cpus // jobs``, at least 1."""
    if setting != "auto":
        if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
            raise ValueError(f"hydra.launcher.threads_per_job must be 'auto' or a positive "
                             f"integer, got {setting!r}")
        return setting
    return max(1, cpus // max(1, jobs))


def thread_budget() -> int | None:
    """``FER_THREADS`` as a number of threads, or None when it is unset; a value that is
    not a positive integer is an error naming the variable."""
    value = os.environ.get(THREADS_ENV, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"{THREADS_ENV}={value!r}; expected a positive number of threads")
    return int(value)


def apply_thread_budget() -> int | None:
    """Set torch's compute threads to ``FER_THREADS`` if set; returns the number set
    (torch is imported only then)."""
    threads = thread_budget()
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
        log.info("torch compute threads: %d (%s)", threads, THREADS_ENV)
    return threads
