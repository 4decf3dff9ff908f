"""Writing a finished narration to a file, until ``inference.narration``'s exporter lands on main.

FLAC, WAV and OGG (Vorbis) go through libsndfile (soundfile); M4B and MP3, mastering presets and
subtitles need the narration exporter (PyAV), and the dialog says so instead of offering them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from inference.output import atomic_output, check_output

FORMATS = ("M4B", "MP3", "FLAC", "OGG", "WAV")  # as the dialog lists them
WRITABLE = {"FLAC": ("FLAC", "PCM_24"), "WAV": ("WAV", "PCM_16"), "OGG": ("OGG", "VORBIS")}


@dataclass(frozen=True)
class ExportRequest:
    path: Path
    format: str
    title: str = ""
    author: str = ""


def can_write(fmt: str) -> bool:
    return fmt in WRITABLE


def export(request: ExportRequest, audio: np.ndarray, rate: int) -> Path:
    """Write ``audio`` as ``request.format`` with its title and author; the file appears only when complete."""
    container, subtype = WRITABLE[request.format]
    target = check_output(request.path, [request.format.lower()])
    with atomic_output(target) as partial, sf.SoundFile(partial, "w", rate, 1, subtype, format=container) as out:
        if request.title:
            out.title = request.title
        if request.author:
            out.artist = request.author
        out.write(np.clip(audio, -1.0, 1.0))
    return target
