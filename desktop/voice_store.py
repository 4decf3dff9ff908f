"""The narrow view of the voice library the recorder and library widgets need (list, add, rename, remove).

``inference.voice_library.VoiceLibrary`` implements it (folders under ``inference.paths.voices_dir()``,
shared with ``vesper voices``); the widgets depend only on these four calls.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class Voice(Protocol):
    name: str
    recording: Path
    transcript: str | None


class VoiceStore(Protocol):
    """Errors are ``VesperError``s whose message says what to do (a name taken, an unusable name)."""

    def list(self) -> list[Voice]: ...

    def add(self, name: str, recording: Path, transcript: str | None = None) -> Voice: ...

    def rename(self, old: str, new: str) -> Voice: ...

    def remove(self, name: str) -> None: ...
