"""The messages between the GUI/CLI and the worker process: plain picklable data, numpy at most.

The GUI imports this module, so it must never import torch (a test checks): audio travels as float32
numpy arrays, plans as their labels. Commands go to the worker, events come back; every event names
its job, so several jobs can be queued and a GUI can route events by job id.

A job's life, in order:

1. ``StageStarted`` for each stage it goes through (``Stage``: resolving, downloading, loading,
   planning, encoding the voice, generating, done); ``DownloadProgress`` per file while downloading;
2. ``JobStarted`` (its chunks and plan) once it is planned, before the model loads; a ``MemorySample``
   right after the model is loaded (the job that loads it, a ``LoadJob`` too), before any chunk;
3. while generating: ``ChunkPiece``s (streamed audio), one ``ChunkReady`` per chunk in order, a
   ``GenerationProgress`` after each chunk and a ``MemorySample`` at least once per chunk;
4. ``PlanChanged`` whenever the plan steps down (out of memory, NVML pre-flight, user), ``Notice`` for
   anything else worth saying;
5. exactly one of ``JobFinished``, ``JobFailed`` or ``JobCancelled``.

After a worker crash or hang the client restarts it: a ``WorkerRestarted`` and a second ``JobStarted``
(its ``start_chunk`` the first chunk not yet delivered) follow, and chunk indices carry on where they
stopped (none repeated or skipped). A worker also ends itself, after its ``PlanChanged``, when the lower
plan must load in a fresh process (out of GPU memory with another placement, or any other CUDA error):
the client then restarts it the same way, with ``RestartCause.FRESH_PROCESS``.

Two events concern the worker, not a job: ``Heartbeat`` (the client's watchdog) and ``WorkerLog`` (the
worker's log records, which the client writes into its own log and keeps for ``JobFailed.detail``);
the client consumes both and hands neither to its listener.

``LoadJob`` goes through the same queue and stages (resolving, downloading, loading) and ends in
``JobFinished``: it loads a model ahead of the first ``SpeakJob``. ``Unload`` frees the model and
answers ``ModelUnloaded``; ``UpdateSettings`` applies to the next job.
"""

from __future__ import annotations

import enum
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
    # Narration pins its own chunking and seeds (a project's chunk keys depend on them): ``chunks``
    # replaces splitting ``text``, ``seeds[i]`` replaces ``chunk_seed(seed, i)`` for chunk i.
    chunks: tuple[str, ...] | None = None
    seeds: tuple[int, ...] | None = None


@dataclass(frozen=True)
class LoadJob:
    """Resolve, download and load ``model`` for this machine now, so the first ``SpeakJob`` starts at once."""

    model: str = DEFAULT_MODEL
    hardware: str | None = None


@dataclass(frozen=True)
class WorkerSettings:
    """How the worker runs jobs; changed between jobs with ``UpdateSettings`` (no restart).

    ``max_batch`` chunks of a job are decoded together in one generate call (they share one decode
    loop and, under offload, one weight transfer per step). Groups are fixed by chunk index
    (0..N-1, N..2N-1, ...) so a resumed job reproduces the same audio. ``low_latency`` decodes one
    chunk at a time: the first audio comes sooner, the whole job finishes later.
    """

    max_batch: int = 4
    low_latency: bool = False
    voice_cache_size: int = 4  # encoded reference recordings kept per worker (LRU)
    vram_limit_bytes: int = 0  # plan for and cap the allocator at min(free VRAM, this); 0: no limit
    heartbeat_seconds: float = 1.0  # how often a live worker says so
    hang_seconds: float = 60.0  # the watchdog restarts a worker silent this long while a job runs
    # A cancelled job in a stage the worker cannot interrupt (loading weights, encoding the voice) ends
    # this long after the cancel by killing the worker; the client starts a fresh one.
    cancel_grace_seconds: float = 2.0

    @property
    def batch_size(self) -> int:
        return 1 if self.low_latency else max(1, self.max_batch)


# Commands: client -> worker.

@dataclass(frozen=True)
class Submit:
    """Run ``job`` from chunk ``start_chunk`` on; ``chunks`` pins the chunking when resuming."""

    job_id: str
    job: SpeakJob | LoadJob
    start_chunk: int = 0
    chunks: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Cancel:
    """Stop ``job_id`` in whatever stage it is (download, load, generation); it ends in ``JobCancelled``."""

    job_id: str


@dataclass(frozen=True)
class Unload:
    """Free the loaded model (VRAM back to the idle baseline) once the running job, if any, has ended."""

    request_id: str


@dataclass(frozen=True)
class UpdateSettings:
    """Use ``settings`` from the next job on."""

    settings: WorkerSettings


@dataclass(frozen=True)
class Shutdown:
    pass


Command = Submit | Cancel | Unload | UpdateSettings | Shutdown


# Events: worker -> client.


class Stage(str, enum.Enum):
    """The stages of a job, in the order a first run meets them (later runs skip downloading)."""

    RESOLVING = "resolving"  # which model, which files
    DOWNLOADING = "downloading"  # into the Hugging Face cache
    PLANNING = "planning"  # where each part runs; calibrating a new GPU plan happens while loading
    LOADING = "loading"  # weights into memory, placed by the plan's executor
    ENCODING_VOICE = "encoding voice"  # the reference recording through the model's codec
    GENERATING = "generating"
    DONE = "done"


class PlanChangeCause(str, enum.Enum):
    OUT_OF_MEMORY = "out of memory"  # a chunk or a load ran out of memory: remembered for this machine
    # A CUDA error other than out-of-memory: the process's CUDA state is not trusted, so the lower plan
    # (remembered, as for out-of-memory) runs in a fresh worker process.
    GPU_ERROR = "gpu error"
    PREFLIGHT = "preflight"  # NVML showed too little free memory before a chunk (another program took it)
    USER = "user"  # the user chose another plan


class RestartCause(str, enum.Enum):
    CRASHED = "crashed"  # the worker process died
    HUNG = "hung"  # no heartbeat for the watchdog's limit while a job ran: killed and replaced
    FRESH_PROCESS = "fresh process"  # the worker ended itself so that its job goes on in a new process


# How a worker that ends itself for ``RestartCause.FRESH_PROCESS`` exits, and why it did (for the message).
EXIT_TO_RELOAD = 75  # out of GPU memory and the lower plan places the model anew: load it in a clean process
EXIT_AFTER_GPU_ERROR = 76  # a CUDA error other than out-of-memory: go on with a fresh CUDA context
FRESH_PROCESS_EXITS = {
    EXIT_TO_RELOAD: "to load a lower plan in a fresh process after running out of GPU memory",
    EXIT_AFTER_GPU_ERROR: "after a CUDA error, to go on with a fresh CUDA context",
}


@dataclass(frozen=True)
class StageStarted:
    job_id: str
    stage: Stage
    detail: str = ""  # e.g. the model being resolved, the plan being loaded


@dataclass(frozen=True)
class DownloadProgress:
    """Bytes of one file of one repo, from huggingface_hub's own progress hooks."""

    job_id: str
    repo_id: str
    filename: str
    done_bytes: int
    total_bytes: int  # 0 when the hub did not say


@dataclass(frozen=True)
class GenerationProgress:
    """Sent after every chunk. ``speed`` is audio seconds per wall-clock second of generation."""

    job_id: str
    chunks_done: int
    chunks_total: int
    audio_seconds: float
    elapsed_seconds: float
    speed: float
    eta_seconds: float | None  # None until one chunk has been measured


@dataclass(frozen=True)
class PlanChanged:
    job_id: str
    from_plan: str
    to_plan: str
    cause: PlanChangeCause
    at_chunk: int  # the chunk (0-based) that runs first under the new plan
    message: str  # one readable sentence for a status bar


@dataclass(frozen=True)
class WorkerRestarted:
    job_id: str
    cause: RestartCause
    exit_code: int | None
    resume_chunk: int  # the first chunk (0-based) the new worker generates
    message: str


@dataclass(frozen=True)
class MemorySample:
    """The worker's memory now; CUDA and NVML fields are 0 on a CPU plan or without NVML."""

    job_id: str
    rss_bytes: int
    cuda_allocated_bytes: int = 0
    cuda_reserved_bytes: int = 0
    nvml_used_bytes: int = 0  # the whole GPU, every process (what the user sees in nvidia-smi)
    nvml_total_bytes: int = 0
    limit_bytes: int = 0  # the VRAM limit Vesper plans for (0: none beyond the GPU's size)


@dataclass(frozen=True)
class Heartbeat:
    """Sent by a live worker every ``WorkerSettings.heartbeat_seconds``; the client's watchdog reads it."""

    job_id: str = ""


@dataclass(frozen=True)
class WorkerLog:
    """One of the worker's log records (``logging`` level, logger name, formatted message)."""

    level: int
    logger: str
    message: str
    job_id: str = ""  # the job running when it was logged, if any


@dataclass(frozen=True)
class ModelUnloaded:
    request_id: str
    job_id: str = ""


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
    """``message`` is one line for the user, never a traceback; ``detail`` is for "copy diagnostics".

    ``user_error``: the message says what the user can fix (bad input, unknown model). ``detail`` holds
    the traceback, versions, plan and the worker's last log lines.
    """

    job_id: str
    message: str
    user_error: bool
    detail: str = ""


@dataclass(frozen=True)
class JobCancelled:
    job_id: str


Event = (StageStarted | DownloadProgress | JobStarted | ChunkPiece | ChunkReady | GenerationProgress | MemorySample
         | PlanChanged | WorkerRestarted | Notice | Heartbeat | WorkerLog | ModelUnloaded | JobFinished | JobFailed
         | JobCancelled)
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
