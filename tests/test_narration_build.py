"""build_script as a whole: limits, speed, what a chunk holds, and that narration never imports torch."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from inference.narration.build import build_script

REPO = Path(__file__).resolve().parent.parent


def test_narration_package_never_imports_torch():
    code = ("import sys, inference.narration.build, inference.narration.sources, inference.narration.dictionary; "
            "import inference.text, ebooklib.epub, markdown_it, sentencex, num2words; "
            "s = inference.narration.build.build_script('# T\\n\\nIt costs $3 [pause 1s] now.', kind='markdown'); "
            "print([m for m in ('torch', 'transformers') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("limit", [40, 120, 300])
def test_every_chunk_is_within_the_limit_and_is_its_sentences_joined(limit):
    text = "\n\n".join(
        f"Paragraph {i} starts here, and it goes on for a while; it has clauses: many of them. "
        f"Then a second sentence with {i * 7} things in it! Is there a third? Yes." for i in range(50))
    script = build_script(text, max_chunk_chars=limit)
    assert all(len(c.text) <= limit for c in script.chunks)
    assert all(c.text == " ".join(c.sentences) for c in script.chunks)


def test_chunks_know_the_line_they_start_on():
    script = build_script("One.\n\nTwo two.\nThree three.", max_chunk_chars=20)
    assert [(c.text, c.span.line) for c in script.chunks] == [("One.", 1), ("Two two.", 3), ("Three three.", 4)]


def test_five_megabytes_build_quickly():
    paragraph = ("The rain had not stopped since morning, and Dr. Hale watched it from the window. "
                 "She counted 12 carriages pass before noon. Nobody came to the door... "
                 "\"Will it ever end?\" she asked the empty room. ")
    text = "\n\n".join([paragraph] * (5_000_000 // len(paragraph)))
    assert len(text) >= 4_900_000
    start = time.perf_counter()
    script = build_script(text, max_chunk_chars=300)
    elapsed = time.perf_counter() - start
    assert elapsed < 30, f"{elapsed:.1f} s for 5 MB"
    assert all(len(c.text) <= 300 for c in script.chunks)
    assert len(script.chunks) >= 5_000_000 // len(paragraph)


def test_two_hundred_kilobytes_without_punctuation_build_quickly():
    text = " ".join(f"word{i % 89}" for i in range(30_000))
    start = time.perf_counter()
    script = build_script(text, max_chunk_chars=300, normalize=False)
    assert time.perf_counter() - start < 3
    assert all(len(c.text) <= 300 for c in script.chunks)
    assert " ".join(c.text for c in script.chunks).split() == text.split()


def test_language_comes_from_the_source_unless_given():
    text = "---\nlanguage: es\n---\nTengo 12 gatos.\n"
    assert build_script(text, kind="markdown").chunks[0].text == "Tengo doce gatos."
    assert build_script(text, kind="markdown").language == "es"
    assert build_script(text, kind="markdown", language="en").chunks[0].text == "Tengo twelve gatos."


def test_invisible_typesetting_marks_are_not_given_to_the_model():
    assert build_script("Ex\u00adtra\u200bordinary\u2060 words.").chunks[0].text == "Extraordinary words."
