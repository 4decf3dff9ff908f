"""Executors: every one gives the resident output for the same seed, on the tiny checkpoints of every family.

The plans come from the real planner's ladder for a large test GPU, which holds one rung of every level
(resident, codec on the CPU, streamed layers from pinned memory and from the checkpoint's memory-mapped
files, and ZeRO-3 in RAM, which falls back to accelerate's hooks here because deepspeed is not installed;
accelerate's disk offload is the ladder's ``zero3-nvme`` rung when accelerate is forced). On the CPU the
plans are moved to the CPU as they are: the streamed executor's hooks still run (the CPU is host and compute
device) and accelerate offloads to disk.

CPU results are compared to 1e-6, not bit for bit: a CPU BLAS matrix-vector product sums in an order
that depends on the weight's address modulo 16 bytes (memory-mapped safetensors are 4-byte aligned, the
executors' buffers 512-byte), which moves the last bit of a float32. On a GPU the same comparison is exact.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from inference import calibration, paths, registry
from inference.engine import Engine
from inference.errors import VesperError
from inference.executors import get
from inference.executors import mapped as mapped_layers
from inference.executors.deepspeed_support import installed as deepspeed_installed
from inference.executors.streamed_executor import LayerStream
from inference.hardware import GiB, Gpu, Hardware
from inference.models import describe
from inference.planner import Plan, Workload, candidates
from inference.planning import corrections

FAMILIES = list(registry.FAMILY_MODULES)
TEXT = "Hello there."
FRAMES = 6
# The CPU executors compute the same operations on the same weights; a weight at another address (a streamed
# layer's slot, a fused projection built from it) can take another oneDNN kernel, whose float32 sums round
# differently: 1.7e-6 measured (Pocket TTS, streamed). Anything placed or computed differently is far larger.
SAME_ON_CPU = 1e-5
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.CACHE_DIR_ENV, str(tmp_path / "cache"))


def _big_gpu() -> Hardware:
    gpu = Gpu(0, "Test GPU", 80 * GiB, 80 * GiB, (8, 0), 4, 16, "test-driver")
    return Hardware("Linux", 8, 64 * GiB, 64 * GiB, (gpu,), "test")


def _rungs(ref, executor: str | None = None) -> dict[tuple[str, str], Plan]:
    """The first plan of every (level, executor) in the ladder: one of each way to run."""
    rungs: dict[tuple[str, str], Plan] = {}
    for plan in candidates(ref, _big_gpu(), Workload(80, 1), executor):
        rungs.setdefault((plan.level, plan.executor), plan)
    return rungs


def _one_slot(plan: Plan) -> Plan:
    """One GPU slot for two layers: every layer evicts the other, so every pass copies every layer."""
    return replace(plan, offload={**plan.offload, "slots": 1})


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
            ("streamed-disk", "streamed")} <= set(rungs)
    expected, _ = _generate(ref, _on_cpu(rungs["resident", "resident"]), reference_voice, reference_transcript)
    assert expected.size > 0
    variants = [_on_cpu(p) for k, p in rungs.items() if k != ("resident", "resident")]
    variants += [_one_slot(_on_cpu(rungs[level, "streamed"])) for level in ("streamed", "streamed-disk")]
    variants.append(_on_cpu(_rungs(ref, "accelerate")["zero3-nvme", "accelerate"]))  # accelerate's disk offload
    towers = tuple(p for p, _ in ref.shape.at("float32").tower_layers)
    for level in ("streamed", "streamed-disk") if towers else ():  # VibeVoice's per-frame towers stream through
        streamed = _on_cpu(rungs[level, "streamed"])  # the same ring when the backbone alone is not enough
        variants.append(replace(streamed, streamed_layers=towers + streamed.streamed_layers))
    for plan in variants:
        audio, engine = _generate(ref, plan, reference_voice, reference_transcript)
        assert audio.shape == expected.shape, (plan.level, plan.executor)
        np.testing.assert_allclose(audio, expected, rtol=0, atol=SAME_ON_CPU, err_msg=f"{plan.level}/{plan.executor}")
        if plan.executor == "streamed":
            stream = next(k for k in engine.keep if isinstance(k, LayerStream))
            assert stream.mapped == plan.from_disk
            assert stream.loads >= (2 if plan.offload.get("slots") != 1 else 2 * FRAMES)


def _mapped_ranges(folder) -> list[tuple[int, int]]:
    """Address ranges of this process's memory maps of ``folder``'s safetensors files (Linux)."""
    ranges = []
    for line in open("/proc/self/maps"):
        fields = line.split()
        if len(fields) >= 6 and fields[5].startswith(str(folder)) and fields[5].endswith(".safetensors"):
            low, high = (int(x, 16) for x in fields[0].split("-"))
            ranges.append((low, high))
    return ranges


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process's memory maps from /proc")
@pytest.mark.parametrize("family", FAMILIES)
def test_layers_streamed_from_disk_are_the_checkpoints_mapped_tensors(family, tiny_checkpoint, reference_voice,
                                                                      reference_transcript):
    """Outside forward a disk-streamed layer's tensors are views of the checkpoint's own memory-mapped file
    (never a copy in RAM, never an offload folder), and stay so after generating; with fp16 or bf16 storage and
    fp32 compute (old GPUs, CPUs short of RAM) the fp32 checkpoint's layers are converted on their way into the
    slot and upcast there, giving the resident plan's audio of the same dtypes."""
    folder = tiny_checkpoint(family)
    ref = describe(str(folder))
    rungs = _rungs(ref)
    plan = _on_cpu(rungs["streamed-disk", "streamed"])
    for storage in ("bfloat16", "float16"):
        resident = replace(_on_cpu(rungs["resident", "resident"]), dtype=storage, compute_dtype="float32")
        expected, _ = _generate(ref, resident, reference_voice, reference_transcript)
        audio, engine = _generate(ref, replace(plan, dtype=storage, compute_dtype="float32"), reference_voice,
                                  reference_transcript)
        np.testing.assert_allclose(audio, expected, rtol=0, atol=1e-6, err_msg=storage)
        stream = next(k for k in engine.keep if isinstance(k, LayerStream))
        assert stream.mapped and stream.convert == {torch.float32: getattr(torch, storage)} and not stream.staging
        ranges = _mapped_ranges(folder)
        for path in plan.streamed_layers:
            for name, param in engine.loaded.model.get_submodule(path).named_parameters():
                assert param.dtype == torch.float32, name  # as the checkpoint stores it
                assert any(low <= param.data_ptr() < high for low, high in ranges), f"{path}.{name} is not mapped"


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
    variants += [_one_slot(rungs[level, "streamed"]) for level in ("streamed", "streamed-disk")]
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


LAYERS, WIDTH = 8, 2048  # eight 2048x2048 fp32 layers: 16 MiB each, 128 MiB in all


def _anonymous_growth(folder: str, mapped: bool) -> int:
    """In a fresh interpreter: bytes of anonymous memory (RssAnon) gained by streaming the stack of layers saved
    in ``folder`` through two slots on the CPU and running it once, from the mapped files or packed in RAM."""
    def rss_anon() -> int:
        line = next(x for x in open("/proc/self/status") if x.startswith("RssAnon:"))
        return int(line.split()[1]) * 1024

    with torch.device("meta"):
        model = torch.nn.Sequential(*(torch.nn.Linear(WIDTH, WIDTH, bias=False) for _ in range(LAYERS)))
    before = rss_anon()
    paths = tuple(str(i) for i in range(LAYERS))
    convert = mapped_layers.bind_layers(model, paths, Path(folder), torch.float32)
    stream = LayerStream(list(model), torch.device("cpu"), 2, mapped, convert)
    with torch.inference_mode():
        model(torch.ones(1, WIDTH))
    assert stream.loads >= LAYERS  # and the first again, prefetched for the next pass
    return rss_anon() - before


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads RssAnon from /proc")
def test_layers_streamed_from_disk_take_no_ram_of_their_own(tmp_path):
    """Streaming from the mapped files gains about the two slots' worth of anonymous memory; packing the same
    layers into host buffers (the pinned executor) gains all of them. RSS as a whole is not compared: it counts
    the mapped file's pages the page cache holds, which the OS takes back under pressure."""
    torch.manual_seed(0)
    save_file({f"{i}.weight": torch.randn(WIDTH, WIDTH) for i in range(LAYERS)}, str(tmp_path / "model.safetensors"))
    layers = LAYERS * WIDTH * WIDTH * 4
    growth = {}
    for mapped in (True, False):
        code = (f"from tests.test_executors import _anonymous_growth\n"
                f"print(_anonymous_growth({str(tmp_path)!r}, {mapped}))")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                              cwd=Path(__file__).resolve().parent.parent)
        assert done.returncode == 0, done.stderr
        growth[mapped] = int(done.stdout.split()[-1])
    slots = 2 * layers // LAYERS
    assert growth[True] < slots + layers // 4, growth  # the slots, and nothing like the layers
    assert growth[False] > layers, growth  # every layer copied into RAM, plus the slots
