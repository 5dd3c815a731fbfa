"""The errors a user can cause, on the ground floor: every layer may raise them, none of
them imports anything of the package.

Each is a :class:`FerError` carrying the prefix a command prints before its message
(``Config error: data.batch_size must be ...``); ``fer_lightning.cli.command`` maps any
of them to that one line and exit status 1, without a traceback. They keep the builtin
base classes they always had (``ValueError``, ``ImportError``), so ``except ValueError``
written against older code still catches them.
"""

from __future__ import annotations


class FerError(Exception):
    """An error the user can fix (a config value, a file, a missing package); the message
    names the key or file and what was expected. ``prefix`` is what a command prints
    before it."""

    prefix = "Error"

    def line(self) -> str:
        """The one line a command prints for this error: ``<prefix>: <message>``."""
        return f"{self.prefix}: {self}"


class ConfigError(FerError, ValueError):
    """A config value or combination that cannot run; the message names the key."""

    prefix = "Config error"


class DatasetError(FerError, ValueError):
    """The dataset on disk cannot be trained on as configured (an empty split, one class,
    an undecodable listed image, a file in an unreadable encoding). The message names the
    dataset or file, the split and what was expected."""

    prefix = "Dataset error"


class WorkerError(FerError, RuntimeError):
    """A worker process building a cache (decoded splits, landmarks) ended before its
    chunk was written: killed, or unable to start (a script with no ``__main__`` guard).
    The message names the cache folder."""

    prefix = "Cache error"


class CheckpointError(ConfigError):
    """A checkpoint (or ONNX) file that cannot be used; the message names the file and why.
    A ConfigError, since ``ckpt_path`` is a config key."""

    prefix = "Checkpoint error"


class UntrustedConfigError(CheckpointError):
    """A checkpoint or ONNX file whose stored config asks to build something this package
    never builds, holds an interpolation or an odd group option (``fer_lightning.trust``);
    the message names the file, the key and the value."""


class ExportError(ConfigError):
    """An export that failed or does not match PyTorch; the message says by how much."""

    prefix = "Export error"


class MissingPackage(FerError, ImportError):
    """An optional package (landmark backend, face detector, onnxruntime) is not installed;
    the message names the install command."""

    prefix = "Missing package"


class ConvertError(FerError, ValueError):
    """A file ``python -m fer_lightning.convert`` cannot import (not HDF5, not a Keras
    mini_XCEPTION, wrong class names); the message names the file and what was found."""

    prefix = "Convert error"


class ReportError(FerError, ValueError):
    """A report cannot be made (no such path, no runs); the message says which."""

    prefix = "Report error"


def error_line(error: BaseException) -> str:
    """The one line a command prints for ``error``: its own prefix for a FerError, the
    message alone otherwise."""
    return error.line() if isinstance(error, FerError) else str(error)
