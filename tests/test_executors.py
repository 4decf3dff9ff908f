"""Executors: every one gives the resident output for the same seed, on the tiny checkpoints of every family.

The plans come from the real planner's ladder for a large test GPU, which holds one rung of every level
(resident, codec on the CPU, streamed layers, and the ZeRO levels, which fall back to accelerate's hooks
here because deepspeed is not installed). On the CPU the plans are moved to the CPU as they are: the
streamed executor's hooks still run (the CPU is host and compute device) and accelerate offloads to disk.

CPU results are compared to 1e-6, not bit for bit: a CPU BLAS matrix-vector product sums in an order
that depends on the weight's address modulo 16 bytes (memory-mapped safetensors are 4-byte aligned, the
executors' buffers 512-byte), which moves the last bit of a float32. On a GPU the same comparison is exact.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest
import torch

from inference import calibration, paths, registry
from inference.engine import Engine
from inference.errors import VesperError
from inference.executors import get
from inference.executors.deepspeed_support import installed as deepspeed_installed
from inference.executors.streamed_executor import LayerStream
from inference.hardware import GiB, Gpu, Hardware
from inference.models import describe
from inference.planner import Plan, Workload, candidates
from inference.planning import corrections

FAMILIES = list(registry.FAMILY_MODULES)
TEXT = "Hello there."
FRAMES = 6
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.CACHE_DIR_ENV, str(tmp_path / "cache"))


def _big_gpu() -> Hardware:
    gpu = Gpu(0, "Test GPU", 80 * GiB, 80 * GiB, (8, 0), 4, 16, "test-driver")
    return Hardware("Linux", 8, 64 * GiB, 64 * GiB, (gpu,), "test")


def _rungs(ref) -> dict[tuple[str, str], Plan]:
    """The first plan of every (level, executor) in the ladder: one of each way to run."""
    rungs: dict[tuple[str, str], Plan] = {}
    for plan in candidates(ref, _big_gpu(), Workload(80, 1)):
        rungs.setdefault((plan.level, plan.executor), plan)
    return rungs


def _on_cpu(plan: Plan) -> Plan:
    device_map = {k: "cpu" if v.startswith("cuda") else v for k, v in plan.device_map.items()}
    return replace(plan, device="cpu", dtype="float32", device_map=device_map)


def _generate(ref, plan: Plan, voice, transcript: str) -> tuple[np.ndarray, Engine]:
    engine = Engine.load(ref, plan)
    prompt = engine.voice_prompt(*voice, transcript)
    torch.manual_seed(3)
    with torch.inference_mode():
        audio = ref.adapter.generate(engine.loaded, prompt, [TEXT], max_frames=FRAMES)[0]
    return audio, engine


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_every_executor_on_the_cpu_gives_the_resident_output(family, tiny_checkpoint, reference_voice,
                                                             reference_transcript):
    ref = describe(str(tiny_checkpoint(family)))
    rungs = _rungs(ref)
    assert {("resident", "resident"), ("streamed", "streamed"), ("zero3-cpu", "accelerate"),
            ("zero3-nvme", "accelerate")} <= set(rungs)
    expected, _ = _generate(ref, _on_cpu(rungs["resident", "resident"]), reference_voice, reference_transcript)
    assert expected.size > 0
    variants = [_on_cpu(p) for k, p in rungs.items() if k != ("resident", "resident")]
    # One GPU slot for two layers: every layer evicts the other, so every pass copies every layer.
    variants.append(replace(_on_cpu(rungs["streamed", "streamed"]), offload={"slots": 1}))
    towers = tuple(p for p, _ in ref.shape.at("float32").tower_layers)
    if towers:  # VibeVoice's per-frame towers stream through the same ring when the backbone alone is not enough
        streamed = _on_cpu(rungs["streamed", "streamed"])
        variants.append(replace(streamed, streamed_layers=towers + streamed.streamed_layers))
    for plan in variants:
        audio, engine = _generate(ref, plan, reference_voice, reference_transcript)
        assert audio.shape == expected.shape, (plan.level, plan.executor)
        np.testing.assert_allclose(audio, expected, rtol=0, atol=1e-6, err_msg=f"{plan.level}/{plan.executor}")
        if plan.executor == "streamed":
            stream = next(k for k in engine.keep if isinstance(k, LayerStream))
            assert stream.loads >= (2 if plan.offload.get("slots") != 1 else 2 * FRAMES)


def test_streamed_layers_point_at_host_memory_outside_forward_and_use_two_slots(tiny_checkpoint):
    ref = describe(str(tiny_checkpoint("csm")))
    plan = _on_cpu(_rungs(ref)["streamed", "streamed"])
    engine = Engine.load(ref, plan)
    stream = next(k for k in engine.keep if isinstance(k, LayerStream))
    assert len(stream.slots) == min(2, len(plan.streamed_layers))
    slot_ptrs = {s.data_ptr() for s in stream.slots}
    layer = engine.loaded.model.get_submodule(plan.streamed_layers[0])
    with torch.inference_mode():
        embeds = torch.randn(1, 4, engine.loaded.model.backbone_model.config.hidden_size)
        engine.loaded.model.backbone_model(inputs_embeds=embeds)
    for param in layer.parameters():
        assert param.untyped_storage().data_ptr() not in slot_ptrs
        assert param.untyped_storage().data_ptr() == stream.packed[0].host.untyped_storage().data_ptr()


def test_a_deepspeed_plan_without_deepspeed_fails_cleanly(tiny_checkpoint):
    """The planner never picks DeepSpeed here; a plan made elsewhere that names it says what to do."""
    assert not deepspeed_installed()
    ref = describe(str(tiny_checkpoint("csm")))
    plan = replace(_rungs(ref)["zero3-cpu", "accelerate"], executor="deepspeed")
    with pytest.raises(VesperError, match="deepspeed is not installed|DeepSpeed, which is not installed"):
        Engine.load(ref, plan)
    assert all(p.executor != "deepspeed" for p in candidates(ref, _big_gpu()))


def test_unknown_executor_is_refused():
    with pytest.raises(ValueError, match="unknown executor"):
        get("magic")


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize("family", FAMILIES)
def test_every_executor_on_the_gpu_gives_the_resident_output_bit_for_bit(family, tiny_checkpoint, reference_voice,
                                                                          reference_transcript):
    """Same placement, same kernels: resident, streamed (two slots and one), accelerate and DeepSpeed.

    The codec-on-CPU rung computes the codec in fp32 on another device, so it is compared by correlation.
    """
    ref = describe(str(tiny_checkpoint(family)))
    hardware = _big_gpu()
    rungs: dict[tuple[str, str], Plan] = {}
    for executor in (None, "accelerate", "deepspeed") if deepspeed_installed() else (None, "accelerate"):
        for plan in candidates(ref, hardware, Workload(80, 1), executor):
            rungs.setdefault((plan.level, plan.executor), plan)
    rungs = {k: replace(p, device="cuda:0") for k, p in rungs.items() if p.device != "cpu"}
    if deepspeed_installed():
        assert any(p.executor == "deepspeed" for p in rungs.values())
    expected, _ = _generate(ref, rungs["resident", "resident"], reference_voice, reference_transcript)
    variants = [p for k, p in rungs.items() if k != ("resident", "resident")]
    variants.append(replace(rungs["streamed", "streamed"], offload={"slots": 1}))
    for plan in variants:
        audio, _ = _generate(ref, plan, reference_voice, reference_transcript)
        assert audio.shape == expected.shape, (plan.level, plan.executor)
        if plan.cpu_islands:  # fp32 on the CPU against bf16 on the GPU: the same audio, not the same bits
            assert np.corrcoef(audio, expected)[0, 1] > 0.99, f"{plan.level}/{plan.executor}"
        else:
            assert np.array_equal(audio, expected), f"{plan.level}/{plan.executor}"
        torch.cuda.empty_cache()


@cuda
@pytest.mark.cuda
def test_calibration_probes_once_within_ten_seconds_then_reads_the_record(tiny_checkpoint):
    ref = describe(str(tiny_checkpoint("vibevoice")))
    plan = replace(_rungs(ref)["streamed", "streamed"], device="cuda:0")
    placed = get(plan.executor).load(ref, plan, ref.local_path)
    started = time.perf_counter()
    measured = calibration.calibrate(plan, ref, placed.loaded)
    assert time.perf_counter() - started < 10
    assert measured.calibrated and corrections.lookup(plan)["measured_bytes"] > 0
    started = time.perf_counter()
    again = calibration.calibrate(plan, ref, placed.loaded)
    assert time.perf_counter() - started < 0.1
    assert again.memory == measured.memory
