"""A narration in the window: the project's chunks as rows (status, takes), read from the project itself.

The project folder (``inference.narration.project``) is the one record of what is generated: a chunk
is done when its file exists, its takes and chosen take are in the manifest. This object only plans
the editor's text against the project (with the voice library's names for ``[voice: NAME]``, as
``vesper narrate`` reads them) and reads that back as rows and a progress line; it keeps no audio and
no job ids of its own. What it holds beside the project is the running narration's: its progress, and
which chunks its failure stopped at (a failure is not a fact about the project: the next narration
retries them). It knows nothing of Qt or of the worker process.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inference.errors import BadInputError
from inference.narration import book
from inference.narration.assembly import Assembly, AssemblySettings, spacing
from inference.narration.project import Generation, PlannedChunk, Project, default_root, model_revision
from inference.narration.runner import Progress
from inference.narration.script import Script
from inference.voice_library import Voice, VoiceLibrary

UNTITLED = "untitled"  # the project of a text typed without opening a document


class ChunkStatus(str, enum.Enum):
    PENDING = "pending"
    GENERATING = "generating"
    DONE = "done"
    FAILED = "failed"  # the narration stopped on an error while generating it; the next one retries it


@dataclass(frozen=True)
class ChunkRow:
    """One chunk as the window lists it; ``take`` is the chosen one (0-based) of ``takes`` made so far."""

    number: int  # 1-based, the project's chunk number (what a redo names)
    paragraph: int
    text: str
    status: ChunkStatus
    take: int
    takes: int
    voice: str = ""  # the voice that says it ("" until a voice is chosen)
    reason: str = ""  # why it failed (one line), for a FAILED row


def project_root(document: Path | None) -> Path:
    """Where a document's narration lives: named from the document, as ``vesper narrate`` names it."""
    return default_root(str(document) if document is not None else UNTITLED)


def read_text(text: str, kind: str, library: VoiceLibrary, chunk_chars: int) -> Script:
    """The editor's text (or a part of it) as ``vesper narrate`` reads it, ``[voice: NAME]`` naming
    ``library``'s voices; bad markup or an unknown name raises ``BadInputError`` (one line)."""
    return book.read_script(text, book.TextSettings(), [v.name for v in library.list()], chunk_chars, kind=kind)


class NarrationState:
    """The editor's text planned against its project: ``rows`` and ``summary`` for the window."""

    def __init__(self, chunk_chars: int, library: VoiceLibrary | None = None) -> None:
        self.chunk_chars = chunk_chars
        self.library = library or VoiceLibrary()
        self.script: Script | None = None
        self.problem = ""  # why the text cannot be narrated as it is (bad markup, an unknown voice)
        self.project: Project | None = None
        self.voices: dict[str | None, Voice] = {}  # the narrator (None) and the voices the markup names
        self.planned: list[PlannedChunk] = []
        self.rows: list[ChunkRow] = []
        self.progress: Progress | None = None  # the running narration's, None when none runs
        self._failed: dict[str, str] = {}  # chunk key -> why the last narration failed while generating it
        self._chunks: list[tuple[int, str]] = []  # (paragraph, text) of each chunk, in order
        self._spacing: list[float] = []  # the silence before each chunk, as the assembly lays it down
        self._model = ""

    def read(self, text: str, kind: str) -> Script | None:
        """``text`` as the narration reads it, ``[voice: NAME]`` naming the library's voices (None: no
        words yet, or markup it cannot read: ``problem`` says why)."""
        self.problem = ""
        try:
            script = read_text(text, kind, self.library, self.chunk_chars)
        except BadInputError as exc:
            self.problem = str(exc)
            return None
        return script if script.chunks else None

    def revise(self, text: str, kind: str, document: Path | None, voice: Voice | None, model: str) -> None:
        """Plan ``text`` for ``document``'s project with ``voice`` as the narrator and ``model``, and read
        back the rows (without a voice yet, the chunks are listed, all pending)."""
        self.script = self.read(text, kind)
        self.project = Project(project_root(document))
        paragraphs = self.script.chapters if self.script is not None else ()
        self._chunks = [(n, c.text) for n, para in enumerate(p for ch in paragraphs for p in ch.paragraphs)
                        for c in para.chunks]
        self._spacing = spacing(self.script, AssemblySettings()) if self.script is not None else []
        self.voices, self._model = {}, model
        if self.script is not None and voice is not None:
            try:
                self.voices = book.voices_for(self.script, voice, self.library)
            except BadInputError as exc:  # a voice the markup names was removed since the text was read
                self.problem = str(exc)
        self.replan()

    def replan(self) -> None:
        """Key the chunks again with the takes the project has chosen now (a redo chose new ones), and
        read the rows back."""
        self.planned = [] if self.script is None or not self.voices or self.project is None else \
            self.project.plan(self.script, self.voices, generation(self._model))
        self.refresh()

    def refresh(self) -> None:
        """Read the rows back from the project (after a chunk is written or a take chosen)."""
        if self.project is None:
            return
        if not self.planned:
            self.rows = [ChunkRow(i + 1, n, text, ChunkStatus.PENDING, 0, 0)
                         for i, (n, text) in enumerate(self._chunks)]
            return
        takes = self.project.takes()
        rows, generating = [], self.progress is not None
        for item, (paragraph, _) in zip(self.planned, self._chunks, strict=True):
            reason = ""
            if self.project.is_done(item):
                status = ChunkStatus.DONE
            elif generating:  # the runner fills the project in book order: the first missing chunk is next
                status, generating = ChunkStatus.GENERATING, False
            elif item.key in self._failed:
                status, reason = ChunkStatus.FAILED, self._failed[item.key]
            else:
                status = ChunkStatus.PENDING
            rows.append(ChunkRow(item.number, paragraph, item.chunk.text, status, item.take,
                                 takes.get(item.base_key, {}).get("takes", 1), item.voice.name, reason))
        self.rows = rows

    def start(self) -> None:
        """A narration begins: it retries the chunks an earlier one failed on."""
        self._failed.clear()

    def fail(self, reason: str) -> None:
        """The running narration stopped on an error: the chunk it was generating shows failed, with
        ``reason``, until a narration retries it."""
        self.refresh()
        self._failed.update({item.key: reason for item, row in zip(self.planned, self.rows, strict=False)
                             if row.status is ChunkStatus.GENERATING})
        self.progress = None
        self.refresh()

    def choose(self, row: int, take: int) -> None:
        """Make take ``take`` of row ``row`` the one the narration uses (kept in the project)."""
        assert self.project is not None
        self.project.choose(self.planned[row], take)
        self.planned[row] = self.project.with_take(self.planned[row], take, generation(self._model))
        self.refresh()

    def take_audio(self, row: int, take: int) -> tuple[np.ndarray, int] | None:
        """Take ``take`` of row ``row`` (None while it has no file)."""
        assert self.project is not None
        item = self.project.with_take(self.planned[row], take, generation(self._model))
        return self.project.read_chunk(item) if self.project.is_done(item) else None

    def chosen_audio(self, row: int) -> tuple[np.ndarray, int] | None:
        if not self.planned or self.project is None:
            return None
        item = self.planned[row]
        return self.project.read_chunk(item) if self.project.is_done(item) else None

    def summary(self) -> str:
        """One line for the progress label."""
        if self.problem:
            return self.problem
        done = sum(r.status is ChunkStatus.DONE for r in self.rows)
        line = f"{done}/{len(self.rows)} chunks done"
        if failed := sum(r.status is ChunkStatus.FAILED for r in self.rows):
            line += f", {failed} failed"
        if (progress := self.progress) is not None:
            line += f", {progress.audio_seconds:.1f} s of audio"
            if progress.speed is not None:
                line += f", {progress.speed:.2f}x real time"
            if progress.eta_seconds is not None:
                line += f", about {progress.eta_seconds:.0f} s left"
        return line

    def pause_before(self, number: int) -> float | None:
        """Seconds of silence before chunk ``number`` (1-based, book order) in the assembled narration:
        sentence, paragraph and chapter pauses and ``[pause]`` markup (None: no such chunk)."""
        return self._spacing[number - 1] if 0 < number <= len(self._spacing) else None

    def assembly(self) -> Assembly | None:
        """The narration as ``vesper narrate`` assembles it (pauses, trims, chapter marks, cues) from the
        project's chosen takes; None until every chunk has a file."""
        if not self.planned or self.script is None or not all(self.project.is_done(p) for p in self.planned):
            return None
        return Assembly(self.project, self.script, self.planned, self.project.sample_rate(self.planned[0]))

    def assembled(self) -> tuple[np.ndarray, int] | None:
        """The assembly's audio in one block, unmastered, to play (None until every chunk has a file)."""
        if (assembly := self.assembly()) is None:
            return None
        return np.concatenate(list(assembly.blocks())), assembly.sample_rate


def generation(model: str) -> Generation:
    """What the window's chunks depend on besides text and voice (the CLI's default seed)."""
    return Generation(model, model_revision(model))
