"""Splitting text for ``say`` into chunks a model can speak in one go.

Models degrade on long inputs and their KV cache grows with every frame, so long text is cut into
chunks of at most ``max_chars``: whole sentences (found by the same segmenter narration uses, in
``inference.narration.sentences``), a sentence over the limit at clauses, then at spaces.
"""

from __future__ import annotations

from inference.defaults import DEFAULT_CHUNK_CHARS
from inference.errors import BadInputError
from inference.narration.sentences import pack, split_sentences


def normalize(text: str) -> str:
    """Collapse whitespace; reject text with nothing to say."""
    cleaned = " ".join(text.split())
    if not any(ch.isalnum() for ch in cleaned):
        raise BadInputError("The text is empty: give at least one word to say.")
    return cleaned


def chunk_text(text: str, max_chars: int = DEFAULT_CHUNK_CHARS) -> list[str]:
    """Cut text into chunks of at most ``max_chars``, preferring sentence then clause boundaries."""
    return [" ".join(group) for group in pack(split_sentences(normalize(text)), max_chars)]
