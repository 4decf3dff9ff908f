"""Vesper's command line: ``say``, ``plan`` and ``hardware``.

Errors the user can fix come out as one line on stderr and exit status 2; nothing is written
unless the whole job succeeded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from inference.defaults import DEFAULT_MODEL
from inference.errors import VesperError


def main(argv: list[str] | None = None) -> int:
    # transformers warns about config details of released checkpoints (token ids outside a sub-model's
    # vocabulary) that users cannot act on; set before transformers is first imported, here and in the worker.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except VesperError as exc:
        print(f"vesper: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vesper: interrupted; nothing was written.", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vesper", description="Offline voice cloning and narration.")
    commands = parser.add_subparsers(dest="command", required=True)

    say = commands.add_parser("say", help="speak TEXT in the voice of a reference recording")
    say.add_argument("text", help="the text to speak, or - to read it from standard input")
    say.add_argument("--voice", required=True, type=Path, help="reference recording (WAV/FLAC/OGG, 5-15 s of speech)")
    say.add_argument("--voice-text", help="what is said in the reference recording (improves cloning)")
    say.add_argument("--model", default=DEFAULT_MODEL, help=f"name, hub id or folder (default {DEFAULT_MODEL})")
    say.add_argument("--out", type=Path, default=Path("narration.wav"), help="output WAV (default narration.wav)")
    say.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same audio")
    say.add_argument("--play", action="store_true", help="play the narration while it is generated")
    say.add_argument("--hardware", help="plan for a preset or JSON machine description instead of this one")
    say.set_defaults(run=_say)

    plan = commands.add_parser("plan", help="show where a model would run and how much memory it needs")
    plan.add_argument("--model", default=DEFAULT_MODEL, help="registered name, hub id or folder")
    plan.add_argument("--hardware", help="preset name or JSON file (default: this machine)")
    plan.add_argument("--chars", type=int, default=300, help="longest chunk in characters (default 300)")
    plan.add_argument("--batch", type=int, default=1, help="chunks decoded together (default 1)")
    plan.add_argument("--json", action="store_true", help="print JSON")
    plan.set_defaults(run=_plan)

    hardware = commands.add_parser("hardware", help="show the GPUs, memory and OS Vesper detects")
    hardware.add_argument("--json", action="store_true", help="print JSON")
    hardware.set_defaults(run=_hardware)
    return parser


def _say(args: argparse.Namespace) -> int:
    """Through the worker process, so an out-of-memory step-down or a worker crash does not end the run."""
    from inference.audio import write_wav
    from inference.errors import VesperError
    from inference.playback import LivePlayer
    from inference.worker.client import WorkerClient, check_job
    from inference.worker.protocol import ChunkPiece, ChunkReady, Event, Notice, SpeakJob

    text = sys.stdin.read() if args.text == "-" else args.text
    job = SpeakJob(text, args.voice, args.voice_text, args.model, args.seed, args.hardware)
    check_job(job)  # bad input fails before a worker process is started
    started = time.perf_counter()
    player = LivePlayer() if args.play else None

    def progress(event: Event) -> None:
        nonlocal player
        if isinstance(event, ChunkReady):
            print(f"chunk {event.index + 1}/{event.total}: {len(event.audio) / event.sample_rate:.1f} s",
                  file=sys.stderr)
        elif isinstance(event, Notice):
            print(f"vesper: {event.message}", file=sys.stderr)
        if player is None or not isinstance(event, (ChunkPiece, ChunkReady)):
            return
        try:
            if isinstance(event, ChunkPiece):
                player.piece(event.index, event.offset, event.audio, event.sample_rate)
            else:
                player.chunk(event.index, event.audio, event.sample_rate)
        except VesperError as exc:  # no sound device: keep narrating into the file
            print(f"vesper: {exc}", file=sys.stderr)
            player = None

    with WorkerClient() as client:
        result = client.speak(job, progress)
    audio, rate = result.audio(), result.sample_rate
    write_wav(args.out, audio, rate)
    seconds = len(audio) / rate
    print(f"Wrote {args.out} ({seconds:.1f} s of audio at {rate} Hz, {result.plan}, "
          f"{time.perf_counter() - started:.1f} s)")
    if player is not None:
        player.finish()
    return 0


def _plan(args: argparse.Namespace) -> int:
    from inference import hardware as hw
    from inference.errors import BadInputError
    from inference.models import describe
    from inference.planner import MIN_CHUNK_CHARS, Workload, candidates, describe_plan

    if args.chars < MIN_CHUNK_CHARS or args.batch < 1:
        raise BadInputError(f"--chars must be at least {MIN_CHUNK_CHARS} and --batch at least 1.")
    ladder = candidates(describe(args.model), hw.resolve(args.hardware), Workload(args.chars, args.batch))
    plan = ladder[0]
    if args.json:
        data = plan.to_dict()
        data["fallbacks"] = [{"level": p.level, "executor": p.executor, "max_chunk_chars": p.max_chunk_chars,
                              "batch_size": p.batch_size, "predicted_peak_bytes": p.predicted_peak_bytes}
                             for p in ladder[1:]]
        print(json.dumps(data, indent=2))
        return 0
    print(f"model      {plan.model}\nplan       {plan.level} (executor {plan.executor}) on {plan.device}, {plan.dtype}")
    print(f"chunks     up to {plan.max_chunk_chars} characters, batch {plan.batch_size}; "
          f"KV cache budget {_gib(plan.kv_budget_bytes)}")
    if plan.device == "cpu":
        print(f"RAM        {_gib(plan.ram_needed_bytes)} needed")
    else:
        calibrated = " (calibrated on this machine)" if plan.calibrated else ""
        print(f"peak VRAM  {_gib(plan.predicted_peak_bytes)} predicted of {_gib(plan.vram_budget_bytes)} free"
              f"{calibrated}")
        for name, value in vars(plan.memory).items():
            print(f"  {name:<17}{_gib(value)}")
        print(f"host RAM   {_gib(plan.ram_needed_bytes)} held (offloaded weights, CPU components)")
    for name, info in plan.components.items():
        print(f"component  {name:<19}{_gib(info['bytes'])} {info['dtype']:<9} {info['placement']}")
    if plan.streamed_layers:
        print(f"offloaded  {len(plan.streamed_layers)} layers: {plan.streamed_layers[0]} .. {plan.streamed_layers[-1]}")
    if plan.offload:
        print(f"executor   {', '.join(f'{k}={v}' for k, v in plan.offload.items())}")
    for reason in plan.reasons:
        print(f"why        {reason}")
    for lower in ladder[1:]:
        print(f"fallback   {describe_plan(lower)}, executor {lower.executor}, chunks {lower.max_chunk_chars}, "
              f"peak {_gib(lower.predicted_peak_bytes)}")
    return 0


def _hardware(args: argparse.Namespace) -> int:
    from inference import hardware as hw

    machine = hw.detect()
    if args.json:
        print(json.dumps(machine.to_dict(), indent=2))
        return 0
    print(f"OS         {machine.os}, {machine.cpu_count} CPU threads")
    print(f"RAM        {_gib(machine.ram_available_bytes)} available of {_gib(machine.ram_total_bytes)}")
    if not machine.gpus:
        print("GPU        none found (NVIDIA driver/NVML not available): Vesper runs on the CPU")
    for gpu in machine.gpus:
        major, minor = gpu.compute_capability
        print(f"GPU {gpu.index}      {gpu.name}, {_gib(gpu.free_bytes)} free of {_gib(gpu.total_bytes)}, "
              f"compute {major}.{minor}, PCIe {gpu.pcie_generation}.0 x{gpu.pcie_width} "
              f"(~{gpu.pinned_bandwidth_gbps:.0f} GB/s pinned), driver {gpu.driver}")
    return 0


def _gib(n: int) -> str:
    return f"{n / 1024**3:.2f} GiB"
