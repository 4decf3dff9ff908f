"""A narration in the window: the project's chunks as rows (status, takes), read from the project itself.

The project folder (``inference.narration.project``) is the one record of what is generated: a chunk
is done when its file exists, its takes and chosen take are in the manifest. This object only plans
the editor's text against the project and reads that back as rows and a progress line; it keeps no
audio and no job ids of its own. It knows nothing of Qt or of the worker process.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inference.errors import BadInputError
from inference.narration import book
from inference.narration.project import Generation, PlannedChunk, Project, default_root, model_revision
from inference.narration.runner import Progress
from inference.narration.script import Script
from inference.voice_library import Voice
from inference.worker.protocol import CHUNK_GAP_SECONDS

UNTITLED = "untitled"  # the project of a text typed without opening a document


class ChunkStatus(str, enum.Enum):
    PENDING = "pending"
    GENERATING = "generating"
    DONE = "done"


@dataclass(frozen=True)
class ChunkRow:
    """One chunk as the window lists it; ``take`` is the chosen one (0-based) of ``takes`` made so far."""

    number: int  # 1-based, the project's chunk number (what a redo names)
    paragraph: int
    text: str
    status: ChunkStatus
    take: int
    takes: int


def project_root(document: Path | None) -> Path:
    """Where a document's narration lives: named from the document, as ``vesper narrate`` names it."""
    return default_root(str(document) if document is not None else UNTITLED)


class NarrationState:
    """The editor's text planned against its project: ``rows`` and ``summary`` for the window."""

    def __init__(self, chunk_chars: int) -> None:
        self.chunk_chars = chunk_chars
        self.script: Script | None = None
        self.project: Project | None = None
        self.planned: list[PlannedChunk] = []
        self.rows: list[ChunkRow] = []
        self.progress: Progress | None = None  # the running narration's, None when none runs
        self._chunks: list[tuple[int, str]] = []  # (paragraph, text) of each chunk, in order
        self._voice: Voice | None = None
        self._model = ""

    def read(self, text: str, kind: str) -> Script | None:
        """``text`` as the narration reads it (None: no words yet, or markup it cannot read)."""
        try:
            script = book.read_script(text, book.TextSettings(), (), self.chunk_chars, kind=kind)
        except BadInputError:
            return None
        return script if script.chunks else None

    def revise(self, text: str, kind: str, document: Path | None, voice: Voice | None, model: str) -> None:
        """Plan ``text`` for ``document``'s project with ``voice`` and ``model`` and read back the rows
        (without a voice yet, the chunks are listed, all pending)."""
        self.script = self.read(text, kind)
        self.project = Project(project_root(document))
        paragraphs = self.script.chapters if self.script is not None else ()
        self._chunks = [(n, c.text) for n, para in enumerate(p for ch in paragraphs for p in ch.paragraphs)
                        for c in para.chunks]
        self._voice, self._model = voice, model
        self.replan()

    def replan(self) -> None:
        """Key the chunks again with the takes the project has chosen now (a redo chose new ones), and
        read the rows back."""
        self.planned = [] if self.script is None or self._voice is None or self.project is None else \
            self.project.plan(self.script, {None: self._voice}, generation(self._model))
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
            status = ChunkStatus.DONE if self.project.is_done(item) else ChunkStatus.PENDING
            if status is ChunkStatus.PENDING and generating:
                status, generating = ChunkStatus.GENERATING, False
            rows.append(ChunkRow(item.number, paragraph, item.chunk.text, status, item.take,
                                 takes.get(item.base_key, {}).get("takes", 1)))
        self.rows = rows

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
        done = sum(r.status is ChunkStatus.DONE for r in self.rows)
        line = f"{done}/{len(self.rows)} chunks done"
        if (progress := self.progress) is not None:
            line += f", {progress.audio_seconds:.1f} s of audio"
            if progress.speed is not None:
                line += f", {progress.speed:.2f}x real time"
            if progress.eta_seconds is not None:
                line += f", about {progress.eta_seconds:.0f} s left"
        return line

    def cues(self) -> list[tuple[float, float, str]]:
        """(start, end, text) of each chunk in ``assembled()``'s audio, in seconds."""
        spans, start = [], 0.0
        for index, row in enumerate(self.rows):
            chosen = self.chosen_audio(index)
            if chosen is None:
                return []
            audio, rate = chosen
            end = start + len(audio) / rate
            spans.append((start, end, row.text))
            start = end + int(CHUNK_GAP_SECONDS * rate) / rate
        return spans

    def assembled(self) -> tuple[np.ndarray, int] | None:
        """The chosen takes in order with the chunk pause between them (None until every chunk has one)."""
        takes = [self.chosen_audio(i) for i in range(len(self.rows))]
        if not takes or any(t is None for t in takes):
            return None
        rate = takes[0][1]
        gap = np.zeros(int(CHUNK_GAP_SECONDS * rate), dtype=np.float32)
        parts: list[np.ndarray] = []
        for audio, _ in takes:
            parts.extend([gap, audio] if parts else [audio])
        return np.concatenate(parts).astype(np.float32, copy=False), rate


def generation(model: str) -> Generation:
    """What the window's chunks depend on besides text and voice (the CLI's default seed)."""
    return Generation(model, model_revision(model))
