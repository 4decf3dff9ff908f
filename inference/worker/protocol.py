"""The messages between the GUI/CLI and the worker process: plain picklable data, numpy at most.

The GUI imports this module, so it must never import torch (a test checks): audio travels as float32
numpy arrays, plans as their labels. Commands go to the worker, events come back; every event names
its job, so several jobs can be queued and a GUI can route events by job id.

A job's life: ``JobStarted`` (its chunks and plan), one ``ChunkReady`` per chunk in order, any number
of ``Notice``s, then exactly one of ``JobFinished``, ``JobFailed`` or ``JobCancelled``. After a worker
crash the job is resumed: a ``Notice`` and a second ``JobStarted`` (its ``start_chunk`` the first chunk
not yet delivered) follow, and chunk indices carry on where they stopped (none repeated or skipped).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from inference.defaults import DEFAULT_CHUNK_CHARS, DEFAULT_MODEL

CHUNK_GAP_SECONDS = 0.15  # the pause between sentences spoken as separate chunks


@dataclass(frozen=True)
class SpeakJob:
    """Say ``text`` in the voice of the ``voice`` recording."""

    text: str
    voice: Path
    voice_text: str | None = None
    model: str = DEFAULT_MODEL
    seed: int = 0
    hardware: str | None = None  # a preset name or JSON path; None measures this machine
    chunk_chars: int = DEFAULT_CHUNK_CHARS


@dataclass(frozen=True)
class WorkerSettings:
    """How the worker runs jobs; fixed for a worker's lifetime.

    ``max_batch`` chunks of a job are decoded together in one generate call (they share one decode
    loop and, under offload, one weight transfer per step). Groups are fixed by chunk index
    (0..N-1, N..2N-1, ...) so a resumed job reproduces the same audio. ``low_latency`` decodes one
    chunk at a time: the first audio comes sooner, the whole job finishes later.
    """

    max_batch: int = 4
    low_latency: bool = False
    voice_cache_size: int = 4  # encoded reference recordings kept per worker (LRU)

    @property
    def batch_size(self) -> int:
        return 1 if self.low_latency else max(1, self.max_batch)


# Commands: client -> worker.

@dataclass(frozen=True)
class Submit:
    """Run ``job`` from chunk ``start_chunk`` on; ``chunks`` pins the chunking when resuming."""

    job_id: str
    job: SpeakJob
    start_chunk: int = 0
    chunks: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Cancel:
    job_id: str


@dataclass(frozen=True)
class Shutdown:
    pass


Command = Submit | Cancel | Shutdown


# Events: worker -> client.

@dataclass(frozen=True)
class JobStarted:
    """The job is prepared and its model loaded; ``chunks`` is the full chunk list (also for progress)."""

    job_id: str
    chunks: tuple[str, ...]
    start_chunk: int
    plan: str  # a short label such as "resident on cuda:0, batch 4"
    reasons: tuple[str, ...]  # why the planner chose that plan
    sample_rate: int

    @property
    def total(self) -> int:
        return len(self.chunks)


@dataclass(frozen=True)
class ChunkPiece:
    """The next samples of chunk ``index`` while it is still being generated, so playback can start early.

    Only models on the fast decode path stream; ``ChunkReady`` always follows with the whole chunk and is
    what to keep. ``offset`` is where the piece starts within the chunk: a chunk that is retried (a lower
    plan after running out of memory, a restarted worker) streams again from offset 0.
    """

    job_id: str
    index: int
    offset: int
    audio: np.ndarray  # mono float32
    sample_rate: int


@dataclass(frozen=True)
class ChunkReady:
    job_id: str
    index: int
    total: int
    text: str
    audio: np.ndarray  # mono float32
    sample_rate: int


@dataclass(frozen=True)
class Notice:
    """Something the user should know that is not a failure: a lower plan, a restarted worker."""

    job_id: str
    message: str


@dataclass(frozen=True)
class MemoryStats:
    """The worker's memory for one job: peaks while it ran, and what stayed resident after cleanup.

    CUDA fields are 0 when the job did not touch CUDA.
    """

    rss_bytes: int
    peak_rss_bytes: int
    cuda_allocated_bytes: int = 0
    cuda_reserved_bytes: int = 0
    cuda_peak_allocated_bytes: int = 0
    cuda_peak_reserved_bytes: int = 0


@dataclass(frozen=True)
class JobFinished:
    job_id: str
    plan: str  # the plan the job ended on: lower than JobStarted's after an out-of-memory step-down
    memory: MemoryStats
    seconds: float


@dataclass(frozen=True)
class JobFailed:
    """``user_error``: the message says what the user can fix (bad input, unknown model)."""

    job_id: str
    message: str
    user_error: bool


@dataclass(frozen=True)
class JobCancelled:
    job_id: str


Event = JobStarted | ChunkPiece | ChunkReady | Notice | JobFinished | JobFailed | JobCancelled
TERMINAL_EVENTS = (JobFinished, JobFailed, JobCancelled)


class _Chunk(Protocol):
    index: int
    audio: np.ndarray
    sample_rate: int


def join(chunks: Iterable[_Chunk]) -> np.ndarray:
    """Concatenate chunk audio in order with a short pause between chunks."""
    ordered = sorted(chunks, key=lambda c: c.index)
    if not ordered:
        return np.zeros(0, dtype=np.float32)
    gap = np.zeros(int(CHUNK_GAP_SECONDS * ordered[0].sample_rate), dtype=np.float32)
    parts: list[np.ndarray] = []
    for chunk in ordered:
        parts.extend([gap, chunk.audio] if parts else [chunk.audio])
    return np.concatenate(parts).astype(np.float32, copy=False)
