"""What a run's results.json records about how it ran: timing, progress and code version.

``python -m fer_lightning.report`` reads these fields to show wall time and epochs per cell
and to keep runs of different code versions apart (docs/reporting.md).
"""

from __future__ import annotations

import subprocess
import time
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import fer_lightning

PACKAGE_DIR = Path(fer_lightning.__file__).resolve().parent


def utc_now() -> str:
    """The current time as an ISO 8601 UTC timestamp (seconds)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _git(*args: str) -> str | None:
    """Output of ``git <args>`` run in the package's folder, or None outside a checkout."""
    try:
        done = subprocess.run(["git", "-C", str(PACKAGE_DIR), *args], capture_output=True,
                              text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@lru_cache(maxsize=1)
def code_version() -> dict[str, Any]:
    """``package_version``, ``git_commit`` (None when the code is not in a git checkout,
    e.g. an installed wheel) and ``git_dirty`` (uncommitted changes to tracked files)."""
    commit = _git("rev-parse", "HEAD")
    dirty = None
    if commit is not None:
        status = _git("status", "--porcelain", "--untracked-files=no")
        dirty = bool(status) if status is not None else None
    return {"package_version": fer_lightning.__version__, "git_commit": commit,
            "git_dirty": dirty}


def run_record(seed: int, trainer: Any, started_at: str, start_time: float) -> dict[str, Any]:
    """The results.json fields about the run itself: ``seed``, completed ``epochs``,
    ``global_step``, ``wall_time_s`` since ``start_time`` (a ``time.perf_counter()``),
    ``started_at`` / ``finished_at`` (UTC) and the code version."""
    return {
        "seed": seed,
        "epochs": int(trainer.current_epoch),
        "global_step": int(trainer.global_step),
        "wall_time_s": round(time.perf_counter() - start_time, 3),
        "started_at": started_at,
        "finished_at": utc_now(),
        **code_version(),
    }
