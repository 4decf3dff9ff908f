"""Chunking narration text."""

from __future__ import annotations

import pytest

from inference.errors import BadInputError
from inference.text import chunk_text


@pytest.mark.parametrize("text", ["", "   \n\t ", "... !?"])
def test_empty_text_is_rejected(text):
    with pytest.raises(BadInputError, match="empty"):
        chunk_text(text)


def test_short_text_is_one_chunk():
    assert chunk_text("  Hello   there.\nHow are you? ") == ["Hello there. How are you?"]


def test_chunks_respect_the_limit_and_keep_every_word():
    text = " ".join(f"Sentence number {i} is here, with a clause; and another one." for i in range(40))
    chunks = chunk_text(text, max_chars=120)
    assert all(len(c) <= 120 for c in chunks)
    assert " ".join(chunks).split() == text.split()


def test_cuts_at_sentence_ends_when_possible():
    chunks = chunk_text("One two three. Four five six. Seven eight nine.", max_chars=25)
    assert chunks == ["One two three.", "Four five six.", "Seven eight nine."]


def test_overlong_word_is_cut_hard():
    chunks = chunk_text("see " + "x" * 50 + " end", max_chars=20)
    assert all(len(c) <= 20 for c in chunks)
    assert "".join(chunks).replace(" ", "") == "see" + "x" * 50 + "end"
