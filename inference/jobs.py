"""A narration job: the plain-data request the CLI, the worker and the GUI share, and how it runs.

Everything the user can get wrong is checked in ``prepare`` before a model is loaded, so bad input
fails in a second with one clear message and nothing half-written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inference import hardware as hw
from inference.audio import read_reference
from inference.engine import Engine, chunk_seed
from inference.models import ModelRef, describe
from inference.planner import DEFAULT_CHUNK_CHARS, Plan, Workload, make_plan
from inference.registry import DEFAULT_MODEL
from inference.text import chunk_text

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


@dataclass(frozen=True)
class PreparedJob:
    job: SpeakJob
    ref: ModelRef
    plan: Plan
    chunks: list[str]
    reference: np.ndarray
    reference_rate: int


@dataclass(frozen=True)
class ChunkAudio:
    index: int
    total: int
    text: str
    audio: np.ndarray
    sample_rate: int


def prepare(job: SpeakJob) -> PreparedJob:
    """Validate input, resolve the model and plan; raises ``VesperError`` with a clear message."""
    chunk_text(job.text, job.chunk_chars)  # rejects empty text before anything slow happens
    reference, rate = read_reference(job.voice)
    ref = describe(job.model)
    plan = make_plan(ref, hw.resolve(job.hardware), Workload(job.chunk_chars))
    return PreparedJob(job, ref, plan, chunk_text(job.text, plan.max_chunk_chars), reference, rate)


def synthesize(prepared: PreparedJob, engine: Engine, start: int = 0) -> Iterator[ChunkAudio]:
    """Generate the chunks from ``start`` on, one at a time, each from its own seed."""
    job = prepared.job
    prompt = engine.voice_prompt(prepared.reference, prepared.reference_rate, job.voice_text)
    for index in range(start, len(prepared.chunks)):
        text = prepared.chunks[index]
        audio = engine.synthesize(prompt, text, chunk_seed(job.seed, index))
        yield ChunkAudio(index, len(prepared.chunks), text, audio, engine.sample_rate)


def join(chunks: list[ChunkAudio]) -> np.ndarray:
    """Concatenate chunk audio in order with a short pause between chunks."""
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    gap = np.zeros(int(CHUNK_GAP_SECONDS * chunks[0].sample_rate), dtype=np.float32)
    parts: list[np.ndarray] = []
    for chunk in sorted(chunks, key=lambda c: c.index):
        parts.extend([gap, chunk.audio] if parts else [chunk.audio])
    return np.concatenate(parts).astype(np.float32, copy=False)


def run(job: SpeakJob, on_chunk: Callable[[ChunkAudio], None] = lambda _: None) -> tuple[np.ndarray, int, Plan]:
    """Prepare, load and synthesize a whole job in this process."""
    prepared = prepare(job)
    engine = Engine.load(prepared.ref, prepared.plan)
    chunks = []
    for chunk in synthesize(prepared, engine):
        on_chunk(chunk)
        chunks.append(chunk)
    return join(chunks), engine.sample_rate, prepared.plan
