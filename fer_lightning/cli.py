"""The front door every command shares: one place maps a user error to one line and exit
status 1, and SIGTERM to status 143.

A command's ``main`` runs its work through :func:`run_command`. A
:class:`~fer_lightning.errors.FerError` ends the process with ``<prefix>: <message>``
(``Config error: ...``, ``Dataset error: ...``, ``Checkpoint error: ...``,
``Missing package: ...``) and no traceback; a stop by SIGTERM (Lightning's
``SIGTERMException``, raised after ``last.ckpt`` is written) with 128 + 15, the status a
process killed by SIGTERM reports; any other exception propagates with its traceback.

Console scripts (pyproject.toml): ``fer-lightning`` and ``fer-train`` (train),
``fer-eval``, ``fer-predict``, ``fer-export``, ``fer-data`` and ``fer-report``, each the
same as ``python -m fer_lightning[.<command>]``.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import TypeVar

from lightning.pytorch.utilities.exceptions import SIGTERMException

from fer_lightning.errors import FerError, error_line

T = TypeVar("T")

#: The exit status of a run stopped by SIGTERM.
SIGTERM_STATUS = 128 + signal.SIGTERM


def run_command(work: Callable[[], T], *, also: tuple[type[Exception], ...] = (),
                prefix: str | None = None,
                on_user_error: Callable[[Exception], None] | None = None) -> T:
    """``work()``; a FerError (or one of ``also``) becomes ``SystemExit("<prefix>:
    <message>")`` (its own prefix unless ``prefix`` is given) after ``on_user_error`` saw
    it, SIGTERM becomes ``SystemExit(143)``."""
    try:
        return work()
    except (FerError, *also) as error:
        if on_user_error is not None:
            on_user_error(error)
        line = f"{prefix}: {error}" if prefix is not None else error_line(error)
        raise SystemExit(line) from None
    except SIGTERMException:
        raise SystemExit(SIGTERM_STATUS) from None
