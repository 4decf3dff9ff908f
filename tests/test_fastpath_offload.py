"""The fast path on offload plans: with backbone layers streamed from host memory the language model is
stepped through the streamed executor's hooks, the rest of the frame stays on the fast path, and the
audio is the resident fast path's (same seeds, same per-chunk noise). On the CPU the streamed
executor's hooks run with the CPU as host and compute device, as in test_executors."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from inference import paths
from inference.engine import Engine
from inference.executors import get as executor
from inference.executors.streamed_executor import LayerStream
from inference.fastpath import open_session, support
from inference.hardware import PRESETS, GiB, Gpu, Hardware
from inference.models import describe
from inference.planner import Workload, candidates

TEXTS = ["Good morning.", "A second, somewhat longer chunk."]
FRAMES = 6


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.CACHE_DIR_ENV, str(tmp_path / "cache"))


def _rungs(ref) -> dict[str, object]:
    """The first plan of each level for a large GPU (one rung of every level, as in test_executors)."""
    gpu = Gpu(0, "Test GPU", 80 * GiB, 80 * GiB, (8, 0), 4, 16, "test-driver")
    rungs = {}
    for plan in candidates(ref, Hardware("Linux", 8, 64 * GiB, 64 * GiB, (gpu,), "test"), Workload(80, 1)):
        rungs.setdefault(plan.level, plan)
    return rungs


def _on_cpu(plan):
    device_map = {k: "cpu" if v.startswith("cuda") else v for k, v in plan.device_map.items()}
    return replace(plan, device="cpu", dtype="float32", device_map=device_map)


@pytest.mark.parametrize("family", ["csm", "vibevoice"])
def test_streamed_plan_steps_the_model_through_its_executor_and_keeps_the_audio(
        family, tiny_checkpoint, reference_voice, reference_transcript):
    path = tiny_checkpoint(family)
    ref = describe(str(path))
    rungs = {level: _on_cpu(plan) for level, plan in _rungs(ref).items()}
    # One GPU slot for the streamed layers: every layer evicts the other, so every step copies them in.
    streamed = rungs["streamed"] = replace(rungs["streamed"], offload={"slots": 1})
    assert len(streamed.streamed_layers) >= 2 and support(ref.adapter, plan=streamed).model_step
    audio = {}
    for level, model_step in (("resident", False), ("streamed", True)):
        placed = executor(rungs[level].executor).load(ref, rungs[level], path)
        prompt = audio.setdefault("prompt", ref.adapter.build_voice_prompt(
            placed.loaded, *reference_voice, reference_transcript))
        session = open_session(ref.adapter, placed.loaded, 2, 256, model_step=model_step)
        audio[level] = session.generate(prompt, TEXTS, [4, 5], max_frames=FRAMES)
        if model_step:
            stream = next(k for k in placed.keep if isinstance(k, LayerStream))
            assert stream.loads >= 2 * FRAMES  # the streamed layers came in at every step
    for resident, stepped in zip(audio["resident"], audio["streamed"], strict=True):
        assert len(resident) == len(stepped) > 0
        np.testing.assert_allclose(stepped, resident, atol=1e-4)


def test_vibevoice_towers_streamed_too_are_stepped_after_the_graphed_draw(tiny_checkpoint, reference_voice):
    """When the towers' widest layers stream as well (a 4 GB card), the frame's decode and re-encode run
    eagerly with the language model, through the same ring of slots; the audio stays the resident one's."""
    path = tiny_checkpoint("vibevoice")
    ref = describe(str(path))
    rungs = {level: _on_cpu(plan) for level, plan in _rungs(ref).items()}
    towers = tuple(p for p, _ in ref.shape.at("float32").tower_layers)
    assert towers
    streamed = replace(rungs["streamed"], streamed_layers=towers + rungs["streamed"].streamed_layers)
    audio = {}
    for plan, options in ((rungs["resident"], {}), (streamed, {"model_step": True, "codec_step": True})):
        placed = executor(plan.executor).load(ref, plan, path)
        prompt = audio.setdefault("prompt", ref.adapter.build_voice_prompt(placed.loaded, *reference_voice, None))
        session = open_session(ref.adapter, placed.loaded, 2, 256, **options)
        audio[plan.level] = session.generate(prompt, TEXTS, [4, 5], max_frames=FRAMES)
        if options:
            assert session.decoder.codec_step
            stream = next(k for k in placed.keep if isinstance(k, LayerStream))
            assert stream.loads >= len(streamed.streamed_layers) * FRAMES // 2
    for resident, stepped in zip(audio["resident"], audio["streamed"], strict=True):
        assert len(resident) == len(stepped) > 0
        np.testing.assert_allclose(stepped, resident, atol=1e-4)


def test_plans_say_where_the_fast_path_runs():
    ref = describe("csm-1b")
    plans = {p.level: p for p in reversed(candidates(ref, PRESETS["laptop-4060-8g"]))}
    for level, expected in (("resident", (True, False)), ("codec-cpu", (True, False)),
                            ("streamed", (True, True)), ("zero3-cpu", (False, False))):
        verdict = support(ref.adapter, plan=plans[level])
        assert (verdict.available, verdict.model_step) == expected, level
    assert "offload executor" in support(ref.adapter, plan=plans["streamed"]).reason


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("family", ["csm", "vibevoice"])
def test_engine_on_a_streamed_gpu_plan_graphs_the_frame_and_keeps_the_audio(
        family, tiny_checkpoint, reference_voice, reference_transcript):
    """VibeVoice also with its towers' layers streamed: their weights sit in host memory between frames, the
    session sees it and steps the decode and re-encode eagerly; the draw stays graphed."""
    ref = describe(str(tiny_checkpoint(family)))
    rungs = {level: replace(plan, dtype="float32") for level, plan in _rungs(ref).items()}
    towers = tuple(p for p, _ in ref.shape.at("float32").tower_layers)
    if towers:
        rungs["towers"] = replace(rungs["streamed"], streamed_layers=towers + rungs["streamed"].streamed_layers)
    audio = {}
    for level in ("resident", "streamed") + (("towers",) if towers else ()):
        engine = Engine.load(ref, rungs[level])
        assert engine.fast is not None and engine.fast.decoder.runner.graph is not None
        assert engine.fast.decoder.model_step == (level != "resident")
        assert getattr(engine.fast.decoder, "codec_step", False) == (level == "towers")
        prompt = audio.setdefault("prompt", engine.voice_prompt(*reference_voice, reference_transcript))
        audio[level] = engine.synthesize_batch(prompt, TEXTS, [4, 5])
    # The ladder's streamed rung also decodes CSM's codec on the CPU: same codes, other convolution arithmetic
    # (cuDNN's TF32 on the GPU), so the waveforms are compared by correlation.
    for level in ("streamed", "towers") if towers else ("streamed",):
        for resident, stepped in zip(audio["resident"], audio[level], strict=True):
            assert len(resident) == len(stepped) > 0
            assert np.corrcoef(resident, stepped)[0, 1] > 0.999, level
