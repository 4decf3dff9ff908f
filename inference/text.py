"""Splitting narration text into chunks a model can speak in one go.

Models degrade on long inputs and their KV cache grows with every frame, so long text is cut at
sentence ends, then at clause breaks, then at spaces, into chunks of at most ``max_chars``.
"""

from __future__ import annotations

import re

from inference.errors import BadInputError

_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+")
_CLAUSE_BREAK = re.compile(r"(?<=[,;:—–])\s+")


def normalize(text: str) -> str:
    """Collapse whitespace; reject text with nothing to say."""
    cleaned = " ".join(text.split())
    if not any(ch.isalnum() for ch in cleaned):
        raise BadInputError("The text is empty: give at least one word to say.")
    return cleaned


def chunk_text(text: str, max_chars: int = 300) -> list[str]:
    """Cut text into chunks of at most ``max_chars``, preferring sentence then clause boundaries."""
    if max_chars < 20:
        raise ValueError("max_chars must be at least 20")
    chunks: list[str] = []
    current = ""
    for piece in _pieces(normalize(text), max_chars):
        if current and len(current) + 1 + len(piece) > max_chars:
            chunks.append(current)
            current = piece
        else:
            current = f"{current} {piece}" if current else piece
    if current:
        chunks.append(current)
    return chunks


def _pieces(text: str, max_chars: int) -> list[str]:
    """Sentences, with any sentence over ``max_chars`` broken at clauses, then at words."""
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        if len(sentence) <= max_chars:
            pieces.append(sentence)
            continue
        for clause in _CLAUSE_BREAK.split(sentence):
            pieces.extend([clause] if len(clause) <= max_chars else _split_words(clause, max_chars))
    return [p for p in pieces if p]


def _split_words(text: str, max_chars: int) -> list[str]:
    out, current = [], ""
    for word in text.split(" "):
        while len(word) > max_chars:  # a "word" longer than a chunk (a URL, say): hard cut
            out.extend([current] if current else [])
            out.append(word[:max_chars])
            word, current = word[max_chars:], ""
        if current and len(current) + 1 + len(word) > max_chars:
            out.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    return out + ([current] if current else [])
