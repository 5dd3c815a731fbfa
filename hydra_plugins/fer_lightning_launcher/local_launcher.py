"""``hydra/launcher=local``: submitit's local launcher, each job with its share of the cores.

Hydra imports every module of ``hydra_plugins`` when it starts, so this one imports
nothing heavy; the thread arithmetic lives in ``fer_lightning.launch``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from hydra_plugins.hydra_submitit_launcher.submitit_launcher import (
    LocalLauncher as SubmititLocalLauncher,
)

from fer_lightning.launch import THREADS_ENV, available_cpus, threads_per_job

log = logging.getLogger(__name__)


class LocalLauncher(SubmititLocalLauncher):
    """submitit's local launcher (every job of a sweep its own process, all at once) that
    gives each job ``threads_per_job`` torch threads (``auto``: cores // jobs, at least 1)
    through ``FER_THREADS``, which the job processes inherit."""

    def __init__(self, threads_per_job: int | str = "auto", **params: Any) -> None:
        threads_per_job_setting = threads_per_job
        super().__init__(**params)
        self.threads_per_job = threads_per_job_setting

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Any:
        """Start the jobs with ``FER_THREADS`` set to their share of the cores."""
        cpus, jobs = available_cpus(), len(job_overrides)
        threads = threads_per_job(jobs, cpus, self.threads_per_job)
        if jobs * threads > cpus:
            log.warning("%d jobs at once with %d thread(s) each on %d cores: they take turns "
                        "(a smaller grid, or hydra/launcher=slurm, runs them side by side)",
                        jobs, threads, cpus)
        log.info("%d jobs at once on %d cores: %d torch thread(s) each "
                 "(hydra.launcher.threads_per_job=N to change)", jobs, cpus, threads)
        previous = os.environ.get(THREADS_ENV)
        os.environ[THREADS_ENV] = str(threads)
        try:
            return super().launch(job_overrides, initial_job_idx)
        finally:
            if previous is None:
                os.environ.pop(THREADS_ENV, None)
            else:
                os.environ[THREADS_ENV] = previous
