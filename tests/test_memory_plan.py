"""A plan for every machine: the VRAM limit, old GPUs' fp16 storage, bf16 CPU plans, the machines the
planner used to refuse, and ``vesper models``' verdicts. All on machine descriptions, no GPU needed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from inference import catalogue, paths, registry, speed
from inference.cli import main
from inference.dtypes import dtype_policy
from inference.errors import BadInputError
from inference.executors import upcast
from inference.families import Role
from inference.hardware import PRESETS, GiB, Gpu, Hardware, cpu_computes_bf16, with_vram_limit
from inference.models import describe
from inference.planner import CUDA_RUNTIME_BYTES, NoPlanFitsError, candidates, make_plan, usable_ram
from inference.planning import fit
from inference.planning.estimates import safety_margin
from inference.planning.shapes import stored
from inference.worker import memory
from inference.worker.process import cap_allocator

MODELS = list(registry.specs())
LIMITS = (4 * GiB, 6 * GiB)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path / "home"))  # no settings file of the developer's
    monkeypatch.delenv("VESPER_VRAM_LIMIT", raising=False)


def _card(name: str, total_gib: float, cc: tuple[int, int], free_gib: float | None = None) -> Gpu:
    total = int(total_gib * GiB)
    free = int(free_gib * GiB) if free_gib is not None else total - 256 * 2**20
    return Gpu(0, name, total, free, cc, 3, 16, "test-driver")


@pytest.mark.parametrize("text, expected", [("6GiB", 6 * GiB), ("6GB", 6 * 10**9), ("6144MiB", 6 * GiB),
                                            ("5.5", int(5.5 * GiB)), (" 4 gib ", 4 * GiB), ("512MB", 512 * 10**6)])
def test_sizes_are_read_as_typed(text, expected):
    from inference.units import parse_size

    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "lots", "-4GiB", "0", "6 GiBs", "6XB"])
def test_a_bad_size_is_one_sentence_saying_how_to_write_one(text):
    from inference.units import parse_size

    with pytest.raises(BadInputError, match=r"is not a size: give a positive one such as 6GiB"):
        parse_size(text, "--vram-limit")


@pytest.mark.parametrize("preset", [p for p in PRESETS if PRESETS[p].gpus])
@pytest.mark.parametrize("limit", LIMITS)
def test_the_vram_limit_is_honoured_for_every_model_and_preset(preset, limit):
    """Every rung of every ladder predicts a peak within the limit (CUDA context included), or none fits."""
    hardware = with_vram_limit(PRESETS[preset], limit)
    assert hardware.gpu.free_bytes == min(PRESETS[preset].gpu.free_bytes, limit)
    for model in MODELS:
        try:
            ladder = candidates(describe(model), hardware)
        except NoPlanFitsError:
            continue
        for plan in ladder:
            if plan.device != "cpu":
                assert plan.memory.cuda_context == CUDA_RUNTIME_BYTES
                assert plan.predicted_peak_bytes <= limit, (model, preset, plan.level)
                # What the worker's allocator cap leaves torch (limit less the runtime) covers the plan.
                assert plan.memory.allocator_peak <= limit - CUDA_RUNTIME_BYTES, (model, preset, plan.level)
        assert any("VRAM limit" in r for r in ladder[0].reasons) or ladder[0].device == "cpu"


def test_the_limit_comes_from_the_flag_then_the_environment_then_the_settings_file(monkeypatch, capsys):
    monkeypatch.setenv("VESPER_VRAM_LIMIT", "6GiB")
    assert main(["plan", "--model", "vibevoice-1.5b", "--hardware", "laptop-4060-8g", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["vram_budget_bytes"] == 6 * GiB
    assert main(["plan", "--model", "vibevoice-1.5b", "--hardware", "laptop-4060-8g", "--vram-limit", "5120MiB",
                 "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["vram_budget_bytes"] == 5 * GiB and plan["predicted_peak_bytes"] <= 5 * GiB
    assert main(["plan", "--hardware", "laptop-4060-8g", "--vram-limit", "lots"]) == 2
    assert "vesper: --vram-limit 'lots' is not a size" in capsys.readouterr().err


def test_the_worker_caps_its_allocator_to_the_limit_less_the_context():
    assert memory.allocator_fraction(6 * GiB, CUDA_RUNTIME_BYTES, 24 * GiB) == pytest.approx(
        (6 * GiB - CUDA_RUNTIME_BYTES) / (24 * GiB))
    assert memory.allocator_fraction(64 * GiB, CUDA_RUNTIME_BYTES, 24 * GiB) == 1.0
    # The pre-flight sees no more than the limit leaves beside the context and what torch holds.
    assert memory.free_under_limit(20 * GiB, 6 * GiB, 2 * GiB, CUDA_RUNTIME_BYTES) == 4 * GiB - CUDA_RUNTIME_BYTES
    assert memory.free_under_limit(3 * GiB, 6 * GiB, 0, CUDA_RUNTIME_BYTES) == 3 * GiB
    assert memory.free_under_limit(3 * GiB, 0, 2 * GiB, CUDA_RUNTIME_BYTES) == 3 * GiB
    cpu_plan = make_plan(describe("pocket-tts"), PRESETS["cpu-16g"])
    cap_allocator(cpu_plan, 4 * GiB)  # nothing to cap on the CPU, and no CUDA is touched
    assert not torch.cuda.is_initialized()


@pytest.mark.parametrize("preset", ["gtx1060-6g", "gtx1650-4g"])
def test_old_gpus_store_fp16_and_compute_fp32(preset):
    for model in ("pocket-tts", "csm-1b"):
        plan = make_plan(describe(model), PRESETS[preset])
        assert plan.device == "cuda:0" and plan.executor in ("resident", "streamed")
        assert (plan.dtype, plan.compute_dtype) == ("float16", "float32")
        assert all(c["compute_dtype"] == "float32" for c in plan.components.values())
    # Half the weights of fp32: CSM-1B is now resident on the 6 GB Pascal card.
    assert make_plan(describe("csm-1b"), PRESETS["gtx1060-6g"]).level == "resident"


def test_sliced_upcast_of_a_large_linear_layer_gives_the_fp32_result(monkeypatch):
    monkeypatch.setattr(upcast, "UPCAST_CHUNK_ELEMENTS", 64)  # the 640-weight projection: 4 rows per slice
    monkeypatch.setattr(upcast, "SMALL", 16)  # the norm's 16 weights settle in fp32; the rest stays fp16
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(10, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 40))
    model.half()
    reference = [p.detach().float().clone() for p in model.parameters()]
    ids = torch.tensor([[1, 2, 3]])
    upcast.settle_small(model, torch.float16, torch.float32)
    handles = upcast.upcast_per_layer(model, torch.float32)
    assert model[2].weight.dtype == torch.float16 and model[1].weight.dtype == torch.float32
    out = model(ids)
    plain = torch.nn.Sequential(torch.nn.Embedding(10, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 40))
    for param, value in zip(plain.parameters(), reference, strict=True):
        param.data = value
    assert out.dtype == torch.float32 and handles
    torch.testing.assert_close(out, plain(ids), rtol=1e-6, atol=1e-6)


def test_the_cpu_keeps_bf16_where_it_computes_it_and_upcasts_bf16_when_fp32_does_not_fit():
    assert cpu_computes_bf16("fpu sse avx512f avx512_bf16") and cpu_computes_bf16("amx_bf16 amx_tile")
    assert not cpu_computes_bf16("fpu sse avx2")
    machine = PRESETS["cpu-16g"]
    assert make_plan(describe("csm-1b"), machine).dtype == "float32"
    native = make_plan(describe("csm-1b"), replace(machine, cpu_bf16=True))
    assert (native.dtype, native.compute_dtype) == ("bfloat16", "")
    squeezed = make_plan(describe("vibevoice-1.5b"), machine)  # fp32 needs 10.86 GiB of the 9.35 usable
    assert (squeezed.dtype, squeezed.compute_dtype) == ("bfloat16", "float32")
    assert squeezed.ram_needed_bytes <= usable_ram(machine)


def test_a_refusal_names_the_largest_model_that_fits():
    with pytest.raises(NoPlanFitsError, match="choose vibevoice-1.5b, the largest model that fits here"):
        make_plan(describe("vibevoice-7b"), PRESETS["gtx1650-4g"])


def test_the_machines_the_issue_found_refused_get_plans():
    # A 4 GB card with 8 GB of RAM, 3.35 GiB of the card free: the voice encoder (0.64 GiB, run once per voice)
    # computes on the CPU and every backbone layer streams through one slot beside the CUDA runtime (0.88 GiB):
    # a GPU plan. (With 3.75 GiB free, 24 of the 28 layers stream.)
    four_gb = Hardware("Linux", 4, 8 * GiB, 7 * GiB, (_card("NVIDIA GeForce RTX 3050 Laptop GPU", 4, (8, 6),
                                                            free_gib=3.35),))
    ref = describe("vibevoice-1.5b")
    plan = make_plan(ref, four_gb)
    assert plan.device == "cuda:0" and plan.level == "streamed" and plan.dtype == "bfloat16"
    assert plan.predicted_peak_bytes <= four_gb.gpu.free_bytes and plan.ram_needed_bytes <= usable_ram(four_gb)
    assert plan.prompt_on_cpu == ("model.audio_tower.encoder",) and plan.compute_on_cpu == ()
    towers = {p for p, _ in ref.shape.at("bfloat16").tower_layers}
    backbone = {p for p, _ in ref.shape.at("bfloat16").streamable_layers}
    assert set(plan.streamed_layers) == backbone

    gtx16 = Hardware("Linux", 4, 16 * GiB, 11 * GiB, (_card("NVIDIA GeForce GTX 1660 SUPER", 6, (7, 5)),))
    plan = make_plan(describe("vibevoice-1.5b"), gtx16)
    assert plan.device == "cuda:0" and (plan.dtype, plan.compute_dtype) == ("float16", "float32")

    # A 4 GB GTX 1650 with 3.3 GiB of it free and 8 GB of RAM, 6 GB of it free: fp16 storage computed in fp32,
    # the encoder on the CPU, every backbone layer and some of the towers' streamed from pinned memory (2.75 GiB,
    # less than half the free RAM). (With 3.75 GiB free 27 backbone layers stream and the towers stay; the
    # gtx1650-4g preset's 5 GB of free RAM cannot hold those pinned, so it reads them from disk:
    # test_planner.EXPECTED.)
    gtx1650 = Hardware("Linux", 4, 8 * GiB, 6 * GiB, (_card("NVIDIA GeForce GTX 1650", 4, (7, 5), free_gib=3.3),))
    plan = make_plan(ref, gtx1650)
    assert plan.device == "cuda:0" and (plan.dtype, plan.compute_dtype) == ("float16", "float32")
    assert plan.predicted_peak_bytes <= gtx1650.gpu.free_bytes and plan.ram_needed_bytes <= usable_ram(gtx1650)
    assert towers & set(plan.streamed_layers) and plan.prompt_on_cpu == ("model.audio_tower.encoder",)
    assert plan.streamed_layers[0] in towers  # ring order is frame order: the towers render, then the model

    # An 8 GB card half taken by other programs, on a 32 GB desktop: the pinned-to-GPU towers and the
    # output projection (4.2 GiB) leave no GPU plan in 4 GiB, but the bf16 weights fit RAM: a CPU plan
    # instead of the fp32 refusal (35 GiB).
    half = Hardware("Linux", 8, 32 * GiB, 24 * GiB, (_card("NVIDIA GeForce RTX 3070", 8, (8, 6), free_gib=4),))
    plan = make_plan(describe("vibevoice-7b"), half)
    assert plan.device == "cpu" and plan.dtype == "bfloat16" and plan.ram_needed_bytes <= usable_ram(half)


SPEED = re.compile(r"expected speed: about ([\d.]+) s of decoding per second of audio, reading ([\d.]+) GiB from "
                   r"disk .*: ([\d.]+) s at the 2 GB/s NVMe read assumed")


def _disk_speed(plan) -> tuple[float, float, float]:
    """(seconds of decoding per audio second, GiB read per pass, seconds per pass) from the plan's reasons."""
    found = [SPEED.search(r) for r in plan.reasons]
    (match,) = [m for m in found if m]
    return tuple(float(x) for x in match.groups())


@pytest.mark.parametrize("preset", ["laptop-4060-8g", "laptop-3070-8g"])
def test_vibevoice_7b_streams_from_the_checkpoints_files_on_an_8_gb_gpu_with_16_gb_of_ram(preset):
    """17.4 GiB of bf16 weights, 8.5 GiB of usable RAM: the backbone's layers stay in the checkpoint's
    memory-mapped safetensors and are read every pass; RAM holds only the pinned staging buffers. The plan
    says how fast it will be."""
    machine = PRESETS[preset]
    ref = describe("vibevoice-7b")
    plan = make_plan(ref, machine)
    assert (plan.level, plan.executor, plan.offload["home"]) == ("streamed-disk", "streamed", "disk")
    assert {plan.device_map[p] for p in plan.streamed_layers} == {"disk"}
    assert plan.predicted_peak_bytes <= machine.gpu.free_bytes and plan.ram_needed_bytes <= usable_ram(machine)
    layers = ref.shape.at("bfloat16").streamable_layers
    assert plan.ram_needed_bytes < sum(n for _, n in layers) < stored()["vibevoice-7b"].at("bfloat16").total_bytes
    rtf, read, seconds = _disk_speed(plan)
    assert read == round(plan.offload["disk_bytes"] / GiB, 2) and seconds == round(plan.offload["disk_bytes"] / 2e9, 1)
    gpu = machine.gpu
    assert rtf == round(speed.real_time_factor(plan, "vibevoice", gpu.bandwidth_gbps, gpu.pinned_bandwidth_gbps), 1)
    assert rtf > 2 * seconds * 7.5  # two passes a frame (guidance), 7.5 frames a second of audio, plus PCIe
    assert catalogue.verdict("vibevoice-7b", machine).fit is catalogue.Fit.TOO_SLOW


def test_one_gpu_slot_when_two_do_not_fit():
    """The smallest card VibeVoice-7B plans on holds every part but the layers and one layer more, not two: the
    copies take turns with the compute."""
    ref = describe("vibevoice-7b")
    layer = max(n for _, n in ref.shape.at("bfloat16").streamable_layers)
    # Free VRAM from 5.5 GiB up, the first card that gets a plan (below about 5.4 GiB the towers' smaller layers
    # stream too, through two slots).
    for sixty_fourths in range(int(5.5 * 64), 8 * 64):
        machine = _machine_with(sixty_fourths / 64)
        try:
            plan = make_plan(ref, machine)
        except NoPlanFitsError:
            continue
        break
    assert (plan.level, plan.offload["slots"]) == ("streamed-disk", 1)
    assert plan.memory.streamed_buffers == layer and plan.predicted_peak_bytes <= machine.gpu.free_bytes
    assert any("one GPU slot for streamed layers (two do not fit)" in r for r in plan.reasons)


def _machine_with(free_gib: float) -> Hardware:
    """A Linux laptop with 16 GB of RAM (10 GB available) and an Ampere card with ``free_gib`` free."""
    return Hardware("Linux", 8, 16 * GiB, 10 * GiB, (_card("NVIDIA GeForce RTX 3080 Laptop GPU", 16, (8, 6),
                                                          free_gib=free_gib),))


def test_pascal_streams_fp16_layers_from_disk_when_ram_is_short_too():
    """Old GPUs combine their fp16 storage (fp32 compute) with layers read from the checkpoint's files."""
    machine = replace(PRESETS["gtx1060-6g"], ram_available_bytes=GiB)  # pinning 0.6 GiB would take half of it
    plan = make_plan(describe("vibevoice-1.5b"), machine)
    assert (plan.level, plan.dtype, plan.compute_dtype) == ("streamed-disk", "float16", "float32")
    assert plan.offload["disk_bytes"] == sum(n for p, n in describe("vibevoice-1.5b").shape.at("float16")
                                             .streamable_layers if p in plan.streamed_layers)
    _disk_speed(plan)


def test_a_cpu_with_native_bf16_leaves_the_weights_in_the_checkpoints_files():
    """VibeVoice-7B on 16 GB of RAM: with AVX512-BF16/AMX the bf16 weights stay memory-mapped (only the KV cache
    and activations need RAM) and the plan says how slow that is; without, the refusal names a model that fits."""
    ref = describe("vibevoice-7b")
    plan = make_plan(ref, replace(PRESETS["cpu-16g"], cpu_bf16=True))
    weights = stored()["vibevoice-7b"].at("bfloat16").total_bytes
    assert (plan.level, plan.dtype, plan.compute_dtype, plan.offload) == (
        "cpu", "bfloat16", "", {"home": "disk", "disk_bytes": weights})
    assert plan.ram_needed_bytes < GiB
    rtf, read, _ = _disk_speed(plan)
    assert read == round(weights / GiB, 2) and rtf > 100
    with pytest.raises(NoPlanFitsError) as refused:
        make_plan(ref, PRESETS["cpu-16g"])
    assert "no native bfloat16 arithmetic (AVX512-BF16 or AMX) to compute from weights left on disk" in \
        str(refused.value) and "choose vibevoice-1.5b" in str(refused.value)
    assert make_plan(describe("csm-1b"), replace(PRESETS["cpu-16g"], cpu_bf16=True)).offload == {}  # fits RAM


def _figures(message: str) -> list[float]:
    return [float(x) for x in re.findall(r"(\d+\.\d\d) GiB", message)]


def _fixed_on_gpu(model: str, hardware: Hardware) -> int:
    """Bytes of weights no GPU plan can move off the GPU: all but the streamable layers (the backbone's and
    the per-frame towers'), the embedding tables read on the CPU, the parts that only encode the voice and
    the codecs fast enough to compute there."""
    ref = describe(model)
    size = ref.shape.at(dtype_policy(hardware.gpu).storage)
    codecs = [c for c in size.by_role(Role.CODEC) if not c.component.pinned_to_compute
              and not c.component.prompt_only and c.component.cpu_real_time_factor is not None]
    movable = sum(c.nbytes for c in codecs) if sum(c.component.cpu_real_time_factor for c in codecs) \
        <= fit.CODEC_CPU_MAX_RTF else 0
    movable += sum(c.nbytes for c in size.components if c.component.prompt_only)
    layers = sum(n for _, n in size.streamable_layers + size.tower_layers)
    return size.total_bytes - layers - sum(n for _, n in size.lookups) - movable


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_and_model_gets_a_plan_or_a_justified_refusal(preset):
    """A refusal only where the weights exceed what VRAM, RAM and the disk allowed may hold: on the GPU the
    weights that cannot leave it, with the CUDA context, one layer's slot and the margin, exceed the free VRAM
    (the refusal's figure is at least that floor and names those weights); on the CPU the weights exceed the
    usable RAM and may not stay on disk (this CPU does not compute in the dtype they are stored in)."""
    hardware = PRESETS[preset]
    for model in MODELS:
        try:
            ladder = candidates(describe(model), hardware)
        except NoPlanFitsError as refusal:
            message = str(refusal)
            assert stored()[model].at("bfloat16").total_bytes > usable_ram(hardware), (model, preset)
            assert "to compute from weights left on disk" in message or "none are left on disk" in message
            if hardware.gpu is not None:
                need, free, fixed = _figures(message)[:3]
                assert need > free == round(hardware.gpu.free_bytes / GiB, 2), (model, preset)
                layer = max(n for _, n in describe(model).shape.at(dtype_policy(hardware.gpu).storage)
                            .streamable_layers)
                floor = _fixed_on_gpu(model, hardware) + CUDA_RUNTIME_BYTES + layer + safety_margin(free * GiB)
                assert need >= round(floor / GiB, 2) and fixed == round(_fixed_on_gpu(model, hardware) / GiB, 2)
                assert f"the weights that cannot leave the GPU ({fixed:.2f} GiB)" in message
            continue
        for plan in ladder:
            assert plan.predicted_peak_bytes <= (hardware.gpu.free_bytes if hardware.gpu else 0)
            assert plan.ram_needed_bytes <= usable_ram(hardware)


VERDICTS = {  # (preset, model) -> verdict, for the four verdicts on the presets
    ("laptop-4060-8g", "vibevoice-1.5b"): "fits fully", ("laptop-3060-6g", "vibevoice-1.5b"): "fits fully",
    ("gtx1060-6g", "vibevoice-1.5b"): "needs offload",
    ("laptop-4060-8g", "vibevoice-7b"): "too slow for real time", ("gtx1650-4g", "vibevoice-7b"): "does not fit",
    ("laptop-4050-6g", "vibevoice-7b"): "too slow for real time",
    ("gtx1650-4g", "vibevoice-1.5b"): "too slow for real time",
    ("cpu-16g", "pocket-tts"): "fits fully", ("cpu-16g", "csm-1b"): "too slow for real time",
}


@pytest.mark.parametrize("preset", list(PRESETS))
def test_models_gives_a_verdict_for_every_model_on_every_preset(preset):
    rows = catalogue.verdicts(PRESETS[preset])
    assert [r.model for r in rows] == MODELS
    for row in rows:
        assert row.fit in catalogue.Fit
        expected = VERDICTS.get((preset, row.model))
        assert expected is None or row.fit.value == expected, (preset, row.model, row.fit)
        if row.plan is None:
            assert row.fit is catalogue.Fit.NO_FIT and "does not fit this machine" in row.why
            continue
        assert row.real_time_factor > 0 and row.peak_vram_bytes == row.plan.predicted_peak_bytes
        assert (row.real_time_factor > 1) == (row.fit is catalogue.Fit.TOO_SLOW)


def test_models_json_lists_one_object_per_model(capsys):
    assert main(["models", "--hardware", "laptop-4050-6g", "--vram-limit", "4GiB", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in rows] == MODELS
    assert set(rows[0]) == {"model", "verdict", "level", "device", "dtype", "peak_vram_bytes", "peak_ram_bytes",
                            "real_time_factor", "why"}
    assert all(r["peak_vram_bytes"] <= 4 * GiB for r in rows)
    assert {r["verdict"] for r in rows} <= {f.value for f in catalogue.Fit}
    assert main(["models", "--hardware", "gtx1060-6g"]) == 0
    table = capsys.readouterr().out
    assert "pocket-tts" in table and "fits fully" in table and "RTF" in table


def test_models_runs_without_torch():
    """Sizing advice comes before any download or torch import (its speed: ``benchmarks/plan_speed.py``)."""
    code = ("import sys\nfrom inference.cli import main\n"
            "main(['models', '--hardware', 'laptop-4060-8g'])\n"
            "print('torch' in sys.modules, 'transformers' in sys.modules, file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.split()[-2:] == ["False", "False"]



