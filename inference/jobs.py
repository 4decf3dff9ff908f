"""A narration job: the plain-data request the CLI, the worker and the GUI share, and how it runs.

Everything the user can get wrong is checked in ``prepare`` before a model is loaded, so bad input
fails in a second with one clear message and nothing half-written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch

from inference import hardware as hw
from inference.audio import read_reference, trimmed_reference_notice
from inference.defaults import DEFAULT_CHUNK_CHARS
from inference.engine import Engine, chunk_seed
from inference.errors import BadInputError
from inference.models import ModelRef, describe
from inference.planner import Plan, Workload, make_plan
from inference.text import chunk_text
from inference.text_input import clean_text
from inference.worker.protocol import LoadJob, SpeakJob  # torch-free, so the GUI can build jobs


@dataclass(frozen=True)
class PreparedJob:
    job: SpeakJob
    ref: ModelRef
    plan: Plan
    chunks: list[str]
    reference: np.ndarray
    reference_rate: int
    hardware: hw.Hardware  # what the plan was made for; the worker steps down against it
    notices: tuple[str, ...] = ()  # said to the user when the job starts (a trimmed reference, say)


@dataclass(frozen=True)
class ChunkAudio:
    index: int
    total: int
    text: str
    audio: np.ndarray
    sample_rate: int


def prepare(job: SpeakJob, batch_size: int = 1,
            on_resolved: Callable[[ModelRef], None] = lambda ref: None, vram_limit_bytes: int = 0) -> PreparedJob:
    """Validate input, resolve the model and plan; raises ``VesperError`` with a clear message.

    ``batch_size`` is how many chunks the caller decodes together (the worker's micro-batch).
    ``on_resolved(ref)`` runs once the model is known, before planning: the worker downloads it there,
    as its own reported stage. ``vram_limit_bytes`` is the user's VRAM limit (0: none), planned for as
    the GPU's free memory.
    """
    text = clean_text(job.text)
    clean_text(job.voice_text or "", "The reference transcript")  # a lone surrogate would fail in the tokenizer
    chunk_text(text, job.chunk_chars)  # rejects empty text before anything slow happens
    reference, rate = read_reference(job.voice)
    ref, hardware = resolve(job.model, job.hardware, on_resolved, vram_limit_bytes)
    plan = make_plan(ref, hardware, Workload(job.chunk_chars, batch_size))
    chunks = list(job.chunks) if job.chunks else chunk_text(text, plan.max_chunk_chars)
    for chunk in job.chunks or ():  # pinned by narration, kept as given: only refused if unreadable
        clean_text(chunk)
    if job.seeds is not None and len(job.seeds) != len(chunks):
        raise ValueError(f"SpeakJob has {len(job.seeds)} seeds for {len(chunks)} chunks")
    return PreparedJob(job, ref, plan, chunks, reference, rate, hardware, _notices(job, ref))


def seed_of(job: SpeakJob, index: int) -> int:
    """Chunk ``index``'s seed: pinned by the job (narration) or derived from the job's seed."""
    return job.seeds[index] if job.seeds is not None else chunk_seed(job.seed, index)


def prepare_load(job: LoadJob, batch_size: int = 1, on_resolved: Callable[[ModelRef], None] = lambda ref: None,
                 vram_limit_bytes: int = 0) -> tuple[ModelRef, hw.Hardware, Plan]:
    """The model, machine and plan a ``SpeakJob`` of default-length chunks would get, to load ahead of it."""
    ref, hardware = resolve(job.model, job.hardware, on_resolved, vram_limit_bytes)
    return ref, hardware, make_plan(ref, hardware, Workload(DEFAULT_CHUNK_CHARS, batch_size))


def resolve(model: str, hardware: str | None, on_resolved: Callable[[ModelRef], None] = lambda ref: None,
            vram_limit_bytes: int = 0) -> tuple[ModelRef, hw.Hardware]:
    ref = describe(model)
    machine = hw.with_vram_limit(usable_here(hw.resolve(hardware), hardware), vram_limit_bytes)
    on_resolved(ref)
    return ref, machine


def usable_here(hardware: hw.Hardware, spec: str | None) -> hw.Hardware:
    """``hardware`` if this process can run a plan made for it; a GPU plan needs a PyTorch built with CUDA.

    A GPU that NVML sees on this machine but this PyTorch cannot use (a CPU-only build) is left out, so the
    job runs on the CPU; a ``--hardware`` description of a GPU is refused in one line instead of failing
    inside torch after the model was loaded.
    """
    if not hardware.gpus or torch.cuda.is_available():
        return hardware
    if spec is None:
        return replace(hardware, gpus=())
    raise BadInputError(f"--hardware {spec} describes an NVIDIA GPU, but this PyTorch has no CUDA, so that plan "
                        f"cannot run here: see it with `vesper plan --hardware {spec}`, or leave --hardware out "
                        "to run on this machine.")


def _notices(job: SpeakJob, ref: ModelRef) -> tuple[str, ...]:
    """What the user should know before a job runs: a trimmed reference, a missing transcript that matters."""
    notices = [trimmed_reference_notice(job.voice)]
    if ref.facts.needs_transcript and not (job.voice_text or "").strip():
        notices.append(f"{ref.label} clones a voice better when it knows what the reference says: pass its "
                       "transcript with --voice-text.")
    return tuple(n for n in notices if n)


def synthesize(prepared: PreparedJob, engine: Engine, start: int = 0) -> Iterator[ChunkAudio]:
    """Generate the chunks from ``start`` on, one at a time, each from its own seed."""
    job = prepared.job
    prompt = engine.voice_prompt(prepared.reference, prepared.reference_rate, job.voice_text)
    for index in range(start, len(prepared.chunks)):
        text = prepared.chunks[index]
        audio = engine.synthesize(prompt, text, seed_of(job, index))
        yield ChunkAudio(index, len(prepared.chunks), text, audio, engine.sample_rate)

