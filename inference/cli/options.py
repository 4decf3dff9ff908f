"""Options several commands share: ``--vram-limit``, and the limit in force (flag, environment, settings)."""

from __future__ import annotations

import argparse


def add_vram_limit(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vram-limit", metavar="SIZE",
                        help="GPU memory Vesper may use, CUDA context included, e.g. 6GiB, 6GB or 6144MiB "
                             "(default: VESPER_VRAM_LIMIT, else the settings file, else whatever is free)")


def vram_limit_bytes(args: argparse.Namespace) -> int:
    """The limit in bytes: ``--vram-limit`` first, then ``VESPER_VRAM_LIMIT`` and the settings file; 0: none."""
    from inference import settings
    from inference.units import parse_size

    if args.vram_limit:
        return parse_size(args.vram_limit, "--vram-limit")
    return settings.load().vram_limit_bytes


def machine(args: argparse.Namespace):
    """The ``Hardware`` to plan for: ``--hardware`` (or this machine) under the VRAM limit in force."""
    from inference import hardware as hw

    return hw.with_vram_limit(hw.resolve(args.hardware), vram_limit_bytes(args))


def worker_settings(args: argparse.Namespace):
    """The worker's settings for a command that generates: the VRAM limit in force."""
    from inference.worker.protocol import WorkerSettings

    return WorkerSettings(vram_limit_bytes=vram_limit_bytes(args))
