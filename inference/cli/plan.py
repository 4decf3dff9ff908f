"""``vesper plan``: where each part of a model would run on a machine, and the memory it needs.

For a registered model this runs on the catalogue's stored sizes: no torch, well under a second.
"""

from __future__ import annotations

import argparse
import json

from inference.cli import options
from inference.defaults import DEFAULT_CHUNK_CHARS, DEFAULT_MODEL
from inference.units import gib


def add_parser(commands: argparse._SubParsersAction) -> None:
    plan = commands.add_parser("plan", help="show where a model would run and how much memory it needs")
    plan.add_argument("--model", default=DEFAULT_MODEL, help="registered name, hub id or folder")
    plan.add_argument("--hardware", help="preset name or JSON file (default: this machine)")
    plan.add_argument("--chars", type=int, default=DEFAULT_CHUNK_CHARS,
                      help=f"longest chunk in characters (default {DEFAULT_CHUNK_CHARS})")
    plan.add_argument("--batch", type=int, default=1, help="chunks decoded together (default 1)")
    options.add_vram_limit(plan)
    plan.add_argument("--json", action="store_true", help="print JSON")
    plan.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from inference import catalogue
    from inference.errors import BadInputError
    from inference.planner import MIN_CHUNK_CHARS, Workload, describe_plan

    if args.chars < MIN_CHUNK_CHARS or args.batch < 1:
        raise BadInputError(f"--chars must be at least {MIN_CHUNK_CHARS} and --batch at least 1.")
    ladder = catalogue.preview(args.model, options.machine(args), Workload(args.chars, args.batch))
    plan = ladder[0]
    if args.json:
        data = plan.to_dict()
        data["fallbacks"] = [{"level": p.level, "executor": p.executor, "max_chunk_chars": p.max_chunk_chars,
                              "batch_size": p.batch_size, "predicted_peak_bytes": p.predicted_peak_bytes}
                             for p in ladder[1:]]
        print(json.dumps(data, indent=2))
        return 0
    computed = f" (computed in {plan.compute_dtype}, upcast per module)" if plan.compute_dtype else ""
    print(f"model      {plan.model}\nplan       {plan.level} (executor {plan.executor}) on {plan.device}, {plan.dtype}"
          f"{computed}")
    print(f"chunks     up to {plan.max_chunk_chars} characters, batch {plan.batch_size}; "
          f"KV cache budget {gib(plan.kv_budget_bytes)}")
    if plan.device == "cpu":
        print(f"RAM        {gib(plan.ram_needed_bytes)} needed")
    else:
        calibrated = " (calibrated on this machine)" if plan.calibrated else ""
        print(f"peak VRAM  {gib(plan.predicted_peak_bytes)} predicted of {gib(plan.vram_budget_bytes)} free"
              f"{calibrated}")
        for name, value in vars(plan.memory).items():
            print(f"  {name:<17}{gib(value)}")
        held = "staging buffers, CPU components; layers read from disk" if plan.from_disk else \
            "offloaded weights, CPU components"
        print(f"host RAM   {gib(plan.ram_needed_bytes)} held ({held})")
    for name, info in plan.components.items():
        print(f"component  {name:<19}{gib(info['bytes'])} {info['dtype']:<9} {info['placement']}")
    if plan.streamed_layers:
        print(f"offloaded  {len(plan.streamed_layers)} layers: {plan.streamed_layers[0]} .. {plan.streamed_layers[-1]}")
    if plan.offload:
        print(f"executor   {', '.join(f'{k}={v}' for k, v in plan.offload.items())}")
    for reason in plan.reasons:
        print(f"why        {reason}")
    for lower in ladder[1:]:
        print(f"fallback   {describe_plan(lower)}, executor {lower.executor}, chunks {lower.max_chunk_chars}, "
              f"peak {gib(lower.predicted_peak_bytes)}")
    return 0
