"""The worker process: one job at a time, models and voices cached, out-of-memory and CUDA errors survived.

The client starts this in a child process (spawn) and talks to it over two pipes: commands in, events
out (``protocol``). Between chunks, and between the pieces of a download, the worker looks at the
commands, so a cancel stops a job within one chunk (one micro-batch); only loading weights cannot be
interrupted, and there the client kills the worker after a grace period. Everything that can go
wrong with a GPU happens here, where a crash costs only a restart: the client resumes the job from
its first unfinished chunk.

Stepping down after an error, the worker goes on in the state it knows works:

- out of memory, and the lower plan keeps the placement (a smaller batch, shorter chunks) or the plan
  runs on the CPU (RAM, not a CUDA context, ran short): in this process, with the loaded model;
- out of GPU memory, and the lower plan places the model anew (it must be reloaded anyway): the lower
  plan is remembered and the worker ends itself (``EXIT_TO_RELOAD``), so the client starts a fresh
  one that loads it with a clean CUDA context and resumes at the failed chunk;
- any other CUDA error: the same with ``EXIT_AFTER_GPU_ERROR``. A CUDA error's cause cannot be told
  apart from memory pressure (a failed host registration, an allocation inside a library), so it steps
  down one plan as out-of-memory does; with no lower plan left the fresh worker retries the same one.

The client bounds the fresh starts a job may take without finishing a chunk.
"""

from __future__ import annotations

import gc
import logging
import os
import platform
import queue
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from multiprocessing.connection import Connection

import numpy as np
import torch
from huggingface_hub.utils import disable_progress_bars
from transformers.utils import logging as hf_logging

from inference import hardware as hw
from inference import jobs, models
from inference.adapters.base import VoicePrompt
from inference.engine import Engine
from inference.errors import VesperError
from inference.models import ModelRef
from inference.planner import CUDA_RUNTIME_BYTES, Plan, describe_plan, fingerprint, step_down
from inference.settings import fault_spec
from inference.worker import faults, memory
from inference.worker.channel import EventChannel
from inference.worker.plan_memory import PlanMemory
from inference.worker.protocol import (
    EXIT_AFTER_GPU_ERROR,
    EXIT_TO_RELOAD,
    Cancel,
    ChunkPiece,
    ChunkReady,
    Command,
    DownloadProgress,
    Event,
    GenerationProgress,
    JobCancelled,
    JobFailed,
    JobFinished,
    JobStarted,
    LoadJob,
    ModelUnloaded,
    Notice,
    PlanChangeCause,
    PlanChanged,
    Shutdown,
    SpeakJob,
    Stage,
    StageStarted,
    Submit,
    Unload,
    UpdateSettings,
    WorkerSettings,
)
from inference.worker.voices import VoiceCache, voice_key

log = logging.getLogger(__name__)


def main(commands: Connection, channel: EventChannel, settings: WorkerSettings, worker_number: int) -> None:
    """Entry point of the child process: one pipe in, one (shared, locked) pipe out.

    ``worker_number`` counts the workers the client started before this one (0: the first): it picks this
    worker's fault from ``VESPER_FAULT``. The exit status is 0, or the code of a worker that ended itself so
    that its job goes on in a fresh process (``protocol.FRESH_PROCESS_EXITS``).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the client's to handle; it shuts us down
    # Progress bars from a background process garble the CLI's output, and tqdm's lock leaks a
    # semaphore whenever a worker is killed; downloads report through DownloadProgress instead.
    hf_logging.disable_progress_bar()
    disable_progress_bars()
    fault = faults.parse(fault_spec(), worker_number)
    inbox: queue.Queue[Command] = queue.Queue()
    threading.Thread(target=_receive, args=(commands, inbox), name="vesper-commands", daemon=True).start()
    worker = Worker(settings, inbox, channel.send, faults.FaultInjector(fault), PlanMemory.default(), channel)
    # What the imports created lives as long as the worker; frozen, it is skipped by the full collection
    # after every job (0.46 s -> 0.01 s per job here). Models are loaded later and stay collectable.
    gc.freeze()
    log.info("worker %d ready (torch %s)", os.getpid(), torch.__version__)
    try:
        worker.serve()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the client went away: nobody is left to serve
    # Every event is already written. Tearing down an interpreter with torch and transformers loaded
    # took ~2 s here, which the client's shutdown (and a user closing the window) would wait for.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(worker.exit_code)


def cap_allocator(plan: Plan, limit_bytes: int) -> None:
    """Keep torch's allocator within the user's VRAM limit on the plan's GPU, before anything loads there.

    The limit is the process's whole share (NVML's view), so what CUDA holds outside the allocator comes off
    it (``CUDA_RUNTIME_BYTES``, measured after a model ran, not the bare context). Set
    per device, once it is known; an allocation past it raises out-of-memory, which steps the plan down.
    """
    if limit_bytes <= 0 or not plan.device.startswith("cuda"):
        return
    device = torch.device(plan.device)
    total = torch.cuda.get_device_properties(device).total_memory
    torch.cuda.set_per_process_memory_fraction(memory.allocator_fraction(limit_bytes, CUDA_RUNTIME_BYTES, total),
                                               device)


def _log_out_of_memory(doing: str, exc: BaseException) -> None:
    """What ran short, in the log: torch's message says how much was asked for and how much was held, the
    figures a short prediction is corrected from (the user sees the plan change, not this)."""
    log.warning("out of memory while %s: %s", doing, " ".join(str(exc).split())[:400])


def _receive(commands: Connection, inbox: queue.Queue[Command]) -> None:
    """Read commands as soon as they arrive, so the client never blocks writing to a busy worker."""
    try:
        while True:
            inbox.put(commands.recv())
    except (EOFError, OSError):
        inbox.put(Shutdown())  # the client is gone


class _Cancelled(Exception):
    """Raised between chunks when the running job was cancelled (or the worker is shutting down)."""


class _FreshProcess(Exception):
    """The running job must go on in a new worker process; its lower plan is remembered and announced.

    ``exit_code`` says why (``protocol.FRESH_PROCESS_EXITS``); the client resumes the job at its first
    chunk not yet delivered.
    """

    def __init__(self, exit_code: int) -> None:
        super().__init__(exit_code)
        self.exit_code = exit_code


@dataclass
class _Run:
    """The running job's state; the plan, engine and prompt change when memory runs short.

    ``prepared`` is None for a ``LoadJob``: it has no text and no voice, only a model to load.
    """

    submit: Submit
    ref: ModelRef
    hardware: hw.Hardware  # what the plan was made for; steps down against it
    plan: Plan
    prepared: jobs.PreparedJob | None = None
    chunks: tuple[str, ...] = ()
    engine: Engine | None = None
    prompt: VoicePrompt | None = None
    at_chunk: int = 0  # the chunk being worked on: where a lower plan after an error starts

    @property
    def job_id(self) -> str:
        return self.submit.job_id


class _Pace:
    """Generation speed within one run of a job: audio seconds per second, and what is left."""

    def __init__(self, total: int, first: int) -> None:
        self.total, self.first = total, first
        self.audio_seconds = 0.0
        self.started = time.perf_counter()

    def progress(self, job_id: str, index: int, seconds: float) -> GenerationProgress:
        """After chunk ``index`` (``seconds`` of audio) was delivered."""
        self.audio_seconds += seconds
        elapsed = time.perf_counter() - self.started
        generated = index + 1 - self.first
        eta = (self.total - index - 1) * elapsed / generated if generated > 0 else None
        speed = self.audio_seconds / elapsed if elapsed > 0 else 0.0
        return GenerationProgress(job_id, index + 1, self.total, self.audio_seconds, elapsed, speed, eta)


class Worker:
    """Runs submitted jobs; ``inbox`` delivers commands, ``send`` emits events.

    ``channel``, in a real worker process, is the event pipe: it learns which job runs (for heartbeats
    and forwarded log lines) and how often to beat.
    """

    def __init__(self, settings: WorkerSettings, inbox: queue.Queue[Command], send: Callable[[Event], None],
                 injector: faults.FaultInjector, plans: PlanMemory, channel: EventChannel | None = None) -> None:
        self.settings = settings
        self.inbox = inbox
        self.send = send
        self.faults = injector
        self.plans = plans
        self.channel = channel
        self.voices = VoiceCache(settings.voice_cache_size)
        self.meter = memory.MemoryMeter()
        self.engine: Engine | None = None
        self._engine_key: str | None = None
        self._queue: deque[Submit | Unload] = deque()
        self._running: str | None = None
        self._run_state: _Run | None = None  # for diagnostics when the job fails
        self._pending_settings: WorkerSettings | None = None
        self._stop_running = False
        self._shutting_down = False
        self.exit_code = 0  # set when a job asked to go on in a fresh process: this worker then ends

    def serve(self) -> None:
        """Run queued jobs (and unloads) in order until told to shut down."""
        while not self._shutting_down:
            if self._queue:
                item = self._queue.popleft()
                if isinstance(item, Unload):
                    self.unload()
                    self.send(ModelUnloaded(item.request_id))
                else:
                    self.run(item)
            else:
                self._handle(self.inbox.get())

    def run(self, submit: Submit) -> None:
        """Run one job to its end and send its terminal event, after giving its memory back.

        A job that must go on in a fresh process sends none: this worker ends after it (``exit_code``).
        """
        self._apply_settings()
        self._running, self._stop_running, self._run_state = submit.job_id, False, None
        if self.channel is not None:
            self.channel.job_id = submit.job_id
        log.info("job %s: %s for %s", submit.job_id, type(submit.job).__name__, submit.job.model)
        self.meter.start()
        started = time.perf_counter()
        plan_label, event = self._attempt(submit)
        self._running, self._run_state = None, None
        if self.channel is not None:
            self.channel.job_id = ""
        if self.exit_code:
            return  # no cleanup either: CUDA may be broken, and the process ends now
        memory.release()  # after the except blocks: their tracebacks held the job's tensors
        if event is None:
            seconds = time.perf_counter() - started
            event = JobFinished(submit.job_id, plan_label or "", self.meter.finish(), seconds)
            log.info("job %s: finished in %.1f s on %s", submit.job_id, seconds, plan_label)
        self.send(event)

    def _attempt(self, submit: Submit) -> tuple[str | None, Event | None]:
        """Run the job: the label of the plan it finished on, or the terminal event it ended with instead."""
        try:
            return self._run_job(submit), None
        except _FreshProcess as request:
            log.warning("job %s: ending worker %d so that the job goes on in a fresh process", submit.job_id,
                        os.getpid())
            self.exit_code, self._shutting_down = request.exit_code, True
            return None, None  # the job is not over: the client resumes it in the next worker
        except _Cancelled:
            log.info("job %s: cancelled", submit.job_id)
            return None, JobCancelled(submit.job_id)
        except VesperError as exc:
            log.info("job %s: %s", submit.job_id, exc)
            return None, JobFailed(submit.job_id, _one_line(str(exc)), user_error=True, detail=self._detail(submit))
        except Exception as exc:  # noqa: BLE001 - a bug must fail the job, not the worker
            log.exception("job %s failed", submit.job_id)
            message = (f"Internal error in the inference worker ({type(exc).__name__}: {_one_line(str(exc))[:200]}); "
                       "copy the diagnostics to report it.")
            return None, JobFailed(submit.job_id, message, user_error=False, detail=self._detail(submit))

    def _run_job(self, submit: Submit) -> str:
        """``_load`` or ``_run``; after a CUDA error other than out-of-memory the job steps down into a fresh
        process."""
        try:
            return self._load(submit) if isinstance(submit.job, LoadJob) else self._run(submit)
        except Exception as exc:
            if not memory.is_cuda_error(exc) or self._run_state is None:
                raise
            log.exception("job %s: CUDA error", submit.job_id)
            raise self._after_gpu_error(self._run_state, exc) from exc

    def _handle(self, command: Command) -> None:
        if isinstance(command, (Submit, Unload)):
            self._queue.append(command)
        elif isinstance(command, Cancel):
            if command.job_id == self._running:
                self._stop_running = True
            elif any(isinstance(s, Submit) and s.job_id == command.job_id for s in self._queue):
                self._queue = deque(s for s in self._queue if not (isinstance(s, Submit)
                                                                   and s.job_id == command.job_id))
                self.send(JobCancelled(command.job_id))
        elif isinstance(command, UpdateSettings):
            self._pending_settings = command.settings
            if self._running is None:
                self._apply_settings()
        elif isinstance(command, Shutdown):
            self._shutting_down = self._stop_running = True

    def _apply_settings(self) -> None:
        """New settings take effect between jobs: a running job keeps its batches (a resume reproduces them)."""
        settings, self._pending_settings = self._pending_settings, None
        if settings is None:
            return
        self.settings = settings
        self.voices.resize(settings.voice_cache_size)
        if self.channel is not None:
            self.channel.heartbeat_seconds = settings.heartbeat_seconds
        log.info("settings: %s", settings)

    def _check_commands(self) -> None:
        while True:
            try:
                self._handle(self.inbox.get_nowait())
            except queue.Empty:
                break
        if self._stop_running:
            raise _Cancelled

    def _stage(self, job_id: str, stage: Stage, detail: str = "") -> None:
        log.info("job %s: %s %s", job_id, stage.value, detail)
        self.send(StageStarted(job_id, stage, detail))

    def _resolved(self, job_id: str, ref: ModelRef) -> None:
        """Between resolving and planning: download what the model needs, as its own stage."""
        if not models.is_cached(ref):
            models.check_can_download(ref)  # offline: the advice, with no download stage announced first
            self._stage(job_id, Stage.DOWNLOADING, ", ".join(models.hub_repos(ref)))

            def progress(repo_id: str, filename: str, done: int, total: int) -> None:
                self.send(DownloadProgress(job_id, repo_id, filename, done, total))
                self._check_commands()  # a cancel raises here, inside huggingface_hub's download loop

            models.fetch(ref, progress)
        self._check_commands()
        self._stage(job_id, Stage.PLANNING, ref.label)

    def _load(self, submit: Submit) -> str:
        """A ``LoadJob``: resolve, download, plan and load the model a first ``SpeakJob`` will use."""
        job = submit.job
        self._stage(submit.job_id, Stage.RESOLVING, job.model)
        ref, hardware, plan = jobs.prepare_load(job, self.settings.batch_size,
                                                lambda ref: self._resolved(submit.job_id, ref),
                                                vram_limit_bytes=self.settings.vram_limit_bytes)
        run = self._run_state = _Run(submit, ref, hardware, self.plans.recall(ref, hardware, plan))
        self._use(run, run.plan, 0, "while loading the model")
        self._stage(submit.job_id, Stage.DONE)
        return describe_plan(run.plan)

    def _run(self, submit: Submit) -> str:
        job = submit.job
        assert isinstance(job, SpeakJob)
        self._stage(submit.job_id, Stage.RESOLVING, job.model)
        prepared = jobs.prepare(job, self.settings.batch_size, lambda ref: self._resolved(submit.job_id, ref),
                                vram_limit_bytes=self.settings.vram_limit_bytes)
        chunks = tuple(submit.chunks or prepared.chunks)
        plan = self.plans.recall(prepared.ref, prepared.hardware, prepared.plan)
        run = self._run_state = _Run(submit, prepared.ref, prepared.hardware, plan, prepared, chunks)
        self._send_started(run)  # before loading, which can take long: the listener learns the chunks now
        for message in prepared.notices:
            self._notice(run, message)
        if plan is not prepared.plan:
            self._notice(run, f"Using {describe_plan(plan)} for {run.ref.label}: a higher plan ran out of "
                              "memory (or met a GPU error) on this machine before.")
        index = run.at_chunk = submit.start_chunk
        self._use(run, plan, index, "while loading the model")
        left = len(chunks) - index
        self._stage(submit.job_id, Stage.GENERATING, f"{left} chunk{'s' if left != 1 else ''}")
        pace = _Pace(len(chunks), index)
        while index < len(chunks):
            run.at_chunk = index
            self._check_commands()
            self._preflight(run, index)
            start = index - index % run.plan.batch_size  # fixed groups: a resumed job makes the same batches
            stop = min(start + run.plan.batch_size, len(chunks))
            audios = self._generate(run, start, stop, index)
            if audios is None:
                where = f"at chunk {index + 1} of {len(chunks)}"
                self._use(run, self._lower(run, run.plan, index, where), index, where)
                continue  # the same chunk again, under the lower plan
            self.meter.sample()
            for offset, audio in enumerate(audios):
                if start + offset >= index:
                    self.send(memory.sample(run.job_id, run.plan.device, self.settings.vram_limit_bytes))
                    self._send_chunk(run, start + offset, audio)
                    self.send(pace.progress(run.job_id, start + offset, len(audio) / run.ref.adapter.sample_rate))
            index = stop
        self._stage(submit.job_id, Stage.DONE)
        return describe_plan(run.plan)

    def _generate(self, run: _Run, start: int, stop: int, first: int) -> list[np.ndarray] | None:
        """The audio of chunks ``start..stop``, or None when memory ran out.

        Where the engine streams, pieces of chunks from ``first`` on go out as they come (the ones before
        ``first`` were delivered before a resume and are only recomputed to keep the batch the same).
        """
        assert run.engine is not None and run.prompt is not None
        try:
            self.faults.before_chunks(stop - start)
            texts = list(run.chunks[start:stop])
            seeds = [jobs.seed_of(run.submit.job, start + i) for i in range(len(texts))]
            if run.engine.fast is None and run.submit.job.seeds is not None:
                # Plain generate draws a whole batch from one random stream: pinned seeds mean each chunk
                # is drawn from its own, whatever batch it would have been in, so it runs alone.
                return [run.engine.synthesize(run.prompt, text, seed) for text, seed in zip(texts, seeds, strict=True)]
            if run.engine.fast is None:
                return run.engine.synthesize_batch(run.prompt, texts, seeds)
            return self._stream(run, start, first, len(texts), run.engine.stream_batch(run.prompt, texts, seeds))
        except Exception as exc:  # noqa: BLE001 - anything but out-of-memory is re-raised
            if not memory.is_out_of_memory(exc):
                raise
            _log_out_of_memory("generating", exc)
            return None  # the traceback, and the tensors its frames hold, end with this block

    def _stream(self, run: _Run, start: int, first: int, count: int,
                pieces: Iterator[tuple[int, np.ndarray]]) -> list[np.ndarray]:
        """Forward streamed pieces as ``ChunkPiece`` events and return each chunk's whole audio."""
        parts: list[list[np.ndarray]] = [[] for _ in range(count)]
        for row, samples in pieces:
            done = parts[row]
            if start + row >= first:
                offset = sum(len(p) for p in done)
                self.send(ChunkPiece(run.job_id, start + row, offset, samples, run.engine.sample_rate))
            done.append(samples)
        return [np.concatenate(p) if p else np.zeros(0, dtype=np.float32) for p in parts]

    def _lower(self, run: _Run, plan: Plan, at_chunk: int, where: str) -> Plan:
        """The plan after ``plan`` ran out of memory, remembered for this model and machine.

        Raises ``_FreshProcess`` when ``plan`` ran on a GPU and the lower plan places the model anew: it
        loads in a fresh worker, with a clean CUDA context, rather than beside what the failed one left.
        """
        lower = step_down(plan, run.ref, run.hardware)
        if lower is None:
            raise VesperError(f"Ran out of memory {where} even with the most frugal plan "
                              f"({describe_plan(plan)}): close other programs or choose a smaller model.")
        fresh = needs_fresh_process(plan, lower)
        self.plans.remember(run.ref, run.hardware, lower)
        self._plan_changed(run, plan, lower, PlanChangeCause.OUT_OF_MEMORY, at_chunk,
                           f"Ran out of memory {where}: continuing with {describe_plan(lower)}"
                           f"{' in a fresh worker process' if fresh else ''} (remembered for {run.ref.label} "
                           "on this machine).")
        if fresh:
            raise _FreshProcess(EXIT_TO_RELOAD)
        memory.release()
        return lower

    def _after_gpu_error(self, run: _Run, exc: BaseException) -> _FreshProcess:
        """After a CUDA error other than out-of-memory: remember the lower plan, if any, and announce it;
        returns the request to go on in a fresh process.

        Nothing here touches CUDA (the context may be broken); the plan memory is a file.
        """
        where = (f"at chunk {run.at_chunk + 1} of {len(run.chunks)}" if run.chunks else "while loading the model")
        lower = step_down(run.plan, run.ref, run.hardware)
        if lower is None:
            log.warning("job %s: no lower plan than %s: the fresh worker tries it again", run.job_id,
                        describe_plan(run.plan))
        else:
            self.plans.remember(run.ref, run.hardware, lower)
            self._plan_changed(run, run.plan, lower, PlanChangeCause.GPU_ERROR, run.at_chunk,
                               f"A CUDA error {where} ({type(exc).__name__}: {_one_line(str(exc))[:120]}): "
                               f"continuing with {describe_plan(lower)} in a fresh worker process (remembered "
                               f"for {run.ref.label} on this machine).")
        return _FreshProcess(EXIT_AFTER_GPU_ERROR)

    def _use(self, run: _Run, plan: Plan, at_chunk: int, where: str) -> None:
        """Switch to ``plan``, stepping further down while even loading it runs out of memory."""
        while True:
            self._check_commands()  # a cancel before a (long, uninterruptible) load
            try:
                cap_allocator(plan, self.settings.vram_limit_bytes)
                self._switch(run, plan)
                return
            except Exception as exc:  # noqa: BLE001 - anything but out-of-memory is re-raised
                if not memory.is_out_of_memory(exc):
                    raise
                _log_out_of_memory("loading", exc)
            plan = self._lower(run, plan, at_chunk, where)

    def _preflight(self, run: _Run, index: int) -> None:
        """Step down before a chunk that would not fit: other programs take GPU memory at any time.

        Not remembered: the shortage belongs to whatever else runs now, not to the plan.
        """
        if not run.plan.device.startswith("cuda"):
            return
        free = memory.gpu_free_bytes(run.plan.device)
        if free is None:
            return
        reserved = torch.cuda.memory_reserved(run.plan.device)
        free = memory.free_under_limit(free, self.settings.vram_limit_bytes, reserved, CUDA_RUNTIME_BYTES)
        held = None if self.engine is None else \
            memory.Held(torch.cuda.memory_allocated(run.plan.device), self.engine.fast is not None)
        lower: Plan | None = run.plan
        while lower is not None and memory.shortfall(lower, free, reserved, self._held(lower, held)) > 0:
            lower = step_down(lower, run.ref, run.hardware)
        if lower is None or lower is run.plan:
            return  # fits, or nothing fits: try anyway and let an out-of-memory error step down
        self._plan_changed(run, run.plan, lower, PlanChangeCause.PREFLIGHT, index,
                           f"Only {free / 2**30:.2f} GiB of GPU memory is free now (another program?): "
                           f"continuing from chunk {index + 1} with {describe_plan(lower)}.")
        self._use(run, lower, index, f"at chunk {index + 1} of {len(run.chunks)}")

    def _held(self, plan: Plan, held: memory.Held | None) -> memory.Held | None:
        """``held`` where ``plan`` keeps the loaded engine's placement (no reload), else None."""
        return held if self._engine_key == fingerprint(plan, placement_only=True) else None

    def _switch(self, run: _Run, plan: Plan) -> None:
        """Run under ``plan``: reload the model only if its placement changed."""
        run.plan, run.engine, run.prompt = plan, None, None  # drop references before a reload
        engine = run.engine = self._engine_for(run.job_id, run.ref, plan)
        if (engine.plan.batch_size, engine.plan.max_chunk_chars) == (plan.batch_size, plan.max_chunk_chars):
            run.plan = engine.plan  # loading calibrates a GPU plan: its memory figures are now measured
        prepared = run.prepared
        if prepared is None:
            return  # a LoadJob: no voice to encode
        key = voice_key(prepared.reference, prepared.reference_rate, prepared.job.voice_text, run.ref.label,
                        plan.dtype)

        def encode() -> VoicePrompt:
            self._stage(run.job_id, Stage.ENCODING_VOICE, prepared.job.voice.name)
            return engine.voice_prompt(prepared.reference, prepared.reference_rate, prepared.job.voice_text)

        run.prompt = self.voices.fetch(key, engine.loaded.device, encode)

    def _engine_for(self, job_id: str, ref: ModelRef, plan: Plan) -> Engine:
        key = fingerprint(plan, placement_only=True)  # not the batch: a smaller batch needs no reload
        if self.engine is None or self._engine_key != key:
            self.unload()
            self._stage(job_id, Stage.LOADING, f"{ref.label}: {describe_plan(plan)}")
            started = time.perf_counter()
            self.engine, self._engine_key = Engine.load(ref, plan), key
            log.info("loaded %s in %.1f s", ref.label, time.perf_counter() - started)
            # What the loaded model holds, before any chunk: a status bar has a figure while the voice is
            # encoded and the first chunk generated (with a large model, the longest wait of a job).
            self.send(memory.sample(job_id, plan.device, self.settings.vram_limit_bytes))
        return self.engine

    def unload(self) -> None:
        """Drop the loaded model entirely; cached voices move to the CPU so no GPU memory stays behind."""
        engine, self.engine, self._engine_key = self.engine, None, None
        if engine is not None:
            engine.close()  # executors' hooks, streams and pinned buffers end here, not at GC
            log.info("unloaded %s", engine.ref.label)
        del engine
        self.voices.to_host()
        memory.release_all()

    def _send_started(self, run: _Run) -> None:
        self.send(JobStarted(run.job_id, run.chunks, run.submit.start_chunk,
                             describe_plan(run.plan), run.plan.reasons, run.ref.adapter.sample_rate))

    def _send_chunk(self, run: _Run, index: int, audio: np.ndarray) -> None:
        self.send(ChunkReady(run.job_id, index, len(run.chunks), run.chunks[index],
                             np.ascontiguousarray(audio, dtype=np.float32), run.ref.adapter.sample_rate))

    def _plan_changed(self, run: _Run, old: Plan, new: Plan, cause: PlanChangeCause, at_chunk: int,
                      message: str) -> None:
        log.warning("job %s: %s", run.job_id, message)
        self.send(PlanChanged(run.job_id, describe_plan(old), describe_plan(new), cause, at_chunk, message))

    def _notice(self, run: _Run, message: str) -> None:
        log.info("job %s: %s", run.job_id, message)
        self.send(Notice(run.job_id, message))

    def _detail(self, submit: Submit) -> str:
        """What "copy diagnostics" gives: versions, the job, the plan and the traceback being handled.

        The client appends the worker's last log lines.
        """
        job = submit.job
        lines = [f"vesper {_version('vesper')}, python {platform.python_version()}, torch {torch.__version__}, "
                 f"transformers {_version('transformers')}, huggingface_hub {_version('huggingface_hub')}, "
                 f"{platform.platform()}",
                 f"job: {type(job).__name__} model={job.model!r} hardware={job.hardware!r} from chunk "
                 f"{submit.start_chunk}" + (f", {len(job.text)} characters, voice {job.voice.name}"
                                            if isinstance(job, SpeakJob) else "")]
        run = self._run_state
        if run is not None:
            lines.append(f"plan: {describe_plan(run.plan)} (executor {run.plan.executor}, {run.plan.dtype})")
            lines.extend(f"  {reason}" for reason in run.plan.reasons)
        lines.append(traceback.format_exc().rstrip())
        return "\n".join(lines)


def needs_fresh_process(plan: Plan, lower: Plan) -> bool:
    """Whether stepping down from ``plan`` after out-of-memory should happen in a fresh worker process.

    Only a GPU plan whose lower plan places the model anew: a reload is needed anyway, and in a fresh
    process it meets a clean CUDA context instead of what the failed placement left. A smaller batch or
    shorter chunks keep the loaded model; a CPU plan ran short of RAM, which a new process does not add.
    """
    return plan.device.startswith("cuda") and fingerprint(plan, placement_only=True) != fingerprint(
        lower, placement_only=True)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"
