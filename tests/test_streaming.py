"""Audio of a chunk streamed while it is generated: engine pieces and the worker's ChunkPiece events.

The fast path only opens on GPU plans; here it is opened on the CPU (where it runs the same code
without CUDA graphs) to exercise the streaming logic end to end on CI.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inference import engine as engine_module
from inference import fastpath
from inference.engine import Engine
from inference.hardware import PRESETS
from inference.models import describe
from inference.planner import make_plan
from inference.worker.protocol import ChunkPiece, ChunkReady, JobFinished, SpeakJob
from tests.conftest import SAMPLE_TRANSCRIPT, SAMPLE_VOICE
from tests.test_worker import _local_worker, _run_local

TEXTS = ["Hello there.", "A second, slightly longer sentence."]


def _cpu_fast_session(ref, plan, loaded):
    capacity = fastpath.capacity_for(ref, plan.max_chunk_chars)
    return fastpath.open_session(ref.adapter, loaded, plan.batch_size, capacity), "fast decode on the CPU (test)"


@pytest.fixture
def csm_engine(tiny_checkpoint, reference_voice, monkeypatch):
    monkeypatch.setattr(engine_module, "_open_fast_session", _cpu_fast_session)
    ref = describe(str(tiny_checkpoint("csm")))
    engine = Engine.load(ref, make_plan(ref, PRESETS["cpu-16g"]))
    return engine, engine.voice_prompt(*reference_voice, SAMPLE_TRANSCRIPT)


def test_fast_engine_streams_pieces_that_add_up_to_the_whole_chunk(csm_engine):
    engine, prompt = csm_engine
    assert engine.fast is not None
    pieces: dict[int, list[np.ndarray]] = {0: [], 1: []}
    for row, samples in engine.stream_batch(prompt, TEXTS, [5, 6]):
        pieces[row].append(samples)
    whole = engine.synthesize_batch(prompt, TEXTS, [5, 6])
    for row in (0, 1):
        assert len(pieces[row]) > 1, "a chunk must arrive in several pieces, not only at the end"
        np.testing.assert_array_equal(np.concatenate(pieces[row]), whole[row])


def test_engine_without_fast_session_yields_each_chunk_whole(tiny_checkpoint, reference_voice):
    ref = describe(str(tiny_checkpoint("csm")))
    engine = Engine.load(ref, make_plan(ref, PRESETS["cpu-16g"]))
    prompt = engine.voice_prompt(*reference_voice, None)
    streamed = list(engine.stream_batch(prompt, TEXTS, [1, 2]))
    whole = engine.synthesize_batch(prompt, TEXTS, [1, 2])
    assert [row for row, _ in streamed] == [0, 1]
    for (_, samples), expected in zip(streamed, whole, strict=True):
        np.testing.assert_array_equal(samples, expected)


@pytest.mark.parametrize("threads", [None, "1"])
def test_cpu_decoder_choice_does_not_depend_on_the_thread_setting(threads, tiny_checkpoint, monkeypatch):
    """Only Pocket TTS's CPU tier takes the fast path on the CPU, whether or not OMP_NUM_THREADS is set."""
    if threads is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", threads)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for family in ("csm", "pocket_tts"):
            ref = describe(str(tiny_checkpoint(family)))
            engine = Engine.load(ref, make_plan(ref, PRESETS["cpu-16g"]))
            assert (engine.fast is not None) == (family == "pocket_tts")
        # physical cores by default; a user's OMP_NUM_THREADS leaves the count alone
        assert torch.get_num_threads() == (1 if threads else engine_module._physical_cores())
    finally:
        torch.set_num_threads(before)


def test_worker_sends_chunk_pieces_before_each_whole_chunk(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(engine_module, "_open_fast_session", _cpu_fast_session)
    worker, events = _local_worker(tmp_path)
    job = SpeakJob(" ".join(TEXTS), SAMPLE_VOICE, SAMPLE_TRANSCRIPT, str(tiny_checkpoint("csm")), seed=3,
                   hardware="cpu-16g", chunk_chars=40)
    produced = _run_local(worker, events, job)
    assert isinstance(produced[-1], JobFinished)
    ready = [e for e in produced if isinstance(e, ChunkReady)]
    assert [e.index for e in ready] == [0, 1]
    for chunk in ready:
        pieces = [e for e in produced if isinstance(e, ChunkPiece) and e.index == chunk.index]
        assert pieces and produced.index(pieces[-1]) < produced.index(chunk)
        offsets = np.cumsum([0] + [len(p.audio) for p in pieces[:-1]])
        assert [p.offset for p in pieces] == list(offsets)
        np.testing.assert_array_equal(np.concatenate([p.audio for p in pieces]), chunk.audio)
