"""``vesper say``: speak a text in a cloned voice, through the worker process."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from inference.cli import options
from inference.defaults import DEFAULT_MODEL
from inference.text_input import decode_text, from_argument

OUTPUT_FORMATS = ("wav",)  # what ``say`` writes; other formats come with the narration exporter


def add_parser(commands: argparse._SubParsersAction) -> None:
    say = commands.add_parser("say", help="speak TEXT in the voice of a reference recording")
    say.add_argument("text", help="the text to speak, or - to read it from standard input")
    say.add_argument("--voice", required=True, type=Path, help="reference recording (WAV/FLAC/OGG, 5-15 s of speech)")
    say.add_argument("--voice-text", help="what is said in the reference recording (improves cloning)")
    say.add_argument("--model", default=DEFAULT_MODEL, help=f"name, hub id or folder (default {DEFAULT_MODEL})")
    say.add_argument("--out", type=Path, default=Path("narration.wav"),
                     help="output WAV file (default narration.wav in the current folder)")
    say.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same audio")
    say.add_argument("--play", action="store_true", help="play the narration while it is generated")
    say.add_argument("--hardware", help="plan for a preset or JSON machine description instead of this one")
    options.add_vram_limit(say)
    say.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Through the worker process, so an out-of-memory step-down or a worker crash does not end the run."""
    from inference.audio import write_wav
    from inference.cli.progress import Progress
    from inference.errors import VesperError
    from inference.output import check_output
    from inference.playback import LivePlayer
    from inference.worker.client import WorkerClient, check_job
    from inference.worker.protocol import ChunkPiece, ChunkReady, Event, SpeakJob

    target = check_output(args.out, OUTPUT_FORMATS)  # a bad --out fails now, not after the whole job
    transcript = None if args.voice_text is None else from_argument(args.voice_text, "The --voice-text argument")
    job = SpeakJob(_text(args.text), args.voice, transcript, args.model, args.seed, args.hardware)
    check_job(job)  # bad input fails before a worker process is started
    settings = options.worker_settings(args)
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
        with WorkerClient(settings) as client:
            result = client.speak(job, progress)
    finally:
        shown.close()
    audio, rate = result.audio(), result.sample_rate
    write_wav(target, audio, rate)  # under a temporary name beside it, renamed when complete
    seconds = len(audio) / rate
    print(f"Wrote {args.out} ({seconds:.1f} s of audio at {rate} Hz, {result.plan}, "
          f"{time.perf_counter() - started:.1f} s)")
    if player is not None:
        player.finish()
    return 0


def _text(argument: str) -> str:
    """The text to speak: the argument, or standard input read as bytes for ``-``."""
    if argument == "-":
        return decode_text(sys.stdin.buffer.read(), "The text on standard input")
    return from_argument(argument)
