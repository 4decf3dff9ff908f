"""The runner: fills a project's missing chunk files through the worker, a chapter at a time.

Each job sent to the worker is one chapter's run of consecutive missing chunks in one voice, with the
chunking and the per-chunk seeds pinned (``SpeakJob.chunks``/``seeds``), so the worker decodes them in
micro-batches while every chunk's audio depends only on its own key. A chunk's file is written the
moment its audio arrives; killing the process at any point loses at most the chunks in flight, and
the next run generates only what has no file yet.

Events are pushed, not pulled, so one ``WorkerClient`` can serve a runner and everything else its
owner does (the GUI's ``WorkerBridge`` owns one client built with ``on_event=``):

- the runner is given a ``JobClient`` (anything with ``submit(job) -> job_id`` and ``cancel(job_id)``,
  such as a started ``WorkerClient``);
- the client's owner calls ``runner.handle(event)`` for every event, from any thread (the client's
  reader thread is fine: it only queues); the runner keeps its own jobs' events and ignores the rest;
- ``runner.run(...)`` blocks until the book's chunks are written, so the GUI calls it on a worker
  thread (never the Qt thread); ``on_progress`` receives a ``Progress`` after every chunk, on that
  thread;
- ``cancel()`` (from any thread) stops the running job within one micro-batch and ``run`` raises
  ``NarrationCancelled``; an owner shutting its client down mid-run calls ``cancel()`` first.

The CLI does the same with a ``Relay`` as its client's ``on_event``: it hands events to the runner it
serves.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Protocol

import soundfile as sf

from inference.errors import VesperError
from inference.narration.project import PlannedChunk, Project
from inference.worker.client import WorkerError
from inference.worker.protocol import (
    ChunkReady,
    Event,
    JobCancelled,
    JobFailed,
    JobFinished,
    Notice,
    PlanChanged,
    SpeakJob,
    WorkerRestarted,
)


class JobClient(Protocol):
    """What the runner needs of a worker client (``WorkerClient`` is one): its events come through ``handle``."""

    def submit(self, job: SpeakJob) -> str: ...

    def cancel(self, job_id: str) -> None: ...


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
    """Generates a project's missing chunks with ``client``'s worker; its events arrive through ``handle``."""

    def __init__(self, client: JobClient, on_progress: Callable[[Progress], None] | None = None) -> None:
        self.client = client
        self.on_progress = on_progress or (lambda _: None)
        self._cancelled = threading.Event()
        self._listening = threading.Event()
        self._inbox: queue.Queue[Event | None] = queue.Queue()  # None: woken by cancel()
        self._job_id: str | None = None
        self._items: list[PlannedChunk] = []  # the running job's chunks, by the job's chunk index
        self._lock = threading.Lock()

    def handle(self, event: Event) -> None:
        """Give the runner one of the client's events (any thread; events of other jobs are ignored)."""
        if self._listening.is_set():
            self._inbox.put(event)

    def chunk_of(self, job_id: str, index: int) -> PlannedChunk | None:
        """The book's chunk that the running job ``job_id`` generates as its chunk ``index`` (None: another
        job, or it ended): a live player places a piece of audio by it."""
        with self._lock:
            return self._items[index] if job_id == self._job_id and 0 <= index < len(self._items) else None

    def cancel(self) -> None:
        """Stop the run: the running job ends within one micro-batch, no further job starts."""
        self._cancelled.set()
        with self._lock:
            if self._job_id is not None:
                self.client.cancel(self._job_id)
        self._inbox.put(None)

    def run(self, project: Project, planned: Sequence[PlannedChunk], model: str,
            hardware: str | None = None) -> RunResult:
        """Generate every chunk of ``planned`` that has no file in ``project`` yet (a cancelled runner
        stays cancelled, so a Stop pressed before the run began still stops it: make a new one to go on)."""
        self._inbox = queue.Queue()
        self._listening.set()
        try:
            return self._run(project, planned, model, hardware)
        finally:
            self._listening.clear()

    def _run(self, project: Project, planned: Sequence[PlannedChunk], model: str, hardware: str | None) -> RunResult:
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
            self._items = items
        if self._cancelled.is_set():
            self.client.cancel(job_id)
        rate, ended = 0, False
        try:
            while (event := self._inbox.get()) is not None:  # None: cancel() woke the run
                if event.job_id != job_id:
                    continue
                if isinstance(event, ChunkReady):
                    item = items[event.index]
                    project.write_chunk(item, event.audio, event.sample_rate)
                    rate = event.sample_rate
                    state.chunk(len(event.audio) / event.sample_rate)
                    self.on_progress(state.progress())
                elif isinstance(event, (Notice, PlanChanged, WorkerRestarted)):  # all carry a readable message
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
                self._job_id, self._items = None, []
            if not ended:  # cancelled, or writing a chunk failed (disk full): the worker need not finish
                self.client.cancel(job_id)
        raise NarrationCancelled


class Relay:
    """An ``on_event`` for a ``WorkerClient`` whose runners take turns (the CLI, a batch of books):
    each event goes to the runner it serves now."""

    def __init__(self) -> None:
        self._runner: Runner | None = None

    def serve(self, runner: Runner) -> Runner:
        self._runner = runner
        return runner

    def __call__(self, event: Event) -> None:
        if (runner := self._runner) is not None:
            runner.handle(event)


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
            return project.sample_rate(item)
    return 0
