"""The GUI's and the CLI's handle on the worker process: submit jobs, receive events, cancel, shut down.

This module never imports torch (a test checks): a GUI that imports it stays small and cannot be taken
down by a CUDA fault. Events arrive on a reader thread and are either handed to ``on_event`` (a GUI
forwards them to its own thread, e.g. through a Qt signal) or queued for ``events()`` / ``speak()``.

When the worker dies (segfault, kill -9, driver reset) the client starts a new one and resubmits every
unfinished job from its first chunk not yet delivered, with the same chunking, so the listener sees
each chunk exactly once. A job whose worker keeps dying without progress fails instead of looping.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import sys
import threading
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

import numpy as np

from inference import hardware as hw
from inference.audio import read_reference
from inference.errors import VesperError
from inference.text import normalize
from inference.text_input import clean_text
from inference.worker.protocol import (
    TERMINAL_EVENTS,
    Cancel,
    ChunkPiece,
    ChunkReady,
    Command,
    Event,
    JobCancelled,
    JobFailed,
    JobFinished,
    JobStarted,
    MemoryStats,
    Notice,
    Shutdown,
    SpeakJob,
    Submit,
    WorkerSettings,
    join,
)

MAX_RESTARTS_WITHOUT_PROGRESS = 3


class WorkerError(RuntimeError):
    """The worker failed in a way the user cannot fix (a bug, a worker that keeps crashing)."""


class JobCancelledError(Exception):
    """``speak`` was cancelled before the job finished."""


@dataclass
class JobResult:
    """Everything ``speak`` collected for one job."""

    job_id: str
    chunks: list[ChunkReady] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    plan: str = ""  # the plan the job finished on
    sample_rate: int = 0
    memory: MemoryStats | None = None
    seconds: float = 0.0

    def audio(self) -> np.ndarray:
        """The whole narration: chunks in order with a short pause between them."""
        return join(self.chunks)


@dataclass
class _Job:
    """The client's record of an unfinished job: enough to resume it in a new worker."""

    job: SpeakJob
    chunks: tuple[str, ...] | None = None  # pinned by the first JobStarted
    next_chunk: int = 0  # the first chunk not yet delivered
    cancel_requested: bool = False


class WorkerClient:
    """Runs jobs in a worker process.

    ``on_event(event)``, if given, receives every event on the client's reader thread; otherwise events
    queue up for ``events()`` (or ``speak()``). Use as a context manager, or call ``start``/``shutdown``.
    No method blocks on the worker: commands go out through a writer thread.
    """

    def __init__(self, settings: WorkerSettings | None = None,
                 on_event: Callable[[Event], None] | None = None) -> None:
        self.settings = settings or WorkerSettings()
        self.restarts = 0  # workers started to replace one that died
        self._on_event = on_event
        self._events: queue.Queue[Event | None] = queue.Queue()
        self._outbox: queue.Queue[tuple[Connection, Command] | None] = queue.Queue()
        self._jobs: dict[str, _Job] = {}  # unfinished jobs, in submission order
        self._lock = threading.RLock()
        self._context = mp.get_context("spawn")
        self._process: BaseProcess | None = None
        self._commands: Connection | None = None
        self._writer: threading.Thread | None = None
        self._closing = False
        self._crashes_without_progress = 0
        self._inject_faults = True  # only the first worker: an injected fault strikes once

    def __enter__(self) -> WorkerClient:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    @property
    def worker_pid(self) -> int | None:
        """The current worker's process id (it changes when a dead worker is replaced)."""
        process = self._process
        return process.pid if process is not None else None

    def start(self) -> WorkerClient:
        """Start the worker process; it loads a model only when a job needs it."""
        with self._lock:
            if self._writer is None:
                self._writer = threading.Thread(target=self._write, name="vesper-commands", daemon=True)
                self._writer.start()
            if self._process is None:
                self._spawn()
        return self

    def submit(self, job: SpeakJob, start_chunk: int = 0) -> str:
        """Queue a job and return its id; bad text, recordings or hardware specs raise ``VesperError`` now.

        ``start_chunk`` skips the chunks before it (a long narration resumed in a later session).
        """
        check_job(job)
        job_id = uuid.uuid4().hex[:12]
        with self._lock:
            if self._writer is None or self._closing:
                raise RuntimeError("WorkerClient.submit needs a started client (start() or a with block)")
            if self._process is None:
                self._spawn()  # the last worker died idle or gave up: start afresh
            self._jobs[job_id] = _Job(job, next_chunk=start_chunk)
            self._send(Submit(job_id, job, start_chunk))
        return job_id

    def cancel(self, job_id: str) -> None:
        """Stop a job within one chunk (one micro-batch); a queued job never starts. Ends in JobCancelled."""
        with self._lock:
            record = self._jobs.get(job_id)
            if record is None or record.cancel_requested:
                return
            record.cancel_requested = True
            self._send(Cancel(job_id))

    def events(self, timeout: float | None = None) -> Iterator[Event]:
        """Every event as it arrives, until shutdown; ``TimeoutError`` after ``timeout`` s of silence."""
        while True:
            try:
                event = self._events.get(timeout=timeout)
            except queue.Empty:
                raise TimeoutError(f"no event from the worker in {timeout} s") from None
            if event is None:
                return
            yield event

    def speak(self, job: SpeakJob, on_event: Callable[[Event], None] | None = None,
              timeout: float | None = None) -> JobResult:
        """Run one job to its end and return its audio; for callers that run one job at a time (the CLI).

        ``on_event`` sees the job's events as they arrive (progress); events of other jobs are dropped.
        Raises ``VesperError`` for what the user can fix, ``WorkerError`` otherwise, and
        ``JobCancelledError`` if the job was cancelled.
        """
        if self._on_event is not None:
            raise RuntimeError("speak() needs a client without on_event: it reads the event queue itself")
        result = JobResult(self.submit(job))
        for event in self.events(timeout):
            if event.job_id != result.job_id:
                continue
            if on_event is not None:
                on_event(event)
            if _collect(result, event):
                return result
        raise WorkerError("The worker client was shut down before the job finished.")

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop the worker (a running job is abandoned) and end ``events()``."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            process = self._process
            if process is not None:
                self._send(Shutdown())
            self._outbox.put(None)
        if process is not None:
            process.join(timeout)
            if process.is_alive():
                process.kill()
                process.join()
        if self._writer is not None:
            self._writer.join(timeout)
        self._events.put(None)

    # Worker lifecycle: the writer thread, one reader thread per worker, recovery.

    def _spawn(self) -> None:
        """Start a worker and its reader thread (called with the lock held)."""
        command_reader, command_writer = self._context.Pipe(duplex=False)
        event_reader, event_writer = self._context.Pipe(duplex=False)
        args = (command_reader, event_writer, self.settings, self._inject_faults)
        process = self._context.Process(target=_worker_main, args=args, name="vesper-worker", daemon=True)
        process.start()
        command_reader.close()  # only the worker holds these ends now: its death reads as EOF here
        event_writer.close()
        self._inject_faults = False
        self._process, self._commands = process, command_writer
        threading.Thread(target=self._read, args=(process, event_reader), name="vesper-worker-events",
                         daemon=True).start()

    def _write(self) -> None:
        while (item := self._outbox.get()) is not None:
            conn, command = item
            try:
                conn.send(command)
            except OSError:
                pass  # that worker died; recovery resubmits what is unfinished to the next one

    def _read(self, process: BaseProcess, events: Connection) -> None:
        """Deliver one worker's events until it exits, then replace it unless the client is closing."""
        while True:
            try:
                event = events.recv()
            except (EOFError, OSError):
                break  # the worker exited (or was killed) and closed its end
            except Exception:  # noqa: BLE001 - a half-written message from a killed worker
                traceback.print_exc(file=sys.stderr)
                break
            self._deliver(event)
        process.join()
        events.close()
        with self._lock:
            if not self._closing and process is self._process:
                self._recover(process)

    def _deliver(self, event: Event) -> None:
        with self._lock:
            record = self._jobs.get(event.job_id)
            if record is None:
                return  # a job that already ended here (cancelled while its worker was being replaced)
            if isinstance(event, JobStarted):
                record.chunks = record.chunks or event.chunks
            elif isinstance(event, ChunkPiece):
                if event.index < record.next_chunk:
                    return  # a chunk already delivered whole before a restart
            elif isinstance(event, ChunkReady):
                if event.index < record.next_chunk:
                    return  # delivered before a restart: never twice
                record.next_chunk = event.index + 1
                self._crashes_without_progress = 0
            elif isinstance(event, TERMINAL_EVENTS):
                del self._jobs[event.job_id]
                self._crashes_without_progress = 0
            self._dispatch(event)  # under the lock, so a resumed job's events cannot overtake these

    def _recover(self, process: BaseProcess) -> None:
        """The worker died (lock held): start another and resubmit unfinished jobs where they stopped."""
        self._process = self._commands = None  # the old pipe closes once the writer drops it
        for job_id, record in list(self._jobs.items()):
            if record.cancel_requested:
                del self._jobs[job_id]
                self._dispatch(JobCancelled(job_id))
        if not self._jobs:
            return  # nothing to resume: the next submit starts a worker
        self._crashes_without_progress += 1
        if self._crashes_without_progress > MAX_RESTARTS_WITHOUT_PROGRESS:
            self._fail_all(f"The inference worker stopped {self._crashes_without_progress} times without "
                           f"making progress (last exit code {process.exitcode}); see the log above.")
            self._crashes_without_progress = 0
            return
        self.restarts += 1
        self._spawn()
        for job_id, record in self._jobs.items():
            self._send(Submit(job_id, record.job, record.next_chunk, record.chunks))
            if record.chunks is not None:
                self._dispatch(Notice(job_id, f"The inference worker stopped (exit code {process.exitcode}) "
                                              f"and was restarted; resuming at chunk {record.next_chunk + 1} "
                                              f"of {len(record.chunks)}."))

    def _fail_all(self, message: str) -> None:
        for job_id in list(self._jobs):
            del self._jobs[job_id]
            self._dispatch(JobFailed(job_id, message, user_error=False))

    def _send(self, command: Command) -> None:
        assert self._commands is not None
        self._outbox.put((self._commands, command))

    def _dispatch(self, event: Event) -> None:
        if self._on_event is None:
            self._events.put(event)
            return
        try:
            self._on_event(event)
        except Exception:  # noqa: BLE001 - a listener's bug must not stop event delivery
            traceback.print_exc(file=sys.stderr)


def _worker_main(commands: Connection, events: Connection, settings: WorkerSettings,
                 inject_faults: bool) -> None:
    """The spawned process's target; it lives here so pickling it does not import torch in the client."""
    from inference.worker.process import main

    main(commands, events, settings, inject_faults)


def check_job(job: SpeakJob) -> None:
    """The checks that need no model (text, recording, hardware spec): bad input fails at once, before
    anything is queued. The worker repeats them with the rest of the preparation."""
    normalize(clean_text(job.text))
    read_reference(job.voice)
    if job.hardware is not None:
        hw.resolve(job.hardware)


def _collect(result: JobResult, event: Event) -> bool:
    """Add one event to ``result``; True when the job has ended (raises if it did not finish)."""
    if isinstance(event, JobStarted):
        result.plan, result.sample_rate = event.plan, event.sample_rate
    elif isinstance(event, ChunkReady):
        result.chunks.append(event)
    elif isinstance(event, Notice):
        result.notices.append(event.message)
    elif isinstance(event, JobFinished):
        result.plan, result.memory, result.seconds = event.plan, event.memory, event.seconds
        return True
    elif isinstance(event, JobFailed):
        raise VesperError(event.message) if event.user_error else WorkerError(event.message)
    elif isinstance(event, JobCancelled):
        raise JobCancelledError(result.job_id)
    return False

