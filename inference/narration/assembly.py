"""Assembly: a project's chunk files in book order, trimmed, faded and spaced, as a stream of audio blocks.

Chunks are read one file at a time and silence is produced in bounded blocks, so a 10-hour book never
sits in memory. Iterating ``Assembly.blocks()`` twice gives the same samples (mastering measures in a
first pass and applies in a second); the first full pass also records the ``Timeline``: where each
chunk and chapter starts in the assembled audio, which subtitles and chapter marks are made from.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from inference.narration.project import PlannedChunk, Project
from inference.narration.script import Pause, Script

SILENCE_BLOCK_SECONDS = 1.0
TRIM_FRAME_SECONDS = 0.01


@dataclass(frozen=True)
class AssemblySettings:
    """Pauses in seconds after a chunk ending a sentence, a paragraph or a chapter; trimming; room tone."""

    sentence_pause: float = 0.3
    paragraph_pause: float = 0.8
    chapter_pause: float = 2.0
    edge_silence: float = 0.5  # before the first chunk and after the last
    fade_seconds: float = 0.008  # ramps at every chunk edge: no clicks where a chunk starts or stops mid-wave
    trim_threshold_db: float = -50.0  # leading/trailing audio quieter than this (10 ms frames) is cut
    trim_margin_seconds: float = 0.02  # kept around the first/last loud frame
    room_tone_db: float | None = None  # RMS of the noise filling pauses; None: digital silence


@dataclass(frozen=True)
class Cue:
    """A stretch of speech (one chunk: its edges are sentence boundaries) and its text."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class ChapterMark:
    title: str
    start: float
    end: float


@dataclass
class Timeline:
    """Where things are in the assembled audio, in seconds; complete once ``blocks()`` was read to its end."""

    sample_rate: int
    cues: list[Cue] = field(default_factory=list)
    chapters: list[ChapterMark] = field(default_factory=list)
    total_samples: int = 0

    @property
    def seconds(self) -> float:
        return self.total_samples / self.sample_rate


@dataclass(frozen=True)
class _Speech:
    item: PlannedChunk


@dataclass(frozen=True)
class _Silence:
    seconds: float


@dataclass(frozen=True)
class _ChapterStart:
    title: str


def trim(audio: np.ndarray, rate: int, threshold_db: float, margin_seconds: float) -> np.ndarray:
    """``audio`` without its quiet start and end (energy per 10 ms frame); unchanged if nothing is loud."""
    frame = max(1, int(TRIM_FRAME_SECONDS * rate))
    count = len(audio) // frame
    if count == 0:
        return audio
    energy = np.square(audio[: count * frame].reshape(count, frame), dtype=np.float64).mean(axis=1)
    loud = np.flatnonzero(energy > 10 ** (threshold_db / 10))
    if len(loud) == 0:
        return audio
    margin = int(margin_seconds * rate)
    start = max(0, loud[0] * frame - margin)
    stop = min(len(audio), (loud[-1] + 1) * frame + margin)
    return audio[start:stop]


def fade(audio: np.ndarray, rate: int, seconds: float) -> np.ndarray:
    """Raised-cosine ramps in and out (a copy)."""
    length = min(int(seconds * rate), len(audio) // 2)
    out = np.array(audio, dtype=np.float32)
    if length > 0:
        ramp = (0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, length, dtype=np.float64))).astype(np.float32)
        out[:length] *= ramp
        out[-length:] *= ramp[::-1]
    return out


class Assembly:
    """The book's audio, streamed from ``project``'s chunk files in the order of ``script``."""

    def __init__(self, project: Project, script: Script, planned: Sequence[PlannedChunk], sample_rate: int,
                 settings: AssemblySettings | None = None) -> None:
        self.project = project
        self.sample_rate = sample_rate
        self.settings = settings or AssemblySettings()
        self.timeline = Timeline(sample_rate)
        self._sequence = list(_order(script, iter(planned), self.settings))

    def blocks(self) -> Iterator[np.ndarray]:
        """The assembled audio, mono float32, one chunk or at most a second of silence per block."""
        rate, settings = self.sample_rate, self.settings
        timeline = Timeline(rate)
        position = 0
        noise = np.random.default_rng(0)  # the same room tone on every pass
        for entry in self._sequence:
            if isinstance(entry, _ChapterStart):
                if timeline.chapters:
                    previous = timeline.chapters[-1]
                    timeline.chapters[-1] = ChapterMark(previous.title, previous.start, position / rate)
                timeline.chapters.append(ChapterMark(entry.title, 0.0 if not timeline.chapters else position / rate,
                                                     0.0))
                continue
            if isinstance(entry, _Silence):
                remaining = int(round(entry.seconds * rate))
                while remaining > 0:
                    length = min(remaining, int(SILENCE_BLOCK_SECONDS * rate))
                    yield self._silence(length, noise)
                    position += length
                    remaining -= length
                continue
            audio, chunk_rate = self.project.read_chunk(entry.item)
            if chunk_rate != rate:
                raise ValueError(f"chunk {entry.item.number} is at {chunk_rate} Hz, the book at {rate} Hz")
            speech = fade(trim(audio, rate, settings.trim_threshold_db, settings.trim_margin_seconds), rate,
                          settings.fade_seconds)
            timeline.cues.append(Cue(position / rate, (position + len(speech)) / rate, entry.item.chunk.text))
            yield speech
            position += len(speech)
        if timeline.chapters:
            last = timeline.chapters[-1]
            timeline.chapters[-1] = ChapterMark(last.title, last.start, position / rate)
        timeline.total_samples = position
        self.timeline = timeline

    def _silence(self, length: int, noise: np.random.Generator) -> np.ndarray:
        if self.settings.room_tone_db is None:
            return np.zeros(length, dtype=np.float32)
        level = 10 ** (self.settings.room_tone_db / 20)
        return (noise.standard_normal(length) * level).astype(np.float32)


def spacing(script: Script, settings: AssemblySettings) -> list[float]:
    """The silence before each chunk of ``script``, in book order, as the assembly lays it down: sentence,
    paragraph and chapter pauses and ``[pause]`` markup (the first chunk's is the edge silence). Live
    playback spaces chunks by it, so what is heard while generating is what the file will hold."""
    before, pending = [], 0.0
    for entry in _order(script, itertools.count(), settings):
        if isinstance(entry, _Silence):
            pending += entry.seconds
        elif isinstance(entry, _Speech):
            before.append(pending)
            pending = 0.0
    return before


def _order(script: Script, items: Iterator, settings: AssemblySettings) -> Iterator[_Speech | _Silence | _ChapterStart]:
    """Chapter starts, chunks (the next of ``items`` each) and the pauses between them, in book order."""
    pending = settings.edge_silence
    for chapter in script.chapters:
        yield _Silence(pending)
        pending = 0.0
        yield _ChapterStart(chapter.title)
        for p_index, paragraph in enumerate(chapter.paragraphs):
            for i_index, item in enumerate(paragraph.items):
                if isinstance(item, Pause):
                    pending += item.seconds
                    continue
                yield _Silence(pending)
                yield _Speech(next(items))
                last_in_paragraph = not any(not isinstance(i, Pause) for i in paragraph.items[i_index + 1:])
                last_in_chapter = last_in_paragraph and not any(p.chunks for p in
                                                                chapter.paragraphs[p_index + 1:])
                pending = (settings.chapter_pause if last_in_chapter else
                           settings.paragraph_pause if last_in_paragraph else settings.sentence_pause)
    yield _Silence(max(pending - settings.chapter_pause, 0.0) + settings.edge_silence)
