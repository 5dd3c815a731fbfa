"""One place for what a run prints and what its ``train.log`` holds.

Hydra's job logging gives the root logger a console handler and a file handler
(``<run folder>/train.log``; see ``conf/hydra/default.yaml``). Lightning attaches its own
console handler to its loggers and stops them propagating when it is imported before that
configuration exists (always, here), so its lines reached the terminal but never the file.
"""

from __future__ import annotations

import logging
import re
from typing import Any

log = logging.getLogger(__name__)

#: Libraries whose log records should reach the run's handlers (console and train.log).
LIBRARY_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "torchmetrics")
#: Start of the line :func:`log_crash` writes; ``report`` reads a crashed run's error from it.
CRASH_PREFIX = "Crashed with "
#: Library messages that read like problems or advertisements but say nothing about the
#: run, as regular expressions searched in the message; ``verbose=true`` shows them.
NOISE = {
    # Lightning's advertisement for its hosted logger, on every Trainer
    "litlogger tip": re.compile(r"^💡 Tip:"),
    # every run with fewer batches than trainer.log_every_n_steps (metrics are still
    # logged at each epoch end), with a site-packages path
    "log_every_n_steps": re.compile(r"is smaller than the logging interval "
                                    r"Trainer\(log_every_n_steps="),
}


class DropNoise(logging.Filter):
    """Drops records whose message matches one of :data:`NOISE` (none with ``verbose``)."""

    def __init__(self, verbose: bool = False) -> None:
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        if self.verbose:
            return True
        message = record.getMessage()
        return not any(pattern.search(message) for pattern in NOISE.values())


class ConsoleFilter(DropNoise):
    """Also drops records logged with ``extra={"console": False}`` (lines a progress bar
    already shows on the terminal; they still go to train.log)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return super().filter(record) and getattr(record, "console", True)


def quiet_level(verbose: Any) -> str:
    """``${quiet_level:${verbose}}`` (registered in fer_lightning.config): the level of
    chatty third-party loggers (alembic's seven ``setup plugin ...`` lines when Optuna
    loads): INFO with ``verbose``, else WARNING."""
    return "INFO" if verbose else "WARNING"


def _is_console(handler: logging.Handler) -> bool:
    return isinstance(handler, logging.StreamHandler) \
        and not isinstance(handler, logging.FileHandler)


def configure_run_logging(verbose: bool = False) -> None:
    """Route Lightning's records and Python warnings through the root logger's handlers
    (when Hydra has configured them) and filter noise (kept with ``verbose``); idempotent."""
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
        for existing in [item for item in handler.filters if isinstance(item, DropNoise)]:
            handler.removeFilter(existing)
        handler.addFilter(wanted(verbose=bool(verbose)))


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
