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

import functools
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from fer_lightning import resolvers  # noqa: F401  (every command's configs use them)
from fer_lightning.cli_help import command_help
from fer_lightning.errors import FerError, error_line

T = TypeVar("T")
#: The flags that ask a command for its ``--help`` page (Hydra's own: ``--hydra-help``).
HELP_FLAGS = ("--help", "-h")

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
    except BaseException as error:  # Lightning's SIGTERMException is a SystemExit
        if is_sigterm_stop(error):
            raise SystemExit(SIGTERM_STATUS) from None
        raise


def is_sigterm_stop(error: BaseException) -> bool:
    """Whether ``error`` is Lightning's ``SIGTERMException`` (raised after ``last.ckpt`` is
    written). Lightning is not imported for the question: a command that never imported it
    cannot have raised it, and a config error or ``--help`` then answers without paying for
    the import (several seconds of CPU)."""
    exceptions = sys.modules.get("lightning.pytorch.utilities.exceptions")
    return exceptions is not None and isinstance(error, exceptions.SIGTERMException)


def asks_for_help(arguments: Sequence[str]) -> bool:
    """Whether a command line asks for the command's ``--help`` page."""
    return any(argument in HELP_FLAGS for argument in arguments)


def answers_help(config: str) -> Callable[[Callable[..., T]], Callable[..., T | None]]:
    """Decorate a Hydra entry point so that ``--help`` prints the page of
    ``conf/<config>.yaml`` (``cli_help.command_help``, the same page Hydra's help template
    shows) without Hydra composing the config and listing every group first (seconds of
    CPU)."""
    def decorate(main: Callable[..., T]) -> Callable[..., T | None]:
        @functools.wraps(main)
        def entry(*args: Any, **kwargs: Any) -> T | None:
            if asks_for_help(sys.argv[1:]):
                print(command_help(config).replace("$$", "$"))
                return None
            return main(*args, **kwargs)
        return entry
    return decorate
