"""One narration end to end: plan the project, generate what is missing, assemble, master, export.

This is what ``vesper narrate`` and the desktop app call; they differ only in how they show progress.
``render`` writes the audiobook from a project's finished chunks: the command after its run, the
window's Export whenever every chunk has a file.
``read_script`` turns the source into a ``Script`` with the project's text settings (its dictionary
file, normalisation), so bad markup or an unknown ``[voice: NAME]`` stops it before anything starts.
Outputs are checked before anything runs (``check_narration``), so a bad path costs no generation; each
output is written to a temporary name and renamed when complete.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from inference.errors import BadInputError
from inference.narration import export, mastering
from inference.narration.assembly import Assembly, AssemblySettings, Timeline
from inference.narration.build import build_script
from inference.narration.dictionary import load_dictionary
from inference.narration.mastering import MasterReport, Mode
from inference.narration.project import DICTIONARY, Generation, PlannedChunk, Project, model_revision
from inference.narration.runner import Runner, RunResult
from inference.narration.script import Script
from inference.output import check_output
from inference.voice_library import Voice, VoiceLibrary


@dataclass(frozen=True)
class TextSettings:
    """How the source's text becomes what is said; a project keeps them (``text_settings`` reads them back).

    ``dictionary`` is a pronunciation dictionary file, copied into the project as its own when the
    narration runs; ``normalize`` writes numbers, money, units and dates out as words.
    """

    dictionary: Path | None = None
    normalize: bool = True
    read_code: bool = False

    def as_dict(self) -> dict:
        return {"dictionary": DICTIONARY if self.dictionary else None, "normalize": self.normalize,
                "read_code": self.read_code}


def text_settings(project: Path, dictionary: Path | None = None, normalize: bool | None = None,
                  read_code: bool | None = None) -> TextSettings:
    """The project's text settings, with what the user gave now taking precedence (None: keep the project's).

    Without ``dictionary`` the project's own dictionary file is used if it has one; a new project
    normalises and skips code blocks.
    """
    kept = Project(project).manifest().get("text", {})
    own = Project(project).dictionary_path
    return TextSettings(dictionary or (own if own.is_file() else None),
                        kept.get("normalize", True) if normalize is None else normalize,
                        kept.get("read_code", False) if read_code is None else read_code)


def read_script(source: Path | str | bytes, text: TextSettings, voices: Collection[str], max_chunk_chars: int,
                kind: str | None = None) -> Script:
    """The source as a Script: ``voices`` are the names ``[voice: NAME]`` may use (the voice library's)."""
    dictionary = load_dictionary(text.dictionary) if text.dictionary else None
    return build_script(source, kind=kind, max_chunk_chars=max_chunk_chars, voices=voices, dictionary=dictionary,
                        normalize=text.normalize, read_code=text.read_code)


def chunk_limit(model: str, hardware: str | None = None) -> int:
    """The longest chunk the worker's plan for ``model`` takes (registered names: torch-free; a folder
    or hub id is measured on the meta device, which imports torch)."""
    from inference import catalogue
    from inference import hardware as hw
    from inference.planner import Workload
    from inference.worker.protocol import WorkerSettings

    return catalogue.preview(model, hw.resolve(hardware), Workload(batch_size=WorkerSettings().batch_size))[0] \
        .max_chunk_chars


@dataclass(frozen=True)
class Narration:
    """Everything one narration needs; ``voices`` maps markup voice names (and None: the narrator) to voices."""

    source: str  # the input as the user named it (a path, or "-")
    script: Script
    voices: dict[str | None, Voice]
    project: Path
    model: str
    out: Path | None = None
    srt: Path | None = None
    vtt: Path | None = None
    seed: int = 0
    master: Mode = Mode.PODCAST
    redo: tuple[int, ...] = ()
    force: bool = False
    hardware: str | None = None
    assembly: AssemblySettings = field(default_factory=AssemblySettings)
    info: export.BookInfo | None = None  # None: title and author from the script
    text: TextSettings = field(default_factory=TextSettings)  # how ``script`` was read (kept in the project)


@dataclass(frozen=True)
class NarrationResult:
    run: RunResult
    report: MasterReport | None  # None when no audio output was asked for
    timeline: Timeline | None
    outputs: tuple[Path, ...]
    project: Path


def voices_for(script: Script, narrator: Voice, library: VoiceLibrary) -> dict[str | None, Voice]:
    """The narrator and every voice the script's markup names (unknown names fail before anything runs)."""
    return {None: narrator, **{name: library.get(name) for name in sorted(script.voices)}}


def check_narration(narration: Narration) -> None:
    """Everything that can be checked before any work: outputs (unwritable, unknown format, or existing
    without ``force``), something to say, ``redo`` numbers within the book."""
    if narration.out is not None:
        check_output(narration.out, export.FORMATS, narration.force)
    for path, fmt in ((narration.srt, "srt"), (narration.vtt, "vtt")):
        if path is not None:
            check_output(path, (fmt,), narration.force)
    count = len(narration.script.chunks)
    if not count:
        raise BadInputError(f"{narration.source} has nothing to say: give at least one word.")
    if narration.redo and not 1 <= min(narration.redo) <= max(narration.redo) <= count:
        raise BadInputError(f"--redo names chunk {max(narration.redo)}, but the book has {count} chunks.")


def narrate(narration: Narration, runner: Runner) -> NarrationResult:
    """Run ``narration`` with ``runner`` (whose ``cancel`` stops it between micro-batches).

    A file that cannot be written (disk full, a folder gone read-only) ends it with one line; chunks
    already written stay, so the same narration resumes once there is room.
    """
    check_narration(narration)
    try:
        return _narrate(narration, runner)
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        raise BadInputError(f"Could not write{where}: {exc.strerror or exc}; make room (or choose another "
                            "folder) and run the same command again: it resumes with the chunks already made.") from exc


def _narrate(narration: Narration, runner: Runner) -> NarrationResult:
    project = Project(narration.project).open()
    if narration.text.dictionary is not None:
        project.keep_dictionary(narration.text.dictionary)
    generation = Generation(narration.model, model_revision(narration.model), narration.seed)
    planned = project.plan(narration.script, narration.voices, generation)
    if narration.redo:
        planned = project.redo(planned, narration.redo, generation)
    settings = {"assembly": vars(narration.assembly), "master": narration.master.value,
                "text": narration.text.as_dict()}
    project.record(narration.script, narration.source, planned, generation, settings)
    run = runner.run(project, planned, narration.model, narration.hardware)
    project.record(narration.script, narration.source, planned, generation,
                   {**settings, "plan": run.plan or project.manifest().get("plan", ""), "sample_rate": run.sample_rate})
    if narration.out is None and narration.srt is None and narration.vtt is None:
        return NarrationResult(run, None, None, (), project.root)
    report, timeline = _render(narration, project, planned, run.sample_rate)
    return NarrationResult(run, report, timeline, tuple(p for p in (narration.out, narration.srt, narration.vtt)
                                                        if p is not None), project.root)


def _render(narration: Narration, project: Project, planned: list[PlannedChunk],
            rate: int) -> tuple[MasterReport | None, Timeline]:
    assembly = Assembly(project, narration.script, planned, rate, narration.assembly)
    report, timeline = render(assembly, narration.script, Outputs(narration.out, narration.srt, narration.vtt,
                                                                  narration.master, narration.info))
    return (report if narration.out is not None else None), timeline


@dataclass(frozen=True)
class Outputs:
    """What to write from an assembled narration (the narrate command's --out/--srt/--vtt/--master, the
    window's export dialog); targets already checked (``check_output``)."""

    audio: Path | None = None
    srt: Path | None = None
    vtt: Path | None = None
    master: Mode = Mode.PODCAST
    info: export.BookInfo | None = None  # None: title and author from the script


def render(assembly: Assembly, script: Script, outputs: Outputs) -> tuple[MasterReport, Timeline]:
    """Write ``outputs`` from ``assembly``: pass one measures the loudness and lays out the timeline
    (cues, chapter marks), pass two masters and encodes. Returns what mastering did (measured only,
    without an audio output) and the timeline."""
    rate = assembly.sample_rate
    report = MasterReport(outputs.master, mastering.measure(assembly.blocks(), rate))
    timeline = assembly.timeline
    if outputs.audio is not None:
        info = outputs.info or export.BookInfo(script.title, script.author)
        export.write_audio(outputs.audio, mastering.apply(outputs.master, assembly.blocks(), rate, report), rate,
                           timeline.chapters, info)
    if outputs.srt is not None:
        export.write_text(outputs.srt, export.srt(timeline.cues))
    if outputs.vtt is not None:
        export.write_text(outputs.vtt, export.webvtt(timeline.cues))
    return report, timeline
