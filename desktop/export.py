"""Exporting the window's narration: the project's chunks through the narration's own renderer.

``inference.narration.book.render`` is what ``vesper narrate`` writes its book with: the assembly
(trims, fades, sentence, paragraph and chapter pauses), mastering, the encoder with chapter marks, and
subtitles from the assembly's cues. The window only checks the targets the dialog named and hands it
the narration's assembly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from inference.errors import BadInputError
from inference.narration import book, export
from inference.narration.assembly import Assembly
from inference.narration.mastering import MasterReport, Mode
from inference.narration.script import Script
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


def ready(assembly: Assembly | None) -> Assembly:
    """The narration's assembly, or the one line that says why there is nothing to export yet."""
    if assembly is None:
        raise BadInputError("Narrate every chunk before exporting: some have no audio yet.")
    return assembly


def export_narration(request: ExportRequest, assembly: Assembly, script: Script) -> tuple[Path, MasterReport]:
    """Write the narration (and its subtitles); nothing is written if a target is unusable. Returns the
    audio file (its extension the format's) and what mastering did."""
    target = check_output(request.path.with_suffix(f".{request.format.lower()}"), export.FORMATS)
    subtitles = check_output(target.with_suffix(".srt"), ("srt",)) if request.subtitles else None
    outputs = book.Outputs(target, subtitles, None, request.master, export.BookInfo(request.title, request.author))
    report, _ = book.render(assembly, script, outputs)
    return target, report
