"""Vesper's log: one rotating file shared by the CLI, the GUI and (through the client) the worker.

The worker process writes no file of its own: its records travel over the event pipe and the client
logs them here, so one process owns the file and rotation never races. Torch-free (the GUI calls it).
"""

from __future__ import annotations

import logging
import sys
from logging.handlers import RotatingFileHandler
from pathlib import Path

from inference import paths

LOGGERS = ("inference", "desktop")  # Vesper's own packages; libraries keep their own levels
MAX_BYTES = 2 * 2**20
BACKUPS = 3
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup(verbose: bool = False) -> None:
    """Log Vesper's records (INFO and above) to ``paths.log_file()``; with ``verbose``, also to stderr.

    The file is created at the first record, not here. Calling it again changes only the verbosity.
    """
    for name in LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(logging.DEBUG if verbose else logging.INFO)
        if not any(isinstance(h, RotatingFileHandler) for h in logger.handlers):
            logger.addHandler(_file_handler())
        for handler in [h for h in logger.handlers if getattr(h, "vesper_stderr", False)]:
            logger.removeHandler(handler)
        if verbose:
            stderr = logging.StreamHandler(sys.stderr)
            stderr.setFormatter(logging.Formatter("vesper %(levelname)s %(name)s: %(message)s"))
            stderr.vesper_stderr = True  # type: ignore[attr-defined]
            logger.addHandler(stderr)


class _LazyFileHandler(RotatingFileHandler):
    """Creates the log folder and file at the first record: a command that logs nothing leaves no trace."""

    def _open(self):  # noqa: ANN202 - the base class's signature
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()


def _file_handler() -> RotatingFileHandler:
    handler = _LazyFileHandler(paths.log_file(), maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8",
                               delay=True)
    handler.setFormatter(logging.Formatter(FORMAT))
    return handler
