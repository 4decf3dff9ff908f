"""A narration job: the plain-data request the CLI, the worker and the GUI share, and how it runs.

Everything the user can get wrong is checked in ``prepare`` before a model is loaded, so bad input
fails in a second with one clear message and nothing half-written.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from inference import hardware as hw
from inference.audio import read_reference
from inference.engine import Engine, chunk_seed
from inference.models import ModelRef, describe
from inference.planner import Plan, Workload, make_plan
from inference.text import chunk_text
from inference.worker.protocol import SpeakJob  # torch-free, so the GUI can build jobs


@dataclass(frozen=True)
class PreparedJob:
    job: SpeakJob
    ref: ModelRef
    plan: Plan
    chunks: list[str]
    reference: np.ndarray
    reference_rate: int
    hardware: hw.Hardware  # what the plan was made for; the worker steps down against it


@dataclass(frozen=True)
class ChunkAudio:
    index: int
    total: int
    text: str
    audio: np.ndarray
    sample_rate: int


def prepare(job: SpeakJob, batch_size: int = 1) -> PreparedJob:
    """Validate input, resolve the model and plan; raises ``VesperError`` with a clear message.

    ``batch_size`` is how many chunks the caller decodes together (the worker's micro-batch).
    """
    chunk_text(job.text, job.chunk_chars)  # rejects empty text before anything slow happens
    reference, rate = read_reference(job.voice)
    ref = describe(job.model)
    hardware = hw.resolve(job.hardware)
    plan = make_plan(ref, hardware, Workload(job.chunk_chars, batch_size))
    chunks = list(job.chunks) if job.chunks else chunk_text(job.text, plan.max_chunk_chars)
    if job.seeds is not None and len(job.seeds) != len(chunks):
        raise ValueError(f"SpeakJob has {len(job.seeds)} seeds for {len(chunks)} chunks")
    return PreparedJob(job, ref, plan, chunks, reference, rate, hardware)


def seed_of(job: SpeakJob, index: int) -> int:
    """Chunk ``index``'s seed: pinned by the job (narration) or derived from the job's seed."""
    return job.seeds[index] if job.seeds is not None else chunk_seed(job.seed, index)


def synthesize(prepared: PreparedJob, engine: Engine, start: int = 0) -> Iterator[ChunkAudio]:
    """Generate the chunks from ``start`` on, one at a time, each from its own seed."""
    job = prepared.job
    prompt = engine.voice_prompt(prepared.reference, prepared.reference_rate, job.voice_text)
    for index in range(start, len(prepared.chunks)):
        text = prepared.chunks[index]
        audio = engine.synthesize(prompt, text, seed_of(job, index))
        yield ChunkAudio(index, len(prepared.chunks), text, audio, engine.sample_rate)

