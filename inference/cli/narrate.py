"""``vesper narrate``: a text, Markdown or EPUB book (or many) to a chaptered audiobook, resumable.

The work is done by ``inference.narration`` (shared with the desktop app); this module parses the
command line, shows progress with tqdm and prints the summary.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from inference.cli import options
from inference.defaults import DEFAULT_MODEL

INPUT_SUFFIXES = (".txt", ".md", ".markdown", ".epub")


def add_parser(commands: argparse._SubParsersAction) -> None:
    narrate = commands.add_parser("narrate", help="narrate a book (text, Markdown, EPUB) into an audiobook")
    narrate.add_argument("inputs", nargs="+", metavar="INPUT",
                         help="a .txt/.md/.epub file, - for standard input, several files, a folder of them, "
                              "or a .jsonl file of jobs (one a line: text or file, voice, output)")
    narrate.add_argument("--voice", required=True, help="a voice-library name or a reference recording")
    narrate.add_argument("--voice-text", help="what is said in the reference recording")
    narrate.add_argument("--model", default=DEFAULT_MODEL, help=f"name, hub id or folder (default {DEFAULT_MODEL})")
    narrate.add_argument("--project", type=Path, help="project folder (default: one per input in Vesper's data folder)")
    narrate.add_argument("--out", type=Path, help="output BOOK.m4b/.mp3/.flac/.ogg/.opus/.wav (several inputs: a "
                                                  "folder; default: INPUT-NAME.m4b in the current folder)")
    narrate.add_argument("--format", default="m4b", help="output format when --out is a folder (default m4b)")
    narrate.add_argument("--srt", type=Path, help="also write SRT subtitles here")
    narrate.add_argument("--vtt", type=Path, help="also write WebVTT subtitles here")
    narrate.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same audio")
    narrate.add_argument("--master", default="podcast", help="podcast (-16 LUFS), acx or none (default podcast)")
    narrate.add_argument("--redo", help="regenerate these chunks as a new take, e.g. 3,7-9")
    narrate.add_argument("--force", action="store_true", help="replace existing output files")
    narrate.add_argument("--dictionary", type=Path, metavar="FILE",
                         help="pronunciation dictionary (word = respelling a line), kept in the project: later runs "
                              "use the project's copy")
    narrate.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None,
                         help="say numbers, money, units and dates as words (default on; the project remembers)")
    narrate.add_argument("--read-code", action=argparse.BooleanOptionalAction, default=None,
                         help="read Markdown code blocks instead of skipping them (the project remembers)")
    narrate.add_argument("--hardware", help="plan for a preset or JSON machine description instead of this one")
    options.add_vram_limit(narrate)
    narrate.set_defaults(run=run)


@dataclass(frozen=True)
class _Job:
    """One narration of a batch: its input, voice and output as the user gave them."""

    source: str  # a path or "-"
    text: str | None  # the text itself (JSONL "text" jobs); None: read ``source``
    voice: str
    out: Path | None


def run(args: argparse.Namespace) -> int:
    from inference.narration.book import chunk_limit
    from inference.narration.runner import Relay
    from inference.worker.client import WorkerClient

    batch = _jobs(args)
    if len(batch) == 1:  # bad input fails before a worker starts
        narration = _prepare(args, batch[0], args.project, chunk_limit(args.model, args.hardware))
        relay = Relay()
        with WorkerClient(options.worker_settings(args), on_event=relay) as client:
            result = _narrate(client, relay, narration)
        print(_summary(narration, result))
        return 0
    return _run_batch(args, batch)


def _run_batch(args: argparse.Namespace, batch: list[_Job]) -> int:
    """Each job its own project, one after another on one worker; a failure is reported and skipped."""
    from inference.errors import VesperError
    from inference.narration.book import chunk_limit
    from inference.narration.runner import Relay
    from inference.worker.client import WorkerClient, WorkerError

    failed, generated, reused = 0, 0, 0
    limit = chunk_limit(args.model, args.hardware)  # one model for the batch: an unknown one stops it here
    relay = Relay()
    with WorkerClient(options.worker_settings(args), on_event=relay) as client:
        for job in batch:
            try:
                narration = _prepare(args, job, args.project / _stem(job) if args.project else None, limit)
                result = _narrate(client, relay, narration)
            except (VesperError, WorkerError) as exc:
                failed += 1
                print(f"vesper: {job.source}: {exc}", file=sys.stderr)
                continue
            generated, reused = generated + result.run.generated, reused + result.run.reused
            print(_summary(narration, result))
    print(f"{len(batch) - failed} of {len(batch)} narrations done, {failed} failed; "
          f"{generated} chunks generated, {reused} reused.")
    return 1 if failed else 0


def _jobs(args: argparse.Namespace) -> list[_Job]:
    """The inputs as jobs: files as given, a folder's books in name order, a JSONL file's lines."""
    from inference.errors import BadInputError

    single = len(args.inputs) == 1 and not Path(args.inputs[0]).is_dir()
    jobs: list[_Job] = []
    for name in args.inputs:
        path = Path(name)
        if path.is_dir():
            books = sorted(p for p in path.iterdir() if p.suffix.lower() in INPUT_SUFFIXES)
            if not books:
                raise BadInputError(f"The folder {name} holds no .txt, .md or .epub file to narrate.")
            jobs.extend(_Job(str(p), None, args.voice, None) for p in books)
        elif path.suffix.lower() == ".jsonl":
            jobs.extend(_jsonl_jobs(path, args.voice))
            single = False
        else:
            jobs.append(_Job(name, None, args.voice, args.out if single else None))
    return jobs


def _jsonl_jobs(path: Path, default_voice: str) -> list[_Job]:
    from inference.errors import BadInputError

    jobs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            if not isinstance(entry, dict) or ("text" in entry) == ("file" in entry):
                raise ValueError("give exactly one of text and file")
        except ValueError as exc:
            raise BadInputError(f"{path} line {number} is not a job ({exc}): write one JSON object a line with "
                                "text or file, and optionally voice and output.") from None
        source = entry.get("file") or f"{path.stem}-{number}"
        out = Path(entry["output"]) if entry.get("output") else None
        jobs.append(_Job(str(source), entry.get("text"), entry.get("voice", default_voice), out))
    return jobs


def _stem(job: _Job) -> str:
    return "stdin" if job.source == "-" else Path(job.source).stem


def _prepare(args: argparse.Namespace, job: _Job, project: Path | None, max_chunk_chars: int):
    """Everything checked before any generation: voices, options, the source read into a Script, outputs."""
    from inference.narration.book import Narration, check_narration, read_script, text_settings, voices_for
    from inference.narration.mastering import parse_mode
    from inference.narration.project import default_root, parse_chunk_numbers
    from inference.voice_library import VoiceLibrary

    library = VoiceLibrary()
    narrator = library.resolve(job.voice, args.voice_text)
    root = project or default_root(job.source)
    text = text_settings(root, args.dictionary, args.normalize, args.read_code)
    script = read_script(_source(job), text, [v.name for v in library.list()], max_chunk_chars)
    narration = Narration(job.source, script, voices_for(script, narrator, library), root, args.model,
                          job.out or _default_out(args, job), args.srt, args.vtt, args.seed, parse_mode(args.master),
                          tuple(parse_chunk_numbers(args.redo)) if args.redo else (), args.force, args.hardware,
                          text=text)
    check_narration(narration)
    return narration


def _source(job: _Job) -> Path | str | bytes:
    """What ``build_script`` reads: a JSONL job's text, standard input's bytes, or the file."""
    if job.text is not None:
        return job.text
    return sys.stdin.buffer.read() if job.source == "-" else Path(job.source)


def _default_out(args: argparse.Namespace, job: _Job) -> Path:
    if args.out is not None and (args.out.is_dir() or len(args.inputs) > 1 or job.text is not None):
        return args.out / f"{_stem(job)}.{args.format}"
    return args.out or Path(f"{'narration' if job.source == '-' else _stem(job)}.{args.format}")


def _narrate(client, relay, narration):
    """Run one narration with a progress bar on stderr; ``relay`` is ``client``'s ``on_event``."""
    from tqdm import tqdm

    from inference.narration.book import narrate
    from inference.narration.runner import Runner

    with tqdm(total=len(narration.script.chunks), unit="chunk", file=sys.stderr, desc=_label(narration),
              dynamic_ncols=True, leave=False) as bar:
        def show(progress) -> None:
            bar.total = progress.chunks_total
            bar.n = progress.chunks_done
            speed = f"{progress.speed:.1f}x" if progress.speed is not None else "-"
            eta = _clock(progress.eta_seconds) if progress.eta_seconds is not None else "-"
            bar.set_postfix_str(f"audio {_clock(progress.audio_seconds)}, {speed} real time, ETA {eta}")

        return narrate(narration, relay.serve(Runner(client, show)))


def _label(narration) -> str:
    return "stdin" if narration.source == "-" else Path(narration.source).name


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _summary(narration, result) -> str:
    run = result.run
    parts = [f"{run.chunks_total} chunks ({run.generated} generated, {run.reused} reused)",
             f"{_clock(run.audio_seconds)} of audio", f"{run.seconds:.1f} s"]
    if result.report is not None:
        for line in result.report.lines()[1:]:
            print(f"  {line}", file=sys.stderr)
        report = result.report
        if report.passed is not None:
            parts.append(f"ACX {'passes' if report.passed else 'fails'}")
        elif report.after is not None:
            parts.append(f"{report.mode.value} {report.after.integrated_lufs:.1f} LUFS")
    outputs = ", ".join(str(p) for p in result.outputs) or "no output file"
    return f"Wrote {outputs}: {', '.join(parts)}; project {result.project}"
