"""Export: the mastered stream encoded to a file, chapter marks and tags, subtitles; all written atomically.

WAV and FLAC through soundfile (with a cue sheet beside them for the chapters), MP3, OGG/Opus and
M4B (AAC) through PyAV, which bundles FFmpeg: chapters go in with ``set_chapters``, title and author as
container tags, a cover through mutagen (PyAV cannot attach pictures). Every file is written under a
temporary name and renamed when complete (``inference.output.atomic_output``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import soundfile as sf

from inference.narration.assembly import ChapterMark, Cue
from inference.output import atomic_output

FORMATS = ("m4b", "mp3", "flac", "ogg", "opus", "wav")
SUBTITLE_FORMATS = ("srt", "vtt")
CHAPTER_TIME_BASE = Fraction(1, 1000)

# extension -> (PyAV container format, codec, sample rate it encodes at or None for the book's, bit rate)
_PYAV = {
    "m4b": ("ipod", "aac", None, 64_000),
    "mp3": ("mp3", "libmp3lame", None, 64_000),
    "ogg": ("ogg", "libopus", 48_000, 48_000),
    "opus": ("ogg", "libopus", 48_000, 48_000),
}


@dataclass(frozen=True)
class BookInfo:
    title: str = ""
    author: str = ""
    cover: Path | None = None  # a JPEG or PNG for M4B and MP3


def write_audio(target: Path, blocks: Iterable[np.ndarray], rate: int, chapters: Sequence[ChapterMark] | None,
                info: BookInfo) -> None:
    """Encode ``blocks`` (mono float32 at ``rate``) to ``target``, its format from its extension."""
    fmt = target.suffix.lower().lstrip(".")
    with atomic_output(target) as partial:
        if fmt in ("wav", "flac"):
            _write_soundfile(partial, fmt, blocks, rate, info)
        else:
            _write_pyav(partial, fmt, blocks, rate, chapters, info)
        if info.cover is not None and fmt in ("m4b", "mp3"):
            _add_cover(partial, fmt, info.cover)
    if fmt in ("wav", "flac") and chapters:
        write_text(target.with_suffix(".cue"), cue_sheet(target.name, fmt, chapters, info))


def _write_soundfile(path: Path, fmt: str, blocks: Iterable[np.ndarray], rate: int, info: BookInfo) -> None:
    with sf.SoundFile(path, "w", rate, 1, subtype="PCM_16", format=fmt.upper()) as out:
        if fmt == "flac":  # libsndfile writes these as Vorbis comments (and refuses empty ones)
            for name, value in (("title", info.title), ("artist", info.author)):
                if value:
                    setattr(out, name, value)
        for block in blocks:
            out.write(np.clip(block, -1.0, 1.0))


def _write_pyav(path: Path, fmt: str, blocks: Iterable[np.ndarray], rate: int,
                chapters: Sequence[ChapterMark] | None, info: BookInfo) -> None:
    container_format, codec, codec_rate, bit_rate = _PYAV[fmt]
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=codec_rate or rate, layout="mono")
        stream.bit_rate = bit_rate
        container.metadata.update({k: v for k, v in (("title", info.title), ("album", info.title),
                                                      ("artist", info.author)) if v})
        if chapters:  # before the header: MP3 writes them there (ID3 CHAP), MP4 at the end
            container.set_chapters([_chapter(i, mark) for i, mark in enumerate(chapters)])
        resampler = av.AudioResampler(format=stream.format.name, layout="mono", rate=codec_rate or rate)
        pts = 0
        for block in blocks:
            if len(block) == 0:
                continue
            frame = av.AudioFrame.from_ndarray(np.clip(block, -1.0, 1.0).reshape(1, -1).astype(np.float32),
                                               format="flt", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, pts, Fraction(1, rate)
            pts += len(block)
            for converted in resampler.resample(frame):
                container.mux(stream.encode(converted))
        for converted in resampler.resample(None):
            container.mux(stream.encode(converted))
        container.mux(stream.encode(None))


def _chapter(index: int, mark: ChapterMark) -> dict:
    scale = 1 / CHAPTER_TIME_BASE
    return {"id": index + 1, "start": int(round(mark.start * scale)), "end": int(round(mark.end * scale)),
            "time_base": CHAPTER_TIME_BASE, "metadata": {"title": mark.title or f"Chapter {index + 1}"}}


def _add_cover(path: Path, fmt: str, cover: Path) -> None:
    data = cover.read_bytes()
    png = data.startswith(b"\x89PNG")
    if fmt == "m4b":
        from mutagen.mp4 import MP4, MP4Cover

        tags = MP4(path)
        tags["covr"] = [MP4Cover(data, MP4Cover.FORMAT_PNG if png else MP4Cover.FORMAT_JPEG)]
        tags.save()
    else:
        from mutagen.id3 import APIC, ID3

        tags = ID3(path)
        tags.add(APIC(encoding=3, mime="image/png" if png else "image/jpeg", type=3, desc="Cover", data=data))
        tags.save(path)


def write_text(target: Path, text: str) -> None:
    with atomic_output(target) as partial:
        partial.write_text(text, encoding="utf-8")


def _clock(seconds: float, separator: str) -> str:
    millis = int(round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def srt(cues: Sequence[Cue]) -> str:
    return "".join(f"{i}\n{_clock(c.start, ',')} --> {_clock(c.end, ',')}\n{c.text}\n\n"
                   for i, c in enumerate(cues, 1))


def webvtt(cues: Sequence[Cue]) -> str:
    return "WEBVTT\n\n" + "".join(f"{i}\n{_clock(c.start, '.')} --> {_clock(c.end, '.')}\n{c.text}\n\n"
                                  for i, c in enumerate(cues, 1))


def cue_sheet(filename: str, fmt: str, chapters: Sequence[ChapterMark], info: BookInfo) -> str:
    """A CD-style cue sheet: one track per chapter (times in minutes:seconds:frames of 1/75 s)."""
    lines = [f'TITLE "{info.title}"'] if info.title else []
    lines += [f'PERFORMER "{info.author}"'] if info.author else []
    lines.append(f'FILE "{filename}" {"WAVE" if fmt == "wav" else "FLAC"}')
    for number, mark in enumerate(chapters, 1):
        frames = int(round(mark.start * 75))
        minutes, frames = divmod(frames, 60 * 75)
        seconds, frames = divmod(frames, 75)
        lines += [f"  TRACK {number:02d} AUDIO", f'    TITLE "{mark.title}"',
                  f"    INDEX 01 {minutes:02d}:{seconds:02d}:{frames:02d}"]
    return "\n".join(lines) + "\n"
