"""A narration in the window: paragraphs of chunks, each with its status and its takes.

The window generates every chunk as its own worker job (one chunk pinned per ``SpeakJob``), so a
chunk can be regenerated alone and routed by job id; this object maps jobs to chunks, keeps every
take a chunk has had and which one is chosen, and derives the progress line (chunks by status, audio
seconds, speed, time left) from the events alone. It knows nothing of Qt or of the worker process.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from inference.errors import BadInputError
from inference.narration.build import build_script
from inference.worker.protocol import CHUNK_GAP_SECONDS

TAKE_SEED_STRIDE = 7919  # a new take of a chunk uses seed + take * stride: far from its neighbours' seeds


class ChunkStatus(str, enum.Enum):
    PENDING = "pending"
    GENERATING = "generating"
    DONE = "done"
    FAILED = "failed"


@dataclass
class Take:
    audio: np.ndarray  # mono float32
    sample_rate: int
    seed: int


@dataclass
class ChunkRow:
    """One chunk of one paragraph; ``stale`` marks a chunk whose paragraph was edited since its take."""

    paragraph: int
    text: str
    seed: int
    status: ChunkStatus = ChunkStatus.PENDING
    takes: list[Take] = field(default_factory=list)
    chosen: int | None = None  # index into ``takes``
    stale: bool = False

    @property
    def audio(self) -> Take | None:
        return self.takes[self.chosen] if self.chosen is not None else None


def paragraphs_of(text: str, kind: str, chunk_chars: int) -> list[list[str]]:
    """The chunks to speak, by paragraph, as the narration package reads the text (markup, numbers and
    dates written out, sentences packed into chunks); nothing at all for a text with no words yet."""
    try:
        script = build_script(text, kind=kind, max_chunk_chars=chunk_chars)
    except BadInputError:
        return []
    return [[c.text for c in p.chunks] for chapter in script.chapters for p in chapter.paragraphs if p.chunks]


class NarrationProgress:
    """Chunk rows and the jobs generating them. ``clock`` is injectable so speed and ETA are testable."""

    def __init__(self, text: str, chunk_chars: int, base_seed: int = 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rows: list[ChunkRow] = []
        self.chunk_chars = chunk_chars
        self._base_seed = base_seed
        self._jobs: dict[str, tuple[int, int]] = {}  # job id -> (row index, seed of the take)
        self._clock = clock
        self._started_at: float | None = None
        self._generated_seconds = 0.0  # audio produced by the jobs of this run
        self.revise(text)

    # Jobs.

    def take_seed(self, row: int) -> int:
        """The seed of row ``row``'s next take: its own seed first, then one far from it per take."""
        return self.rows[row].seed + len(self.rows[row].takes) * TAKE_SEED_STRIDE

    def assign(self, job_id: str, row: int, seed: int) -> None:
        """``job_id`` generates a take of row ``row`` from ``seed``."""
        self._jobs[job_id] = (row, seed)
        self.rows[row].status = ChunkStatus.PENDING
        if self._started_at is None:
            self._started_at = self._clock()

    def row_of(self, job_id: str) -> int | None:
        entry = self._jobs.get(job_id)
        return entry[0] if entry is not None else None

    @property
    def active_jobs(self) -> list[str]:
        return list(self._jobs)

    def generating(self, job_id: str) -> int | None:
        """The job's first audio (or its start): its row is generating now."""
        row = self.row_of(job_id)
        if row is not None:
            self.rows[row].status = ChunkStatus.GENERATING
        return row

    def ready(self, job_id: str, audio: np.ndarray, sample_rate: int) -> int | None:
        """A finished take: kept, chosen, and the row is done."""
        if job_id not in self._jobs:
            return None
        row, seed = self._jobs[job_id]
        chunk = self.rows[row]
        chunk.takes.append(Take(audio, sample_rate, seed))
        chunk.chosen, chunk.status, chunk.stale = len(chunk.takes) - 1, ChunkStatus.DONE, False
        self._generated_seconds += len(audio) / sample_rate
        return row

    def ended(self, job_id: str, failed: bool = False) -> int | None:
        """The job is over (finished, failed or cancelled); an unfinished row goes back to pending or failed."""
        row, _ = self._jobs.pop(job_id, (None, 0))
        taken_over = any(other == row for other, _ in self._jobs.values())  # a newer job makes a take of it
        if row is not None and not taken_over and self.rows[row].status is not ChunkStatus.DONE:
            self.rows[row].status = ChunkStatus.FAILED if failed else (
                ChunkStatus.DONE if self.rows[row].takes else ChunkStatus.PENDING)
        if not self._jobs:
            self._started_at, self._generated_seconds = None, 0.0
        return row

    # Editing.

    def choose(self, row: int, take: int) -> None:
        if not 0 <= take < len(self.rows[row].takes):
            raise IndexError(f"chunk {row + 1} has no take {take + 1}")
        self.rows[row].chosen = take

    def revise(self, text: str, kind: str = "text") -> None:
        """Cut ``text`` into rows (``kind``: "text" or "markdown"). After an edit, paragraphs left as they
        were keep their chunks and takes; a changed paragraph is cut again, and its chunks are marked for
        regeneration if it had been narrated."""
        old: dict[int, list[ChunkRow]] = {}
        for row in self.rows:
            old.setdefault(row.paragraph, []).append(row)
        self.rows = []
        for number, chunks in enumerate(paragraphs_of(text, kind, self.chunk_chars)):
            before = old.get(number, [])
            if [r.text for r in before] == chunks:
                self.rows.extend(before)
                continue
            narrated = any(r.takes for r in before)
            for chunk in chunks:
                self.rows.append(ChunkRow(number, chunk, self._base_seed + len(self.rows), stale=narrated))

    # What the window shows.

    def to_generate(self) -> list[int]:
        """Rows that need a take: never generated (or edited since), or failed."""
        return [i for i, r in enumerate(self.rows) if not r.takes or r.status is ChunkStatus.FAILED]

    def counts(self) -> dict[ChunkStatus, int]:
        tally = dict.fromkeys(ChunkStatus, 0)
        for row in self.rows:
            tally[row.status] += 1
        return tally

    @property
    def audio_seconds(self) -> float:
        return sum(len(t.audio) / t.sample_rate for r in self.rows if (t := r.audio) is not None)

    @property
    def speed(self) -> float | None:
        """Audio seconds generated per wall-clock second since this run's first job (None before audio)."""
        if self._started_at is None or self._generated_seconds == 0:
            return None
        elapsed = self._clock() - self._started_at
        return self._generated_seconds / elapsed if elapsed > 0 else None

    @property
    def eta_seconds(self) -> float | None:
        """Time left for the queued jobs, assuming they speak as long per chunk as those done so far."""
        done = [len(t.audio) / t.sample_rate for r in self.rows if (t := r.audio) is not None]
        speed = self.speed
        if not done or not speed:
            return None
        return len(self._jobs) * (sum(done) / len(done)) / speed

    def summary(self) -> str:
        """One line for the progress label."""
        tally = self.counts()
        line = (f"{tally[ChunkStatus.DONE]}/{len(self.rows)} chunks done, "
                f"{tally[ChunkStatus.GENERATING]} generating, {tally[ChunkStatus.FAILED]} failed; "
                f"{self.audio_seconds:.1f} s of audio")
        if (speed := self.speed) is not None:
            line += f", {speed:.2f}x real time"
        if (eta := self.eta_seconds) is not None and self._jobs:
            line += f", about {eta:.0f} s left"
        return line

    def cues(self) -> list[tuple[float, float, str]]:
        """(start, end, text) of each chunk in ``assembled()``'s audio, in seconds."""
        spans, start = [], 0.0
        for row in self.rows:
            take = row.audio
            if take is None:
                return []
            end = start + len(take.audio) / take.sample_rate
            spans.append((start, end, row.text))
            start = end + int(CHUNK_GAP_SECONDS * take.sample_rate) / take.sample_rate
        return spans

    def assembled(self) -> tuple[np.ndarray, int] | None:
        """The chosen takes in order with the chunk pause between them (None until every chunk has one)."""
        takes = [r.audio for r in self.rows]
        if not takes or any(t is None for t in takes):
            return None
        rate = takes[0].sample_rate
        gap = np.zeros(int(CHUNK_GAP_SECONDS * rate), dtype=np.float32)
        parts: list[np.ndarray] = []
        for take in takes:
            parts.extend([gap, take.audio] if parts else [take.audio])
        return np.concatenate(parts).astype(np.float32, copy=False), rate
