"""The runner: fills a project's missing chunk files through the worker, a chapter at a time.

Each job sent to the worker is one chapter's run of consecutive missing chunks in one voice, with the
chunking and the per-chunk seeds pinned (``SpeakJob.chunks``/``seeds``), so the worker decodes them in
micro-batches while every chunk's audio depends only on its own key. A chunk's file is written the
moment its audio arrives; killing the process at any point loses at most the chunks in flight, and
the next run generates only what has no file yet.

The runner needs a started ``WorkerClient`` without ``on_event`` (it reads the client's event queue);
``on_progress`` receives a ``Progress`` after every chunk. ``cancel()`` (from any thread) stops the
running job within one micro-batch and the run raises ``NarrationCancelled``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import groupby

import soundfile as sf

from inference.errors import VesperError
from inference.narration.project import PlannedChunk, Project
from inference.worker.client import WorkerClient, WorkerError
from inference.worker.protocol import ChunkReady, JobCancelled, JobFailed, JobFinished, Notice, SpeakJob


class NarrationCancelled(Exception):
    """``Runner.cancel`` stopped the run; the chunks finished so far are kept."""


@dataclass(frozen=True)
class Progress:
    """Where a run stands; ``speed`` is audio seconds per second of generation (None before a measurement)."""

    chunks_done: int
    chunks_total: int
    generated: int
    reused: int
    audio_seconds: float
    elapsed_seconds: float
    speed: float | None
    eta_seconds: float | None


@dataclass(frozen=True)
class RunResult:
    chunks_total: int
    generated: int
    reused: int
    audio_seconds: float
    seconds: float
    sample_rate: int  # 0 when the book has no chunk
    plan: str = ""  # the plan the last job ran on ("" when every chunk was reused)
    notices: tuple[str, ...] = ()


class Runner:
    """Generates a project's missing chunks with ``client``'s worker."""

    def __init__(self, client: WorkerClient, on_progress: Callable[[Progress], None] | None = None) -> None:
        self.client = client
        self.on_progress = on_progress or (lambda _: None)
        self._cancelled = threading.Event()
        self._job_id: str | None = None
        self._lock = threading.Lock()

    def cancel(self) -> None:
        """Stop the run: the running job ends within one micro-batch, no further job starts."""
        self._cancelled.set()
        with self._lock:
            if self._job_id is not None:
                self.client.cancel(self._job_id)

    def run(self, project: Project, planned: Sequence[PlannedChunk], model: str,
            hardware: str | None = None) -> RunResult:
        """Generate every chunk of ``planned`` that has no file in ``project`` yet."""
        self._cancelled.clear()
        started = time.perf_counter()
        done = {p.key for p in planned if project.is_done(p)}
        todo = list({p.key: p for p in planned if p.key not in done}.values())  # a repeated chunk once
        rate = _rate_of(project, planned, done)
        state = _Tally(len(planned), len(planned) - len(todo),
                       sum(_seconds(project, p) for p in planned if p.key in done), started)
        self.on_progress(state.progress())
        notices: list[str] = []
        plans: list[str] = []
        for _, group in groupby(todo, key=lambda p: (p.chapter, p.voice.content_hash)):
            if self._cancelled.is_set():
                raise NarrationCancelled
            items = list(group)
            rate = self._generate(project, items, model, hardware, state, notices, plans) or rate
        return RunResult(len(planned), state.generated, state.reused, state.audio_seconds,
                         time.perf_counter() - started, rate, plans[-1] if plans else "", tuple(notices))

    def _generate(self, project: Project, items: list[PlannedChunk], model: str, hardware: str | None,
                  state: _Tally, notices: list[str], plans: list[str]) -> int:
        """One job: ``items`` (one chapter, one voice) through the worker; returns the sample rate."""
        voice = items[0].voice
        texts = tuple(p.chunk.text for p in items)
        job = SpeakJob(" ".join(texts), voice.recording, voice.transcript, model, hardware=hardware,
                       chunks=texts, seeds=tuple(p.seed for p in items))
        with self._lock:
            job_id = self._job_id = self.client.submit(job)
        if self._cancelled.is_set():
            self.client.cancel(job_id)
        rate, ended = 0, False
        try:
            for event in self.client.events():
                if event.job_id != job_id:
                    continue
                if isinstance(event, ChunkReady):
                    item = items[event.index]
                    project.write_chunk(item, event.audio, event.sample_rate)
                    rate = event.sample_rate
                    state.chunk(len(event.audio) / event.sample_rate)
                    self.on_progress(state.progress())
                elif isinstance(event, Notice):
                    notices.append(event.message)
                elif isinstance(event, JobFinished):
                    ended = True
                    plans.append(event.plan)
                    return rate
                elif isinstance(event, JobFailed):
                    ended = True
                    raise VesperError(event.message) if event.user_error else WorkerError(event.message)
                elif isinstance(event, JobCancelled):
                    ended = True
                    raise NarrationCancelled
        finally:
            with self._lock:
                self._job_id = None
            if not ended:  # writing a chunk failed (disk full): the worker need not finish the job
                self.client.cancel(job_id)
        raise WorkerError("The worker client was shut down before the narration finished.")


@dataclass
class _Tally:
    total: int
    reused: int
    audio_seconds: float
    started: float
    generated: int = 0
    generated_seconds: float = 0.0

    def chunk(self, seconds: float) -> None:
        self.generated += 1
        self.generated_seconds += seconds
        self.audio_seconds += seconds

    def progress(self) -> Progress:
        elapsed = time.perf_counter() - self.started
        done = self.generated + self.reused
        speed = self.generated_seconds / elapsed if self.generated and elapsed > 0 else None
        eta = elapsed / self.generated * (self.total - done) if self.generated else None
        return Progress(done, self.total, self.generated, self.reused, self.audio_seconds, elapsed, speed, eta)


def _seconds(project: Project, item: PlannedChunk) -> float:
    info = sf.info(project.path(item))
    return info.frames / info.samplerate


def _rate_of(project: Project, planned: Sequence[PlannedChunk], done: set[str]) -> int:
    for item in planned:
        if item.key in done:
            return sf.info(project.path(item)).samplerate
    return 0
