"""Scripts and projects for the narration tests, built from the data model directly."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from inference.narration.project import Generation, PlannedChunk, Project, model_revision
from inference.narration.script import Chapter, Chunk, Paragraph, Pause, Script
from inference.voice_library import Voice
from tests.conftest import SAMPLE_VOICE

NARRATOR = Voice("sample", SAMPLE_VOICE, None, "0123456789abcdef")


def chunk(text: str, voice: str | None = None) -> Chunk:
    return Chunk(text, (text,), voice)


def book(chapters: dict[str, list[list[str]]], title: str = "A Book", author: str = "An Author") -> Script:
    """``{chapter title: [[chunk text, ...] per paragraph]}``; ``"pause:S"`` items are pauses of S seconds."""
    def item(text: str) -> Chunk | Pause:
        return Pause(float(text[6:])) if text.startswith("pause:") else chunk(text)

    return Script(tuple(Chapter(name, tuple(Paragraph(tuple(item(t) for t in paragraph)) for paragraph in paragraphs))
                        for name, paragraphs in chapters.items()), title=title, author=author)


def synthetic_project(root: Path, script: Script, rate: int, seconds: float = 1.0,
                      level: float = 0.1) -> tuple[Project, list[PlannedChunk]]:
    """A project whose chunk files are written here, not generated: a tone burst padded with silence."""
    project = Project(root).open()
    planned = project.plan(script, {None: NARRATOR}, Generation("synthetic", model_revision("synthetic")))
    for item in planned:
        project.write_chunk(item, tone(rate, seconds, level, 200 + 10 * item.number), rate)
    return project, planned


def tone(rate: int, seconds: float, level: float, hz: float, pad: float = 0.2) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    body = (level * np.sin(2 * np.pi * hz * t)).astype(np.float32)
    silence = np.zeros(int(pad * rate), dtype=np.float32)
    return np.concatenate([silence, body, silence])
