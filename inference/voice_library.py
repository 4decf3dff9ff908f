"""The voice library: named reference recordings kept in the user's data folder (torch-free; the GUI uses it).

A voice is a folder under ``paths.voices_dir()`` holding the recording (FLAC or WAV, as given; other
formats are converted to FLAC), its transcript and ``voice.json`` with the recording's content hash.
Narration projects key their chunks by that hash, so re-recording a voice under the same name
regenerates what it spoke, and renaming it does not. Recordings are personal data: folders are
0700 and files 0600.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from inference import paths
from inference.audio import read_reference
from inference.errors import BadInputError

METADATA = "voice.json"
TRANSCRIPT = "transcript.txt"
KEPT_AS_IS = (".flac", ".wav")
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _-.")


class UnknownVoiceError(BadInputError):
    """No voice of that name in the library."""


@dataclass(frozen=True)
class Voice:
    """A voice to narrate with: a recording, what it says, and the hash that keys generated audio."""

    name: str
    recording: Path
    transcript: str | None
    content_hash: str


def voice_hash(recording: Path, transcript: str | None) -> str:
    """What generated audio depends on: the recording's bytes and its transcript."""
    digest = hashlib.sha256(recording.read_bytes())
    digest.update(b"\0" + (transcript or "").encode())
    return digest.hexdigest()[:16]


def voice_from_file(recording: Path, transcript: str | None = None) -> Voice:
    """A recording used directly (``--voice FILE``) rather than from the library."""
    read_reference(recording)  # unusable recordings fail now, with their own message
    return Voice(recording.stem, recording, transcript, voice_hash(recording, transcript))


class VoiceLibrary:
    """Add, list, look up, rename and remove voices in ``root`` (default: the user's voices folder)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or paths.voices_dir()

    def add(self, name: str, recording: Path, transcript: str | None = None) -> Voice:
        """Copy ``recording`` into the library as ``name``; a name already taken is refused."""
        _check_name(name)
        folder = self.root / name
        if folder.exists():
            raise BadInputError(f"A voice named '{name}' already exists: remove it first or choose another name.")
        audio, rate = read_reference(recording)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        staging = self.root / f".{name}.{os.getpid()}.partial"
        staging.mkdir(mode=0o700)
        try:
            suffix = recording.suffix.lower()
            target = staging / f"recording{suffix if suffix in KEPT_AS_IS else '.flac'}"
            if suffix in KEPT_AS_IS:
                shutil.copyfile(recording, target)
            else:
                sf.write(target, audio, rate, format="FLAC")
            if transcript:
                (staging / TRANSCRIPT).write_text(transcript.strip() + "\n", encoding="utf-8")
            metadata = {"name": name, "recording": target.name, "content_hash": voice_hash(target, transcript),
                        "seconds": round(len(audio) / rate, 2), "source": recording.name,
                        "added": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            (staging / METADATA).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
            for item in staging.iterdir():
                item.chmod(0o600)
            staging.rename(folder)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
        return self.get(name)

    def get(self, name: str) -> Voice:
        folder = self.root / name
        try:
            metadata = json.loads((folder / METADATA).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            known = ", ".join(v.name for v in self.list()) or "none yet"
            raise UnknownVoiceError(f"No voice named '{name}' in the library (voices: {known}); add one with "
                                    f"'vesper voices add {name} RECORDING'.") from None
        transcript_file = folder / TRANSCRIPT
        transcript = transcript_file.read_text(encoding="utf-8").strip() if transcript_file.exists() else None
        return Voice(name, folder / metadata["recording"], transcript, metadata["content_hash"])

    def list(self) -> list[Voice]:
        """Every voice, by name."""
        if not self.root.is_dir():
            return []
        names = sorted(p.name for p in self.root.iterdir() if (p / METADATA).is_file())
        return [self.get(name) for name in names]

    def remove(self, name: str) -> None:
        self.get(name)  # unknown names fail with the list of known ones
        shutil.rmtree(self.root / name)

    def rename(self, old: str, new: str) -> Voice:
        """Rename a voice; its content hash, and so every project's generated audio, stays valid."""
        self.get(old)
        _check_name(new)
        if (self.root / new).exists():
            raise BadInputError(f"A voice named '{new}' already exists: choose another name.")
        (self.root / old).rename(self.root / new)
        metadata_file = self.root / new / METADATA
        metadata = json.loads(metadata_file.read_text(encoding="utf-8"))
        metadata["name"] = new
        metadata_file.write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
        return self.get(new)

    def resolve(self, name_or_file: str, transcript: str | None = None) -> Voice:
        """``--voice``: a library name, else a recording file; ``transcript`` overrides the stored one."""
        if (self.root / name_or_file / METADATA).is_file():
            voice = self.get(name_or_file)
            if transcript is None:
                return voice
            return Voice(voice.name, voice.recording, transcript, voice_hash(voice.recording, transcript))
        path = Path(name_or_file).expanduser()
        if path.suffix and path.exists():
            return voice_from_file(path, transcript)
        if path.suffix:
            raise BadInputError(f"Reference recording {name_or_file} does not exist.")
        return self.get(name_or_file)  # raises UnknownVoiceError listing the library


def _check_name(name: str) -> None:
    if not name or name.startswith(".") or not set(name) <= _NAME_CHARS or len(name) > 64:
        raise BadInputError(f"'{name}' is not a usable voice name: use up to 64 letters, digits, spaces, "
                            "'-', '_' or '.', not starting with '.'.")
