"""Vesper's command line: one module per command (``say``, ``narrate``, ``voices``, ``plan``, ``models``, ...).

Errors the user can fix come out as one line on stderr and exit status 2; nothing is written
unless the whole job succeeded. Commands the messages suggest are spelled the way the user runs
Vesper: ``vesper ...`` for the installed console script, ``python launch.py ...`` from a checkout.
"""

from __future__ import annotations

import argparse
import configparser
import logging
import os
import sys
from importlib import metadata
from pathlib import Path

from inference import logs, paths
from inference.cli import hardware, models, narrate, plan, say, voices
from inference.errors import VesperError
from inference.worker.client import WorkerError

log = logging.getLogger(__name__)

COMMANDS = (say, narrate, voices, plan, models, hardware)  # each module has add_parser(subparsers), sets ``run``


def program_name(argv0: str) -> str:
    """How the user started Vesper, for the commands its messages suggest."""
    name = os.path.basename(argv0)
    return "python launch.py" if name == "launch.py" else "vesper"


def as_typed(message: str, program: str) -> str:
    """``message`` with the commands it suggests (```vesper ...```) spelled as ``program``."""
    return message.replace("`vesper ", f"`{program} ")


def main(argv: list[str] | None = None, program: str | None = None) -> int:
    """Run one command; ``program`` is how the user typed Vesper (default: from ``sys.argv[0]``)."""
    # transformers warns about config details of released checkpoints (token ids outside a sub-model's
    # vocabulary) that users cannot act on; set before transformers is first imported, here and in the worker.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if not (sys.argv[1:] if argv is None else argv):  # no command at all: the desktop window
        from desktop.app import main as open_window  # Qt only loads for the window

        return open_window()
    args = _parser().parse_args(argv)
    logs.setup(args.verbose)
    try:
        return args.run(args)
    except VesperError as exc:
        print(f"vesper: {as_typed(str(exc), program or program_name(sys.argv[0]))}", file=sys.stderr)
        return 2
    except WorkerError as exc:
        log.error("%s\n%s", exc, exc.detail)
        print(f"vesper: {exc} Details: {paths.log_file()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vesper: interrupted; nothing was written.", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vesper", description="Offline voice cloning and narration.")
    parser.add_argument("--version", action="version", version=f"vesper {version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="print log lines on stderr")
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(commands)
    for sub in commands.choices.values():  # also after the command: `say ... -v`
        sub.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                         help="print log lines on stderr")
    return parser


def version() -> str:
    """The installed package's version; from a source tree that was never installed, setup.cfg's."""
    try:
        return metadata.version("vesper")
    except metadata.PackageNotFoundError:
        config = configparser.ConfigParser()
        config.read(Path(__file__).resolve().parents[2] / "setup.cfg")
        return config.get("metadata", "version", fallback="unknown")
