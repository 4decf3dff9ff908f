"""The window's one handle on the inference worker: a QObject that owns the ``WorkerClient``.

The client delivers events on its reader thread; the bridge's callback does nothing but emit the
Qt signal for the event's type, and Qt queues it to the GUI thread (the bridge lives there), so no
widget code ever runs on the reader thread and long work never blocks the event loop. Widgets call
the bridge's methods and connect to its signals; they never see the client.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from PySide6.QtCore import QObject, Signal

from inference.narration.runner import Progress, Relay, Runner
from inference.worker import protocol as p
from inference.worker.client import WorkerClient

log = logging.getLogger(__name__)
WORKER_NICE = 10  # on a busy CPU the window and the sound callback run first, the model after them


class WorkerBridge(QObject):
    stage_started = Signal(object)  # StageStarted
    download_progress = Signal(object)  # DownloadProgress
    job_started = Signal(object)  # JobStarted
    chunk_piece = Signal(object)  # ChunkPiece
    chunk_ready = Signal(object)  # ChunkReady
    generation_progress = Signal(object)  # GenerationProgress
    memory_sample = Signal(object)  # MemorySample
    plan_changed = Signal(object)  # PlanChanged
    worker_restarted = Signal(object)  # WorkerRestarted
    notice = Signal(object)  # Notice
    heartbeat = Signal(object)  # Heartbeat
    model_unloaded = Signal(object)  # ModelUnloaded
    job_finished = Signal(object)  # JobFinished
    job_failed = Signal(object)  # JobFailed
    job_cancelled = Signal(object)  # JobCancelled
    job_ended = Signal(str)  # the job id, after whichever of the three terminal signals

    def __init__(self, settings: p.WorkerSettings | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._routes = {
            p.StageStarted: self.stage_started, p.DownloadProgress: self.download_progress,
            p.JobStarted: self.job_started, p.ChunkPiece: self.chunk_piece, p.ChunkReady: self.chunk_ready,
            p.GenerationProgress: self.generation_progress, p.MemorySample: self.memory_sample,
            p.PlanChanged: self.plan_changed, p.WorkerRestarted: self.worker_restarted, p.Notice: self.notice,
            p.Heartbeat: self.heartbeat, p.ModelUnloaded: self.model_unloaded, p.JobFinished: self.job_finished,
            p.JobFailed: self.job_failed, p.JobCancelled: self.job_cancelled,
        }
        self._relay = Relay()  # the narration runner sees every event first, on the reader thread
        self._client = WorkerClient(settings, on_event=self._on_event)
        self._started = False
        self.job_started.connect(self._yield_cpu)  # a restarted worker is a new process: lower it too

    def _on_event(self, event: p.Event) -> None:
        """Runs on the client's reader thread: hand it to the runner (it only queues), emit, nothing else."""
        self._relay(event)
        signal = self._routes.get(type(event))
        if signal is None:
            log.warning("unroutable worker event %r", type(event).__name__)
            return
        signal.emit(event)
        if isinstance(event, p.TERMINAL_EVENTS):
            self.job_ended.emit(event.job_id)

    def start(self) -> None:
        """Start the worker process now (it loads no model until a job needs one), so the first job
        does not pay for the process start on the GUI thread."""
        self._client_started()
        self._yield_cpu()

    def _yield_cpu(self, _event: object = None) -> None:
        """Lower the worker's CPU priority, every thread of it (Linux nice values are per thread)."""
        pid = self._client.worker_pid
        if pid is None or not hasattr(os, "setpriority"):  # Windows: the scheduler favours the foreground
            return
        try:
            threads = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except OSError:  # not Linux, or the worker has just ended
            threads = [pid]
        for tid in threads:
            try:
                if os.getpriority(os.PRIO_PROCESS, tid) < WORKER_NICE:
                    os.setpriority(os.PRIO_PROCESS, tid, WORKER_NICE)
            except OSError:  # the thread (or the worker) has just ended
                continue

    def _client_started(self) -> WorkerClient:
        if not self._started:
            self._client.start()
            self._started = True
        return self._client

    # What widgets ask for.

    def speak(self, job: p.SpeakJob) -> str:
        """Queue a job; bad text or recordings raise ``VesperError`` at once. Returns the job id."""
        return self._client_started().submit(job)

    def runner(self, on_progress: Callable[[Progress], None]) -> Runner:
        """A narration runner on this bridge's worker, served this bridge's events from now on (one
        narration at a time); ``on_progress`` runs on the runner's thread."""
        return self._relay.serve(Runner(self._client_started(), on_progress))

    def cancel(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            self._client.cancel(job_id)

    def preload(self, model: str, hardware: str | None = None) -> str:
        """Load ``model`` ahead of the first job (``LoadJob``); ends in ``job_finished``."""
        return self._client_started().preload(model, hardware)

    def unload(self) -> str:
        """Free the loaded model; answered by ``model_unloaded`` with the returned request id."""
        return self._client_started().unload()

    def update_settings(self, settings: p.WorkerSettings) -> None:
        """Worker options (VRAM limit, low latency) for the next job on."""
        self._client_started().update_settings(settings)

    @property
    def settings(self) -> p.WorkerSettings:
        return self._client.settings

    @property
    def worker_pid(self) -> int | None:
        return self._client.worker_pid

    def shutdown(self) -> None:
        """Stop the worker process (a running job is abandoned); safe to call twice."""
        self._client.shutdown()
