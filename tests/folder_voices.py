"""A voice library over ``inference.paths.voices_dir()`` (NAME/recording.wav + NAME/transcript.txt) for the
desktop widget tests, with the same calls as the inference layer's voice library.

It stands in until that module is on main; the widgets see only the ``desktop.voice_store.VoiceStore``
protocol.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from inference import paths
from inference.errors import BadInputError


@dataclass(frozen=True)
class FolderVoice:
    name: str
    recording: Path
    transcript: str | None


class FolderVoices:
    def __init__(self) -> None:
        self.root = paths.voices_dir()

    def list(self) -> list[FolderVoice]:
        return [self._voice(p.parent.name) for p in sorted(self.root.glob("*/recording.wav"))]

    def add(self, name: str, recording: Path, transcript: str | None = None) -> FolderVoice:
        folder = self.root / name
        if folder.exists():
            raise BadInputError(f"A voice named '{name}' already exists: remove it first or choose another name.")
        folder.mkdir(parents=True)
        shutil.copyfile(recording, folder / "recording.wav")
        if transcript:
            (folder / "transcript.txt").write_text(transcript)
        return self._voice(name)

    def rename(self, old: str, new: str) -> FolderVoice:
        (self.root / old).rename(self.root / new)
        return self._voice(new)

    def remove(self, name: str) -> None:
        shutil.rmtree(self.root / name)

    def _voice(self, name: str) -> FolderVoice:
        text = self.root / name / "transcript.txt"
        return FolderVoice(name, self.root / name / "recording.wav", text.read_text() if text.exists() else None)
