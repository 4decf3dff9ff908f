"""From a source to a ``Script``: markup, sentences, dictionary, normalisation for speech, chunks.

Everything that decides what the model is given happens here, once, before any audio is made, so bad
markup or an unknown voice stops the narration up front, and a chunk's text is exactly what is spoken.
Per paragraph: markup splits it into voiced pieces and pauses; each piece is cut into sentences (on the
text as written, where abbreviations and decimals are still visible); each sentence gets the
dictionary's respellings, then numbers and units in words; the sentences are packed into chunks.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path

from inference.defaults import DEFAULT_CHUNK_CHARS
from inference.errors import BadInputError
from inference.narration import markup
from inference.narration.dictionary import Dictionary
from inference.narration.script import Chapter, Chunk, Paragraph, Pause, Script, SourceSpan
from inference.narration.sentences import pack_indexed, sentence_spans
from inference.narration.sources import Block, Document, read_source
from inference.narration.speech import normalize_for_speech

_SPACE_BEFORE_MARK = re.compile(r" ([.,;:!?…])(?!\w)")  # left where a citation mark was dropped
# Typesetting marks nobody reads (soft hyphen, zero-width space, word joiner, BOM); ZWJ/ZWNJ stay: scripts need them.
_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\u2060\ufeff"))


def build_script(
    source: Path | str | bytes,
    *,
    kind: str | None = None,
    max_chunk_chars: int = DEFAULT_CHUNK_CHARS,
    voices: Collection[str] = frozenset(),
    dictionary: Dictionary | None = None,
    normalize: bool = True,
    read_code: bool = False,
    language: str | None = None,
) -> Script:
    """Read ``source`` (a file path, decoded text, or raw bytes from standard input) into a ``Script``.

    ``kind`` is "text", "markdown" or "epub" (default: from the file's suffix, else text). ``voices``
    are the names ``[voice: NAME]`` may use. ``normalize`` writes numbers, money, units, dates and
    times out as words; ``read_code`` reads Markdown code blocks instead of skipping them. ``language``
    defaults to the one the source declares (EPUB metadata, Markdown front matter), else English.
    Raises ``BadInputError`` (one line, with line and column for markup) before anything is generated.
    """
    document = read_source(source, kind, read_code=read_code)
    language = language or document.metadata.get("language") or document.metadata.get("lang") or "en"
    builder = _Builder(max_chunk_chars, voices, dictionary, normalize, language, document.lines)
    chapters = []
    for chapter in document.chapters:
        paragraphs = tuple(p for p in map(builder.paragraph, chapter.blocks) if p.items)
        if any(p.chunks for p in paragraphs):
            chapters.append(Chapter(chapter.title or f"Chapter {len(chapters) + 1}", paragraphs))
    if not chapters:
        raise BadInputError("The source has no words to read once markup is removed: give it some text.")
    return _script(document, tuple(chapters), language)


def _script(document: Document, chapters: tuple[Chapter, ...], language: str) -> Script:
    metadata = {k: v for k, v in document.metadata.items() if k not in ("language", "lang")}
    return Script(chapters, title=document.title, author=document.author, language=language, metadata=metadata)


class _Builder:
    def __init__(self, max_chars: int, voices: Collection[str], dictionary: Dictionary | None, normalize: bool,
                 language: str, source_lines: list[str]) -> None:
        self.max_chars, self.voices, self.language = max_chars, voices, language
        self.dictionary, self.normalize, self.source_lines = dictionary, normalize, source_lines

    def paragraph(self, block: Block) -> Paragraph:
        position = markup.Position(block.text, block.line, block.column, self.source_lines)
        if block.markup:
            pieces = markup.parse(block.text, position, self.voices)
        else:
            pieces = [markup.Text(block.text if block.literal else markup.drop_citations(block.text), None, 0)]
        items: list[Chunk | Pause] = []
        for piece in pieces:
            if isinstance(piece, markup.PauseMark):
                items.append(Pause(piece.seconds, SourceSpan(*position.of(piece.offset))))
            else:
                items.extend(self._chunks(piece, position))
        return Paragraph(tuple(items), SourceSpan(block.line, block.column))

    def _chunks(self, piece: markup.Text, position: markup.Position) -> list[Chunk]:
        spoken: list[tuple[str, int]] = []
        for sentence, offset in sentence_spans(piece.text, self.language):
            said = self.speakable(sentence)
            if any(ch.isalnum() for ch in said):
                spoken.append((said, piece.offset + offset))
        chunks = []
        for group in pack_indexed((s for s, _ in spoken), self.max_chars):
            sentences = tuple(text for _, text in group)
            span = SourceSpan(*position.of(spoken[group[0][0]][1]))
            chunks.append(Chunk(" ".join(sentences), sentences, piece.voice, span))
        return chunks

    def speakable(self, sentence: str) -> str:
        """What the model is given for one sentence: respelled, normalised, single-spaced."""
        if self.dictionary:
            sentence = self.dictionary.apply(sentence)
        if self.normalize:
            sentence = normalize_for_speech(sentence, self.language)
        return _SPACE_BEFORE_MARK.sub(r"\1", " ".join(sentence.translate(_INVISIBLE).split()))
