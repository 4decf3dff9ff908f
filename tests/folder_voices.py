"""A voice library over ``inference.paths.voices_dir()`` (NAME.wav + NAME.txt) for the desktop widget tests.

It stands in until the inference layer's voice library module is on main; the widgets see only the
``desktop.voice_store.VoiceStore`` protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inference import paths
from inference.audio import write_wav


@dataclass(frozen=True)
class FolderVoice:
    name: str
    audio_path: Path
    transcript: str | None


class FolderVoices:
    def __init__(self) -> None:
        self.root = paths.voices_dir()

    def list(self) -> list[FolderVoice]:
        return [self._voice(p.stem) for p in sorted(self.root.glob("*.wav"))]

    def add(self, name: str, audio: np.ndarray, rate: int, transcript: str | None = None) -> FolderVoice:
        write_wav(self.root / f"{name}.wav", audio, rate)
        if transcript:
            (self.root / f"{name}.txt").write_text(transcript)
        return self._voice(name)

    def rename(self, old: str, new: str) -> FolderVoice:
        for suffix in (".wav", ".txt"):
            if (self.root / f"{old}{suffix}").exists():
                (self.root / f"{old}{suffix}").rename(self.root / f"{new}{suffix}")
        return self._voice(new)

    def remove(self, name: str) -> None:
        for suffix in (".wav", ".txt"):
            (self.root / f"{name}{suffix}").unlink(missing_ok=True)

    def _voice(self, name: str) -> FolderVoice:
        text = self.root / f"{name}.txt"
        return FolderVoice(name, self.root / f"{name}.wav", text.read_text() if text.exists() else None)
