"""Sentences, and packing them into chunks a model speaks in one go.

Sentence ends come from sentencex, the most accurate of the maintained segmenters on our own table of
hard cases (abbreviations, decimals, ellipses, dialogue, URLs, CJK, Spanish, Hindi) and by far the
fastest; the comparison and its command are in docs/measurements.md. A chunk is whole sentences up to
the character limit; a sentence over the limit is cut at clause breaks, then at spaces, then hard.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

_CLAUSE_BREAK = re.compile(r"(?<=[,;:—–、，；：])\s*")
_UNSPACED_END = re.compile(r"[\u3000-\u30ff\u3400-\u9fff\uff00-\uffef]$")  # CJK: clauses join without a space
MIN_CHUNK_CHARS = 20


def split_sentences(text: str, language: str = "en") -> list[str]:
    """The sentences of ``text`` with surrounding whitespace stripped, empty ones dropped."""
    return [s for s, _ in sentence_spans(text, language)]


def sentence_spans(text: str, language: str = "en") -> Iterator[tuple[str, int]]:
    """(sentence, offset of its first character in ``text``) for each non-empty sentence."""
    from sentencex import segment

    offset = 0
    for raw in segment(language.split("-")[0].lower() or "en", text):
        stripped = raw.strip()
        if stripped:
            yield stripped, offset + (len(raw) - len(raw.lstrip()))
        offset += len(raw)


def pack(sentences: Iterable[str], max_chars: int) -> list[tuple[str, ...]]:
    """Group sentences into chunks whose text (sentences joined by spaces) is at most ``max_chars``.

    Sentences stay whole and in order; one longer than ``max_chars`` becomes several pieces (clauses,
    then words), each counted as a sentence of its chunk.
    """
    return [tuple(piece for _, piece in chunk) for chunk in pack_indexed(sentences, max_chars)]


def pack_indexed(sentences: Iterable[str], max_chars: int) -> list[list[tuple[int, str]]]:
    """``pack``, with each piece tagged by the index of the sentence it comes from."""
    if max_chars < MIN_CHUNK_CHARS:
        raise ValueError(f"max_chars must be at least {MIN_CHUNK_CHARS}")
    chunks: list[list[tuple[int, str]]] = []
    current: list[tuple[int, str]] = []
    length = 0
    for index, sentence in enumerate(sentences):
        for piece in [sentence] if len(sentence) <= max_chars else split_long(sentence, max_chars):
            if current and length + 1 + len(piece) > max_chars:
                chunks.append(current)
                current, length = [], 0
            length += len(piece) + (1 if current else 0)
            current.append((index, piece))
    if current:
        chunks.append(current)
    return chunks


def split_long(sentence: str, max_chars: int) -> list[str]:
    """A sentence over ``max_chars`` as pieces within it: clauses packed together, else words."""
    pieces: list[str] = []
    for clause in (c for c in _CLAUSE_BREAK.split(sentence) if c):
        parts = [clause] if len(clause) <= max_chars else _split_words(clause, max_chars)
        for part in parts:
            joiner = "" if pieces and _UNSPACED_END.search(pieces[-1]) else " "
            if pieces and len(pieces[-1]) + len(joiner) + len(part) <= max_chars:
                pieces[-1] = f"{pieces[-1]}{joiner}{part}"
            else:
                pieces.append(part)
    return pieces


def _split_words(text: str, max_chars: int) -> list[str]:
    """Words packed up to ``max_chars``; a word longer than that (a URL, unspaced CJK) is cut hard."""
    out: list[str] = []
    current: list[str] = []
    length = 0
    for word in text.split():
        while len(word) > max_chars:
            if current:
                out.append(" ".join(current))
                current, length = [], 0
            out.append(word[:max_chars])
            word = word[max_chars:]
        if current and length + 1 + len(word) > max_chars:
            out.append(" ".join(current))
            current, length = [], 0
        length += len(word) + (1 if current else 0)
        current.append(word)
    return out + ([" ".join(current)] if current else [])
