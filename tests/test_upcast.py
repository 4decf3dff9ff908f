"""Weights stored in fp16, computed in fp32 (old GPUs): the resident and streamed executors upcast per module.

On the CPU, a tiny checkpoint whose weights are fp16 values (so storing them in fp16 loses nothing)
gives the same audio through an fp16-storage plan as through the fp32 resident plan: the arithmetic is
fp32 in both. The plans come from the real planner for a Pascal card (fp16 storage, fp32 compute).

Compared to 1e-5 (relative and absolute; the waveforms reach about 2): the upcast weights are fresh
tensors whose addresses differ from the memory-mapped fp32 ones, and a CPU BLAS sums in an order that
depends on alignment (see test_executors), which moved the last bits by up to 2e-6 here.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from inference import paths, registry
from inference.engine import Engine
from inference.hardware import GiB, Gpu, Hardware
from inference.models import describe
from inference.planner import Plan, Workload, candidates

TEXT = "Hello there."
FRAMES = 6


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.CACHE_DIR_ENV, str(tmp_path / "cache"))


def _pascal() -> Hardware:
    gpu = Gpu(0, "NVIDIA GeForce GTX 1080 Ti", 80 * GiB, 80 * GiB, (6, 1), 3, 16, "test-driver")
    return Hardware("Linux", 8, 64 * GiB, 64 * GiB, (gpu,), "test")


def _fp16_valued(source: Path, target: Path) -> Path:
    """A copy of the checkpoint whose floating-point weights are rounded to fp16 values (stored as before)."""
    shutil.copytree(source, target)
    for file in target.rglob("*.safetensors"):
        tensors = {k: v.half().to(v.dtype) if v.is_floating_point() else v for k, v in load_file(file).items()}
        save_file(tensors, file, metadata={"format": "pt"})
    return target


def _on_cpu(plan: Plan, **changes) -> Plan:
    device_map = {k: "cpu" if v.startswith("cuda") else v for k, v in plan.device_map.items()}
    return replace(plan, device="cpu", device_map=device_map, **changes)


def _audio(ref, plan: Plan, voice, transcript: str) -> np.ndarray:
    engine = Engine.load(ref, plan)
    prompt = engine.voice_prompt(*voice, transcript)
    torch.manual_seed(3)
    with torch.inference_mode():
        return ref.adapter.generate(engine.loaded, prompt, [TEXT], max_frames=FRAMES)[0]


@pytest.mark.parametrize("family", list(registry.FAMILY_MODULES))
def test_fp16_storage_with_fp32_compute_gives_the_fp32_audio(family, tiny_checkpoint, tmp_path, reference_voice,
                                                            reference_transcript):
    ref = describe(str(_fp16_valued(tiny_checkpoint(family), tmp_path / family)))
    ladder = candidates(ref, _pascal(), Workload(80, 1))
    upcast = {p.executor: p for p in ladder if p.compute_dtype == "float32" and p.dtype == "float16"}
    assert {"resident", "streamed"} <= set(upcast)
    expected = _audio(ref, _on_cpu(upcast["resident"], dtype="float32", compute_dtype=""), reference_voice,
                      reference_transcript)
    towers = tuple(p for p, _ in ref.shape.at("float16").tower_layers)
    if towers:  # VibeVoice's towers streamed too: their blocks upcast in their slots like backbone layers
        streamed = upcast["streamed"]
        backbone = tuple(p for p in streamed.streamed_layers if p not in towers)
        upcast["streamed with towers"] = replace(streamed, streamed_layers=towers + backbone)
    for executor, plan in upcast.items():
        audio = _audio(ref, _on_cpu(plan), reference_voice, reference_transcript)
        assert audio.shape == expected.shape, executor
        np.testing.assert_allclose(audio, expected, rtol=1e-5, atol=1e-5, err_msg=executor)
