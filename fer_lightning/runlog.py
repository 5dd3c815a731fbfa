"""One place for what a run prints and what its ``train.log`` holds.

Hydra's job logging gives the root logger a console handler and a file handler
(``<run folder>/train.log``; see ``conf/hydra/default.yaml``). Lightning attaches its own
console handler to its loggers and stops them propagating when it is imported before that
configuration exists (always, here), so its lines reached the terminal but never the file.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

#: Libraries whose log records should reach the run's handlers (console and train.log).
LIBRARY_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "torchmetrics")
#: Start of the line :func:`log_crash` writes; ``report`` reads a crashed run's error from it.
CRASH_PREFIX = "Crashed with "
#: Starts of library messages that read like problems but say nothing about the run.
NOISE = (
    "💡 Tip:",  # Lightning's advertisement for its hosted logger, on every Trainer
)


class DropNoise(logging.Filter):
    """Drops records whose message starts with one of :data:`NOISE`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(NOISE)


class ConsoleFilter(DropNoise):
    """Also drops records logged with ``extra={"console": False}`` (lines a progress bar
    already shows on the terminal; they still go to train.log)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return super().filter(record) and getattr(record, "console", True)


def _is_console(handler: logging.Handler) -> bool:
    return isinstance(handler, logging.StreamHandler) \
        and not isinstance(handler, logging.FileHandler)


def configure_run_logging() -> None:
    """Route Lightning's records and Python warnings through the root logger's handlers
    (when Hydra has configured them) and filter noise; idempotent."""
    root = logging.getLogger()
    if root.handlers:
        for name in LIBRARY_LOGGERS:
            library = logging.getLogger(name)
            for handler in list(library.handlers):
                library.removeHandler(handler)
            library.propagate = True
        logging.captureWarnings(True)
    handlers = [*root.handlers, *(handler for name in LIBRARY_LOGGERS
                                  for handler in logging.getLogger(name).handlers)]
    for handler in handlers:
        wanted = ConsoleFilter if _is_console(handler) else DropNoise
        if not any(type(existing) is wanted for existing in handler.filters):
            handler.addFilter(wanted())


def log_crash(error: BaseException, traceback: bool = True) -> None:
    """Write an exception that ends the run into the run's log file (``train.log``): one
    ``Crashed with <Type>: <first line of the message>`` line and the traceback. Hydra
    prints an uncaught exception on stderr only, so without this a crashed run's folder
    would not say why it stopped. Console handlers skip the record (Hydra, or the entry
    point for a config or dataset error, prints it); ``traceback=False`` writes the line
    alone (errors whose message says everything)."""
    message = str(error).strip().splitlines()
    summary = f"{type(error).__name__}: {message[0]}" if message else type(error).__name__
    log.error("%s%s", CRASH_PREFIX, summary, exc_info=error if traceback else None,
              extra={"console": False})
