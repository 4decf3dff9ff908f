"""Exporting the window's narration through the narration package: master, encode, subtitles.

The window holds its takes in memory, so it hands the exporter one block of audio and the chunk cues
it laid out; the mastering presets, formats and subtitle writers are ``inference.narration``'s, the
same the ``narrate`` command uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inference.narration import export, mastering
from inference.narration.assembly import Cue
from inference.narration.mastering import MasterReport, Mode
from inference.output import check_output

FORMATS = tuple(f.upper() for f in export.FORMATS)  # as the dialog lists them
PRESETS = tuple(Mode)


@dataclass(frozen=True)
class ExportRequest:
    path: Path
    format: str  # one of FORMATS
    master: Mode = Mode.PODCAST
    subtitles: bool = False  # an .srt beside the audio
    title: str = ""
    author: str = ""


def export_narration(request: ExportRequest, audio: np.ndarray, rate: int,
                     cues: Sequence[Cue]) -> tuple[Path, MasterReport]:
    """Write the audio (and its subtitles); nothing is written if a target is unusable. Returns the audio
    file (its extension the format's) and what mastering did."""
    target = check_output(request.path.with_suffix(f".{request.format.lower()}"), export.FORMATS)
    subtitles = check_output(target.with_suffix(".srt"), ("srt",)) if request.subtitles else None
    report = MasterReport(request.master, mastering.measure([audio], rate))
    export.write_audio(target, mastering.apply(request.master, [audio], rate, report), rate, None,
                       export.BookInfo(request.title, request.author))
    if subtitles is not None:
        export.write_text(subtitles, export.srt(cues))
    return target, report
