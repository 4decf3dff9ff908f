"""``vesper say``: speak a text in a cloned voice, through the worker process."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from inference.defaults import DEFAULT_MODEL


def add_parser(commands: argparse._SubParsersAction) -> None:
    say = commands.add_parser("say", help="speak TEXT in the voice of a reference recording")
    say.add_argument("text", help="the text to speak, or - to read it from standard input")
    say.add_argument("--voice", required=True, type=Path, help="reference recording (WAV/FLAC/OGG, 5-15 s of speech)")
    say.add_argument("--voice-text", help="what is said in the reference recording (improves cloning)")
    say.add_argument("--model", default=DEFAULT_MODEL, help=f"name, hub id or folder (default {DEFAULT_MODEL})")
    say.add_argument("--out", type=Path, default=Path("narration.wav"), help="output WAV (default narration.wav)")
    say.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same audio")
    say.add_argument("--play", action="store_true", help="play the narration while it is generated")
    say.add_argument("--hardware", help="plan for a preset or JSON machine description instead of this one")
    say.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Through the worker process, so an out-of-memory step-down or a worker crash does not end the run."""
    from inference.audio import write_wav
    from inference.cli.progress import Progress
    from inference.errors import VesperError
    from inference.playback import LivePlayer
    from inference.worker.client import WorkerClient, check_job
    from inference.worker.protocol import ChunkPiece, ChunkReady, Event, SpeakJob

    text = sys.stdin.read() if args.text == "-" else args.text
    job = SpeakJob(text, args.voice, args.voice_text, args.model, args.seed, args.hardware)
    check_job(job)  # bad input fails before a worker process is started
    started = time.perf_counter()
    player = LivePlayer() if args.play else None
    shown = Progress(sys.stderr)

    def progress(event: Event) -> None:
        nonlocal player
        shown(event)
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

    try:
        with WorkerClient() as client:
            result = client.speak(job, progress)
    finally:
        shown.close()
    audio, rate = result.audio(), result.sample_rate
    write_wav(args.out, audio, rate)
    seconds = len(audio) / rate
    print(f"Wrote {args.out} ({seconds:.1f} s of audio at {rate} Hz, {result.plan}, "
          f"{time.perf_counter() - started:.1f} s)")
    if player is not None:
        player.finish()
    return 0
