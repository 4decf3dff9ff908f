"""The GUI's and the CLI's handle on the worker process: submit jobs, receive events, cancel, shut down.

This module never imports torch (a test checks): a GUI that imports it stays small and cannot be taken
down by a CUDA fault.

Threading rule: events arrive on a reader thread (one per worker process). They are handed to
``on_event`` there, or queued for ``events()`` / ``speak()``. A GUI's ``on_event`` only forwards each
event to its own thread (a Qt signal, say) and returns: it must never block, wait for the worker or
call back into the client's blocking methods from that thread, or events (and the watchdog's
heartbeats) stall behind it. Every method of the client may be called from any thread; none blocks
on the worker (commands go out through a writer thread).

Recovery: when the worker dies (segfault, kill -9, driver reset) or stops answering (no heartbeat for
``settings.hang_seconds`` while a job runs: the watchdog kills it), the client starts a new one and
resubmits every unfinished job from its first chunk not yet delivered, with the same chunking, so the
listener sees each chunk exactly once, after a ``WorkerRestarted``. The same happens when the worker
ends itself to step down in a fresh process (out of GPU memory with a lower plan that places the model
anew, or any other CUDA error: it has sent its ``PlanChanged`` and remembered the lower plan, which the
new worker starts from): ``WorkerRestarted`` then has ``RestartCause.FRESH_PROCESS`` and says why. A job
whose worker keeps dying without progress (``MAX_RESTARTS_WITHOUT_PROGRESS``), or keeps asking for fresh
processes without finishing a chunk (``MAX_FRESH_STARTS_WITHOUT_PROGRESS``), fails with a readable
``JobFailed`` instead of looping. A cancelled job in a stage the worker cannot interrupt
(loading weights) ends by killing the worker after ``settings.cancel_grace_seconds``; the next job
gets a fresh one.

Logging: the worker's log records come over the event pipe and are written to this process's
``logging`` (``inference.logs.setup`` adds the log file); the last ``LOG_TAIL`` lines go into every
``JobFailed.detail``.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

import numpy as np

from inference import hardware as hw
from inference.audio import read_reference
from inference.errors import VesperError
from inference.text import normalize
from inference.text_input import clean_text
from inference.worker.protocol import (
    FRESH_PROCESS_EXITS,
    TERMINAL_EVENTS,
    Cancel,
    ChunkPiece,
    ChunkReady,
    Command,
    Event,
    Heartbeat,
    JobCancelled,
    JobFailed,
    JobFinished,
    JobStarted,
    LoadJob,
    MemoryStats,
    ModelUnloaded,
    Notice,
    PlanChanged,
    RestartCause,
    Shutdown,
    SpeakJob,
    Stage,
    StageStarted,
    Submit,
    Unload,
    UpdateSettings,
    WorkerLog,
    WorkerRestarted,
    WorkerSettings,
    join,
)

log = logging.getLogger(__name__)
_worker_logger = logging.getLogger("inference.worker.remote")  # the worker's records, as it logged them

MAX_RESTARTS_WITHOUT_PROGRESS = 3
# Each fresh start after a step-down begins one plan lower, and no ladder on the presets has more than 6
# changes of placement (a test checks), so more than this many fresh starts without a chunk is a GPU that
# fails whatever the plan.
MAX_FRESH_STARTS_WITHOUT_PROGRESS = 8
LOG_TAIL = 200  # worker log lines kept for diagnostics
STARTUP_SECONDS = 120.0  # the watchdog's limit before a new worker's first heartbeat
# Stages in which the worker does not look at its commands: a cancel there kills it after the grace period.
UNINTERRUPTIBLE = frozenset({Stage.PLANNING, Stage.LOADING, Stage.ENCODING_VOICE})


class WorkerError(RuntimeError):
    """The worker failed in a way the user cannot fix (a bug, a worker that keeps crashing).

    ``detail`` is the diagnostics text (traceback, versions, plan, the worker's last log lines).
    """

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


class JobCancelledError(Exception):
    """``speak`` was cancelled before the job finished."""


@dataclass
class JobResult:
    """Everything ``speak`` collected for one job."""

    job_id: str
    chunks: list[ChunkReady] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)  # Notice, PlanChanged and WorkerRestarted messages
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

    job: SpeakJob | LoadJob
    chunks: tuple[str, ...] | None = None  # pinned by the first JobStarted
    next_chunk: int = 0  # the first chunk not yet delivered
    cancel_requested: bool = False
    stage: Stage | None = None  # the last stage the worker reported (None: still queued)
    fresh_starts: int = 0  # fresh worker processes it asked for since its last delivered chunk


class WorkerClient:
    """Runs jobs in a worker process.

    ``on_event(event)``, if given, receives every event on the client's reader thread (see the module's
    threading rule); otherwise events queue up for ``events()`` (or ``speak()``). Use as a context
    manager, or call ``start``/``shutdown``. Heartbeats and worker log lines are consumed here.
    """

    def __init__(self, settings: WorkerSettings | None = None,
                 on_event: Callable[[Event], None] | None = None) -> None:
        self.settings = settings or WorkerSettings()
        self.restarts = 0  # workers started to replace one that died, hung or ended itself to step down
        self.worker_log: deque[str] = deque(maxlen=LOG_TAIL)  # the worker's last log lines
        self._on_event = on_event
        self._events: queue.Queue[Event | None] = queue.Queue()
        self._outbox: queue.Queue[tuple[Connection, Command] | None] = queue.Queue()
        self._jobs: dict[str, _Job] = {}  # unfinished jobs, in submission order
        self._unloads: set[str] = set()  # Unload requests not answered yet
        self._lock = threading.RLock()
        self._context = mp.get_context("spawn")
        self._process: BaseProcess | None = None
        self._commands: Connection | None = None
        self._writer: threading.Thread | None = None
        self._closing = False
        self._closed = threading.Event()
        self._crashes_without_progress = 0
        self._workers_started = 0  # picks each worker's injected fault (``faults.parse``)
        self._last_heard = time.monotonic()  # the current worker's last event (any, heartbeats included)
        self._heard = False  # whether the current worker has sent anything yet
        self._killed: dict[int, str] = {}  # pid -> why the client killed it ("hung" or "cancel")

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
                threading.Thread(target=self._watch, name="vesper-watchdog", daemon=True).start()
            if self._process is None:
                self._spawn()
        return self

    def submit(self, job: SpeakJob, start_chunk: int = 0) -> str:
        """Queue a job and return its id; bad text, recordings or hardware specs raise ``VesperError`` now.

        ``start_chunk`` skips the chunks before it (a long narration resumed in a later session).
        """
        check_job(job)
        return self._enqueue(job, start_chunk)

    def preload(self, model: str, hardware: str | None = None) -> str:
        """Resolve, download and load ``model`` now (a ``LoadJob``); its events end in ``JobFinished``."""
        if hardware is not None:
            hw.resolve(hardware)
        return self._enqueue(LoadJob(model, hardware), 0)

    def unload(self) -> str:
        """Free the loaded model once the running job has ended; answered by ``ModelUnloaded(request_id)``."""
        request_id = uuid.uuid4().hex[:12]
        with self._lock:
            self._require_started()
            self._unloads.add(request_id)
            self._send(Unload(request_id))
        return request_id

    def update_settings(self, settings: WorkerSettings) -> None:
        """Use ``settings`` from the next job on, in this worker and in any that replaces it."""
        with self._lock:
            self.settings = settings
            if self._process is not None:
                self._send(UpdateSettings(settings))

    def cancel(self, job_id: str) -> None:
        """Stop a job in any stage: within one chunk (one micro-batch) or one download piece, a queued job
        never starts, and a load is ended by killing the worker after the grace period. Ends in
        JobCancelled."""
        with self._lock:
            record = self._jobs.get(job_id)
            if record is None or record.cancel_requested:
                return
            record.cancel_requested = True
            log.info("cancelling job %s (stage %s)", job_id, record.stage and record.stage.value)
            self._send(Cancel(job_id))
            process = self._process
        timer = threading.Timer(self.settings.cancel_grace_seconds, self._end_stuck_cancel, (job_id, process))
        timer.daemon = True
        timer.start()

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
            self._closed.set()
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

    def _enqueue(self, job: SpeakJob | LoadJob, start_chunk: int) -> str:
        job_id = uuid.uuid4().hex[:12]
        with self._lock:
            self._require_started()
            if self._process is None:
                self._spawn()  # the last worker died idle or gave up: start afresh
            self._jobs[job_id] = _Job(job, next_chunk=start_chunk)
            self._send(Submit(job_id, job, start_chunk))
        log.info("job %s: submitted %s for %s", job_id, type(job).__name__, job.model)
        return job_id

    def _require_started(self) -> None:
        if self._writer is None or self._closing:
            raise RuntimeError("WorkerClient needs a started client (start() or a with block)")

    # Worker lifecycle: the writer thread, one reader thread per worker, the watchdog, recovery.

    def _spawn(self) -> None:
        """Start a worker and its reader thread (called with the lock held)."""
        command_reader, command_writer = self._context.Pipe(duplex=False)
        event_reader, event_writer = self._context.Pipe(duplex=False)
        args = (command_reader, event_writer, self.settings, self._workers_started)
        process = self._context.Process(target=_worker_main, args=args, name="vesper-worker", daemon=True)
        process.start()
        command_reader.close()  # only the worker holds these ends now: its death reads as EOF here
        event_writer.close()
        self._workers_started += 1
        self._process, self._commands = process, command_writer
        self._last_heard, self._heard = time.monotonic(), False
        log.info("started worker %d", process.pid)
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
                log.exception("unreadable message from worker %d", process.pid)
                break
            if process is self._process:
                self._last_heard, self._heard = time.monotonic(), True
            self._deliver(event)
        process.join()
        events.close()
        with self._lock:
            if not self._closing and process is self._process:
                self._recover(process)

    def _watch(self) -> None:
        """The watchdog: a worker silent for ``hang_seconds`` while a job runs is killed (and replaced)."""
        while not self._closed.wait(min(1.0, self.settings.hang_seconds / 4)):
            with self._lock:
                process = self._process
                silent = time.monotonic() - self._last_heard
                # Until its first heartbeat a worker is still starting Python (seconds on a cold disk).
                limit = self.settings.hang_seconds if self._heard else max(self.settings.hang_seconds, STARTUP_SECONDS)
                if process is None or not self._jobs or silent < limit:
                    continue
                log.warning("worker %d silent for %.1f s while a job runs: killing it", process.pid, silent)
                self._kill(process, "hung")

    def _end_stuck_cancel(self, job_id: str, process: BaseProcess | None) -> None:
        """The grace period after a cancel ran out: a job still busy in an uninterruptible stage ends by
        killing its worker (a job in any other stage stops at its next check, within one chunk)."""
        with self._lock:
            record = self._jobs.get(job_id)
            if record is None or process is None or process is not self._process or record.stage not in UNINTERRUPTIBLE:
                return
            log.info("job %s still %s after cancel: killing worker %d", job_id, record.stage.value, process.pid)
            self._kill(process, "cancel")

    def _kill(self, process: BaseProcess, why: str) -> None:
        if process.pid is not None and process.is_alive():
            self._killed[process.pid] = why
            process.kill()  # SIGKILL also ends a stopped (SIGSTOP) process; the reader then sees EOF

    def _deliver(self, event: Event) -> None:
        if isinstance(event, Heartbeat):
            return  # _read noted the time: that is all a heartbeat is for
        if isinstance(event, WorkerLog):
            self._log_worker(event)
            return
        with self._lock:
            if isinstance(event, ModelUnloaded):
                if event.request_id in self._unloads:
                    self._unloads.discard(event.request_id)
                    self._dispatch(event)
                return
            record = self._jobs.get(event.job_id)
            if record is None:
                return  # a job that already ended here (cancelled while its worker was being replaced)
            if isinstance(event, StageStarted):
                record.stage = event.stage
            elif isinstance(event, JobStarted):
                record.chunks = record.chunks or event.chunks
            elif isinstance(event, ChunkPiece):
                if event.index < record.next_chunk:
                    return  # a chunk already delivered whole before a restart
            elif isinstance(event, ChunkReady):
                if event.index < record.next_chunk:
                    return  # delivered before a restart: never twice
                record.next_chunk, record.fresh_starts = event.index + 1, 0
                self._crashes_without_progress = 0
            elif isinstance(event, TERMINAL_EVENTS):
                del self._jobs[event.job_id]
                self._crashes_without_progress = 0
                if isinstance(event, JobFailed):
                    event = replace(event, detail=self._with_log(event.detail))
                log.info("job %s: %s", event.job_id, type(event).__name__)
            self._dispatch(event)  # under the lock, so a resumed job's events cannot overtake these

    def _log_worker(self, event: WorkerLog) -> None:
        line = f"{logging.getLevelName(event.level)} {event.logger}: {event.message}"
        self.worker_log.append(line)
        _worker_logger.log(event.level, "%s: %s", event.logger, event.message)

    def _with_log(self, detail: str) -> str:
        return f"{detail}\n\nlast worker log lines:\n" + "\n".join(self.worker_log)

    def _recover(self, process: BaseProcess) -> None:
        """The worker ended (lock held): start another and resubmit unfinished jobs where they stopped.

        It died or hung, or it ended itself so that its job steps down in a fresh process (its exit code
        is one of ``FRESH_PROCESS_EXITS``).
        """
        self._process = self._commands = None  # the old pipe closes once the writer drops it
        why = self._killed.pop(process.pid, None) if process.pid is not None else None
        fresh = FRESH_PROCESS_EXITS.get(process.exitcode) if why is None else None
        log.warning("worker %d ended (exit code %s%s)", process.pid, process.exitcode,
                    f", {why or fresh}" if why or fresh else "")
        for request_id in list(self._unloads):  # a dead worker holds no model
            self._unloads.discard(request_id)
            self._dispatch(ModelUnloaded(request_id))
        for job_id, record in list(self._jobs.items()):
            if record.cancel_requested:
                del self._jobs[job_id]
                self._dispatch(JobCancelled(job_id))
        if fresh is not None:
            self._bound_fresh_starts()
        if not self._jobs:
            return  # nothing to resume: the next submit starts a worker
        if fresh is None and why != "cancel":
            self._crashes_without_progress += 1
        if self._crashes_without_progress > MAX_RESTARTS_WITHOUT_PROGRESS:
            self._fail_all(f"The inference worker stopped {self._crashes_without_progress} times without "
                           f"making progress (last exit code {process.exitcode}); see the log for details.")
            self._crashes_without_progress = 0
            return
        self.restarts += 1
        self._spawn()
        if fresh is not None:
            cause, what = RestartCause.FRESH_PROCESS, f"was restarted {fresh}"
        elif why == "hung":
            cause, what = RestartCause.HUNG, "stopped answering and was replaced"
        else:
            cause, what = RestartCause.CRASHED, f"stopped (exit code {process.exitcode}) and was restarted"
        for job_id, record in self._jobs.items():
            self._send(Submit(job_id, record.job, record.next_chunk, record.chunks))
            if why == "cancel" or record.stage is None:
                continue  # still queued: nothing of it was lost
            where = f"chunk {record.next_chunk + 1} of {len(record.chunks)}" if record.chunks else "the start"
            self._dispatch(WorkerRestarted(job_id, cause, process.exitcode, record.next_chunk,
                                           f"The inference worker {what}; resuming at {where}."))

    def _bound_fresh_starts(self) -> None:
        """The running job asked for another fresh process: fail it if it has asked too often without progress."""
        for job_id, record in list(self._jobs.items()):
            if record.stage is None:
                continue  # queued behind the job that asked
            record.fresh_starts += 1
            if record.fresh_starts > MAX_FRESH_STARTS_WITHOUT_PROGRESS:
                del self._jobs[job_id]
                message = (f"The GPU kept failing: {record.fresh_starts} fresh worker processes in a row, each "
                           "on a lower plan where one was left, ended before finishing a chunk; close other "
                           "programs or choose a smaller model.")
                self._dispatch(JobFailed(job_id, message, user_error=True, detail=self._with_log(message)))

    def _fail_all(self, message: str) -> None:
        for job_id in list(self._jobs):
            del self._jobs[job_id]
            self._dispatch(JobFailed(job_id, message, user_error=False, detail=self._with_log(message)))

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
            log.exception("event listener failed on %s", type(event).__name__)


def _worker_main(commands: Connection, events: Connection, settings: WorkerSettings,
                 worker_number: int) -> None:
    """The spawned process's target; it lives here so pickling it does not import torch in the client.

    The heartbeat and log forwarding start before the worker module (and torch) is imported.
    """
    from inference.settings import configure_cuda_allocator
    from inference.worker.channel import EventChannel, forward_logs

    configure_cuda_allocator()  # before torch is imported
    channel = EventChannel(events, settings.heartbeat_seconds)
    channel.start_heartbeat()
    forward_logs(channel)
    from inference.worker.process import main

    main(commands, channel, settings, worker_number)


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
    elif isinstance(event, (Notice, PlanChanged, WorkerRestarted)):
        result.notices.append(event.message)
    elif isinstance(event, JobFinished):
        result.plan, result.memory, result.seconds = event.plan, event.memory, event.seconds
        return True
    elif isinstance(event, JobFailed):
        raise VesperError(event.message) if event.user_error else WorkerError(event.message, event.detail)
    elif isinstance(event, JobCancelled):
        raise JobCancelledError(result.job_id)
    return False

