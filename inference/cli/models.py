"""``vesper models``: which registered model fits this machine (or a described one), before any download.

Runs on the catalogue's stored sizes (``inference.catalogue.verdicts``): no torch, well under a second.
"""

from __future__ import annotations

import argparse
import json

from inference.cli import options
from inference.units import gib


def add_parser(commands: argparse._SubParsersAction) -> None:
    models = commands.add_parser("models", help="list every model with whether it fits this machine and how fast")
    models.add_argument("--hardware", help="preset name or JSON file (default: this machine)")
    options.add_vram_limit(models)
    models.add_argument("--json", action="store_true", help="print JSON")
    models.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from inference import catalogue

    rows = catalogue.verdicts(options.machine(args))
    if args.json:
        print(json.dumps([row.to_dict() for row in rows], indent=2))
        return 0
    print(f"{'model':<16}{'verdict':<24}{'peak VRAM':>11}{'RAM':>11}{'RTF':>7}  plan")
    for row in rows:
        rtf = f"{row.real_time_factor:.2f}" if row.real_time_factor is not None else "-"
        vram = gib(row.peak_vram_bytes) if row.plan and row.device != "cpu" else "-"
        ram = gib(row.peak_ram_bytes) if row.plan else "-"
        print(f"{row.model:<16}{row.fit.value:<24}{vram:>11}{ram:>11}{rtf:>7}  {row.why if row.plan else ''}")
    for row in rows:
        if row.plan is None:
            print(row.why)
    print("RTF: predicted seconds of decoding per second of audio (below 1 is faster than real time); "
          "`vesper plan --model NAME` shows a plan in full.")
    return 0
