"""The worker process: one job at a time, models and voices cached, out-of-memory errors survived.

The client starts this in a child process (spawn) and talks to it over two pipes: commands in, events
out (``protocol``). Between chunks the worker looks at the commands, so a cancel stops a job within
one chunk (one micro-batch). Everything that can go wrong with a GPU happens here, where a crash costs
only a restart: the client resumes the job from its first unfinished chunk.
"""

from __future__ import annotations

import gc
import os
import queue
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection

import numpy as np
import torch
from transformers.utils import logging as hf_logging

from inference import jobs
from inference.adapters.base import VoicePrompt
from inference.engine import Engine
from inference.errors import VesperError
from inference.models import ModelRef
from inference.planner import Plan, describe_plan, fingerprint, step_down
from inference.settings import fault_spec
from inference.worker import faults, memory
from inference.worker.plan_memory import PlanMemory
from inference.worker.protocol import (
    Cancel,
    ChunkPiece,
    ChunkReady,
    Command,
    Event,
    JobCancelled,
    JobFailed,
    JobFinished,
    JobStarted,
    Notice,
    Shutdown,
    Submit,
    WorkerSettings,
)
from inference.worker.voices import VoiceCache, voice_key


def main(commands: Connection, events: Connection, settings: WorkerSettings, inject_faults: bool) -> None:
    """Entry point of the child process: one pipe in, one pipe out."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the client's to handle; it shuts us down
    # Progress bars from a background process garble the CLI's output, and tqdm's lock leaks a
    # semaphore whenever a worker is killed.
    hf_logging.disable_progress_bar()
    fault = faults.parse(fault_spec()) if inject_faults else None
    inbox: queue.Queue[Command] = queue.Queue()
    threading.Thread(target=_receive, args=(commands, inbox), name="vesper-commands", daemon=True).start()
    worker = Worker(settings, inbox, events.send, faults.FaultInjector(fault), PlanMemory.default())
    # What the imports created lives as long as the worker; frozen, it is skipped by the full collection
    # after every job (0.46 s -> 0.01 s per job here). Models are loaded later and stay collectable.
    gc.freeze()
    try:
        worker.serve()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the client went away: nobody is left to serve
    # Every event is already written. Tearing down an interpreter with torch and transformers loaded
    # took ~2 s here, which the client's shutdown (and a user closing the window) would wait for.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _receive(commands: Connection, inbox: queue.Queue[Command]) -> None:
    """Read commands as soon as they arrive, so the client never blocks writing to a busy worker."""
    try:
        while True:
            inbox.put(commands.recv())
    except (EOFError, OSError):
        inbox.put(Shutdown())  # the client is gone


class _Cancelled(Exception):
    """Raised between chunks when the running job was cancelled (or the worker is shutting down)."""


@dataclass
class _Run:
    """The running job's state; the plan, engine and prompt change when memory runs short."""

    submit: Submit
    prepared: jobs.PreparedJob
    chunks: list[str]
    plan: Plan
    engine: Engine | None = None
    prompt: VoicePrompt | None = None

    @property
    def ref(self) -> ModelRef:
        return self.prepared.ref


class Worker:
    """Runs submitted jobs; ``inbox`` delivers commands, ``send`` emits events."""

    def __init__(self, settings: WorkerSettings, inbox: queue.Queue[Command], send: Callable[[Event], None],
                 injector: faults.FaultInjector, plans: PlanMemory) -> None:
        self.settings = settings
        self.inbox = inbox
        self.send = send
        self.faults = injector
        self.plans = plans
        self.voices = VoiceCache(settings.voice_cache_size)
        self.meter = memory.MemoryMeter()
        self.engine: Engine | None = None
        self._engine_key: str | None = None
        self._queue: deque[Submit] = deque()
        self._running: str | None = None
        self._stop_running = False
        self._shutting_down = False

    def serve(self) -> None:
        """Run queued jobs in order until told to shut down."""
        while not self._shutting_down:
            if self._queue:
                self.run(self._queue.popleft())
            else:
                self._handle(self.inbox.get())

    def run(self, submit: Submit) -> None:
        """Run one job to its end and send its terminal event, after giving its memory back."""
        self._running, self._stop_running = submit.job_id, False
        self.meter.start()
        started = time.perf_counter()
        plan_label, event = None, None
        try:
            plan_label = self._run(submit)
        except _Cancelled:
            event = JobCancelled(submit.job_id)
        except VesperError as exc:
            event = JobFailed(submit.job_id, str(exc), user_error=True)
        except Exception:  # noqa: BLE001 - a bug must fail the job, not the worker
            event = JobFailed(submit.job_id, f"Internal error:\n{traceback.format_exc()}", user_error=False)
        self._running = None
        memory.release()  # after the except blocks: their tracebacks held the job's tensors
        if event is None:
            seconds = time.perf_counter() - started
            event = JobFinished(submit.job_id, plan_label or "", self.meter.finish(), seconds)
        self.send(event)

    def _handle(self, command: Command) -> None:
        if isinstance(command, Submit):
            self._queue.append(command)
        elif isinstance(command, Cancel):
            if command.job_id == self._running:
                self._stop_running = True
            elif any(s.job_id == command.job_id for s in self._queue):
                self._queue = deque(s for s in self._queue if s.job_id != command.job_id)
                self.send(JobCancelled(command.job_id))
        elif isinstance(command, Shutdown):
            self._shutting_down = self._stop_running = True

    def _check_commands(self) -> None:
        while True:
            try:
                self._handle(self.inbox.get_nowait())
            except queue.Empty:
                break
        if self._stop_running:
            raise _Cancelled

    def _run(self, submit: Submit) -> str:
        prepared = jobs.prepare(submit.job, self.settings.batch_size)
        chunks = list(submit.chunks) if submit.chunks else prepared.chunks
        plan = self.plans.recall(prepared.ref, prepared.hardware, prepared.plan)
        run = _Run(submit, prepared, chunks, plan)
        self._send_started(run)  # before loading, which can take long: the listener learns the chunks now
        if plan is not prepared.plan:
            self._notice(run, f"Using {describe_plan(plan)} for {run.ref.label}: a higher plan ran out of "
                              "memory on this machine before.")
        index = submit.start_chunk
        self._use(run, plan, "while loading the model")
        while index < len(chunks):
            self._check_commands()
            self._preflight(run, index)
            start = index - index % run.plan.batch_size  # fixed groups: a resumed job makes the same batches
            stop = min(start + run.plan.batch_size, len(chunks))
            audios = self._generate(run, start, stop, index)
            if audios is None:
                where = f"at chunk {index + 1} of {len(chunks)}"
                self._use(run, self._lower(run, run.plan, where), where)
                continue  # the same chunk again, under the lower plan
            for offset, audio in enumerate(audios):
                if start + offset >= index:
                    self._send_chunk(run, start + offset, audio)
            index = stop
            self.meter.sample()
        return describe_plan(run.plan)

    def _generate(self, run: _Run, start: int, stop: int, first: int) -> list[np.ndarray] | None:
        """The audio of chunks ``start..stop``, or None when memory ran out.

        Where the engine streams, pieces of chunks from ``first`` on go out as they come (the ones before
        ``first`` were delivered before a resume and are only recomputed to keep the batch the same).
        """
        assert run.engine is not None and run.prompt is not None
        try:
            self.faults.before_chunks(stop - start)
            texts = run.chunks[start:stop]
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
            return None  # the traceback, and the tensors its frames hold, end with this block

    def _stream(self, run: _Run, start: int, first: int, count: int,
                pieces: Iterator[tuple[int, np.ndarray]]) -> list[np.ndarray]:
        """Forward streamed pieces as ``ChunkPiece`` events and return each chunk's whole audio."""
        parts: list[list[np.ndarray]] = [[] for _ in range(count)]
        for row, samples in pieces:
            done = parts[row]
            if start + row >= first:
                offset = sum(len(p) for p in done)
                self.send(ChunkPiece(run.submit.job_id, start + row, offset, samples, run.engine.sample_rate))
            done.append(samples)
        return [np.concatenate(p) if p else np.zeros(0, dtype=np.float32) for p in parts]

    def _lower(self, run: _Run, plan: Plan, where: str) -> Plan:
        """The plan after ``plan`` ran out of memory, remembered for this model and machine."""
        memory.release()
        lower = step_down(plan, run.ref, run.prepared.hardware)
        if lower is None:
            raise VesperError(f"Ran out of memory {where} even with the most frugal plan "
                              f"({describe_plan(plan)}): close other programs or choose a smaller model.")
        self.plans.remember(run.ref, run.prepared.hardware, lower)
        self._notice(run, f"Ran out of memory {where}: continuing with {describe_plan(lower)} "
                          f"(remembered for {run.ref.label} on this machine).")
        return lower

    def _use(self, run: _Run, plan: Plan, where: str) -> None:
        """Switch to ``plan``, stepping further down while even loading it runs out of memory."""
        while True:
            try:
                self._switch(run, plan)
                return
            except Exception as exc:  # noqa: BLE001 - anything but out-of-memory is re-raised
                if not memory.is_out_of_memory(exc):
                    raise
            plan = self._lower(run, plan, where)

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
        lower: Plan | None = run.plan
        while lower is not None and memory.shortfall(lower, free, reserved) > 0:
            lower = step_down(lower, run.ref, run.prepared.hardware)
        if lower is None or lower is run.plan:
            return  # fits, or nothing fits: try anyway and let an out-of-memory error step down
        self._notice(run, f"Only {free / 2**30:.2f} GiB of GPU memory is free now (another program?): "
                          f"continuing from chunk {index + 1} with {describe_plan(lower)}.")
        self._use(run, lower, f"at chunk {index + 1} of {len(run.chunks)}")

    def _switch(self, run: _Run, plan: Plan) -> None:
        """Run under ``plan``: reload the model only if its placement changed."""
        run.plan, run.engine, run.prompt = plan, None, None  # drop references before a reload
        engine = run.engine = self._engine_for(run.ref, plan)
        if (engine.plan.batch_size, engine.plan.max_chunk_chars) == (plan.batch_size, plan.max_chunk_chars):
            run.plan = engine.plan  # loading calibrates a GPU plan: its memory figures are now measured
        prepared = run.prepared
        key = voice_key(prepared.reference, prepared.reference_rate, prepared.job.voice_text, run.ref.label,
                        plan.dtype)
        run.prompt = self.voices.fetch(key, engine.loaded.device, lambda: engine.voice_prompt(
            prepared.reference, prepared.reference_rate, prepared.job.voice_text))

    def _engine_for(self, ref: ModelRef, plan: Plan) -> Engine:
        key = fingerprint(plan, placement_only=True)  # not the batch: a smaller batch needs no reload
        if self.engine is None or self._engine_key != key:
            self.unload()
            self.engine, self._engine_key = Engine.load(ref, plan), key
        return self.engine

    def unload(self) -> None:
        """Drop the loaded model entirely; cached voices move to the CPU so no GPU memory stays behind."""
        engine, self.engine, self._engine_key = self.engine, None, None
        for held in engine.keep if engine is not None else ():
            held.close()  # executors' hooks, streams and pinned buffers end here, not at GC
        del engine
        self.voices.to_host()
        memory.release_all()

    def _send_started(self, run: _Run) -> None:
        self.send(JobStarted(run.submit.job_id, tuple(run.chunks), run.submit.start_chunk,
                             describe_plan(run.plan), run.plan.reasons, run.ref.adapter.sample_rate))

    def _send_chunk(self, run: _Run, index: int, audio: np.ndarray) -> None:
        self.send(ChunkReady(run.submit.job_id, index, len(run.chunks), run.chunks[index],
                             np.ascontiguousarray(audio, dtype=np.float32), run.ref.adapter.sample_rate))

    def _notice(self, run: _Run, message: str) -> None:
        self.send(Notice(run.submit.job_id, message))

