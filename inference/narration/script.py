"""What a narration says, in order: the plain data between reading a source and generating audio.

A ``Script`` is built from a source (text, Markdown, EPUB) after markup, normalisation for speech
and the pronunciation dictionary have been applied, so a ``Chunk``'s ``text`` is exactly what the
model is given. Everything downstream (project chunk keys, the worker, assembly, subtitles) reads
this and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SourceSpan:
    """Where something came from in the source: 1-based line and column (for errors and edits)."""

    line: int
    column: int = 1


@dataclass(frozen=True)
class Chunk:
    """One piece the model speaks in one go: one or more whole sentences, within the plan's limit.

    ``voice`` is a voice-library name set by ``[voice: NAME]`` markup (None: the narration's voice).
    ``sentences`` are the chunk's sentences in order, joined by single spaces they make ``text``:
    subtitles are timed from them.
    """

    text: str
    sentences: tuple[str, ...]
    voice: str | None = None
    span: SourceSpan = SourceSpan(1)


@dataclass(frozen=True)
class Pause:
    """Silence asked for by ``[pause 1.5s]`` markup, on top of the usual sentence/paragraph pauses."""

    seconds: float
    span: SourceSpan = SourceSpan(1)


@dataclass(frozen=True)
class Paragraph:
    items: tuple[Chunk | Pause, ...]
    span: SourceSpan = SourceSpan(1)

    @property
    def chunks(self) -> tuple[Chunk, ...]:
        return tuple(i for i in self.items if isinstance(i, Chunk))


@dataclass(frozen=True)
class Chapter:
    title: str
    paragraphs: tuple[Paragraph, ...]

    @property
    def chunks(self) -> tuple[Chunk, ...]:
        return tuple(c for p in self.paragraphs for c in p.chunks)


@dataclass(frozen=True)
class Script:
    """A whole narration. ``title``/``author`` come from the source's metadata where it has some."""

    chapters: tuple[Chapter, ...]
    title: str = ""
    author: str = ""
    language: str = "en"
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def chunks(self) -> tuple[Chunk, ...]:
        return tuple(c for ch in self.chapters for c in ch.chunks)

    @property
    def voices(self) -> frozenset[str]:
        """Voice names the markup asks for (each must exist in the voice library)."""
        return frozenset(c.voice for c in self.chunks if c.voice is not None)
