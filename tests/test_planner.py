"""The offload planner: which level every preset and registered model gets, and why; calibration records.

All plans here are made for machines described by presets or built in the test, so the decisions are
checked for laptops we do not have. The real GPU side (probes, executors) is in test_executors.py.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from inference import paths, planner, registry
from inference.cli import main
from inference.dtypes import dtype_policy
from inference.errors import VesperError
from inference.executors import deepspeed_support
from inference.families import Role
from inference.hardware import PRESETS, GiB, Gpu, Hardware
from inference.models import describe
from inference.planner import LEVELS, RAM_HEADROOM, Workload, candidates, fingerprint, make_plan, step_down
from inference.planning import corrections, estimates, fit, shapes, types
from inference.units import gib

MODELS = list(registry.specs())

# What each registered model gets on each preset at batch 1 (None: no plan fits the machine at all).
# Windows laptops have no DeepSpeed, so the ZeRO levels fall back to accelerate's hooks there.
EXPECTED = {
    ("pocket-tts", "laptop-4050-6g"): "resident", ("pocket-tts", "laptop-4060-8g"): "resident",
    ("pocket-tts", "laptop-3060-6g"): "resident", ("pocket-tts", "laptop-3070-8g"): "resident",
    ("pocket-tts", "gtx1650-4g"): "resident", ("pocket-tts", "gtx1060-6g"): "resident",
    ("pocket-tts", "cpu-16g"): "cpu",
    ("csm-1b", "laptop-4050-6g"): "resident", ("csm-1b", "laptop-4060-8g"): "resident",
    ("csm-1b", "laptop-3060-6g"): "resident", ("csm-1b", "laptop-3070-8g"): "resident",
    # Pascal and GTX 16xx store fp16 and compute fp32 (upcast per module): half the weights of fp32.
    ("csm-1b", "gtx1650-4g"): "streamed", ("csm-1b", "gtx1060-6g"): "resident", ("csm-1b", "cpu-16g"): "cpu",
    # On 6 GB cards the voice encoder (run once per voice) computes on the CPU and the rest fits: 5.73 GiB
    # with 150-character chunks.
    ("vibevoice-1.5b", "laptop-4050-6g"): "codec-cpu", ("vibevoice-1.5b", "laptop-4060-8g"): "resident",
    ("vibevoice-1.5b", "laptop-3060-6g"): "codec-cpu", ("vibevoice-1.5b", "laptop-3070-8g"): "resident",
    # The GTX 1650 streams 27 of the 28 backbone layers: pinned (2.35 GiB) they would need 4.37 GiB of RAM in
    # all, more than the 4.25 GiB usable of its 5 GB free, so they are read from the checkpoint's mapped files
    # (with 6 GB of RAM free they are pinned: test_memory_plan).
    ("vibevoice-1.5b", "gtx1650-4g"): "streamed-disk", ("vibevoice-1.5b", "gtx1060-6g"): "streamed",
    ("vibevoice-1.5b", "cpu-16g"): "cpu",  # bf16 weights upcast per layer: fp32 ones would not fit
    # 17.4 GB of weights on 16 GB laptops: too much to pin in RAM, so the layers are read from the checkpoint's
    # memory-mapped files. On 6 GB cards the voice encoder computes on the CPU, the input table is read there
    # and every backbone layer streams through one slot. On a 4 GB card the 2.6 GiB that cannot leave the GPU
    # leave no room for the CUDA runtime and a slot, and CPUs without native bf16 do not compute from weights
    # left on disk.
    ("vibevoice-7b", "laptop-4050-6g"): "streamed-disk", ("vibevoice-7b", "laptop-4060-8g"): "streamed-disk",
    ("vibevoice-7b", "laptop-3060-6g"): "streamed-disk", ("vibevoice-7b", "laptop-3070-8g"): "streamed-disk",
    ("vibevoice-7b", "gtx1650-4g"): None, ("vibevoice-7b", "gtx1060-6g"): "streamed-disk",
    ("vibevoice-7b", "cpu-16g"): None,
}


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Calibration records of the developer's machine must not leak into decisions checked here."""
    monkeypatch.setenv(paths.CACHE_DIR_ENV, str(tmp_path / "cache"))


def _machine(free_gib: float, ram_gib: float = 48, os: str = "Linux", cc: tuple[int, int] = (8, 6)) -> Hardware:
    gpu = Gpu(0, "Test GPU", int(free_gib * GiB), int(free_gib * GiB), cc, 4, 16, "test-driver")
    return Hardware(os, 8, int(ram_gib * GiB), int(ram_gib * GiB), (gpu,), "test")


def _busy(preset: str, free_gib: float) -> Hardware:
    """A preset whose GPU has only ``free_gib`` free: other programs hold the rest."""
    hardware = PRESETS[preset]
    return replace(hardware, gpus=(replace(hardware.gpu, free_bytes=int(free_gib * GiB)),))


def _size(ref, free_gib: float) -> shapes.ModelSize:
    """The model's sizes at the dtype a test GPU with ``free_gib`` free computes in."""
    return ref.shape.at(dtype_policy(_machine(free_gib).gpu).storage)


def test_every_preset_and_model_gets_the_expected_level_within_its_memory():
    assert {m for m, _ in EXPECTED} == set(MODELS) and {p for _, p in EXPECTED} == set(PRESETS)
    for (model, preset), level in EXPECTED.items():
        hardware = PRESETS[preset]
        if level is None:
            with pytest.raises(VesperError, match="RAM"):
                make_plan(describe(model), hardware)
            continue
        plan = make_plan(describe(model), hardware)
        assert plan.level == level, (model, preset, plan.reasons)
        assert plan.ram_needed_bytes <= hardware.ram_available_bytes * RAM_HEADROOM
        if plan.device != "cpu":
            assert plan.predicted_peak_bytes <= hardware.gpu.free_bytes, (model, preset)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_rung_of_the_ladder_fits_and_explains_itself(model, preset):
    """At batch 8 too: every candidate fits, carries reasons, and its memory adds up."""
    try:
        ladder = candidates(describe(model), PRESETS[preset], Workload(300, 8))
    except VesperError:
        return  # checked above: nothing fits this machine
    for plan in ladder:
        assert plan.level in LEVELS and plan.reasons
        assert plan.memory.total == sum(v for k, v in json.loads(json.dumps(plan.to_dict()))["memory"].items()
                                        if k != "total")
        if plan.device != "cpu":
            assert plan.predicted_peak_bytes <= PRESETS[preset].gpu.free_bytes
            assert plan.memory.cuda_context > 0 and plan.memory.safety_margin > 0
            assert plan.memory.weights_resident > 0 and plan.memory.kv_cache > 0


def test_json_has_the_peak_at_the_top_and_a_dtype_and_placement_for_every_component():
    ref = describe("vibevoice-1.5b")
    data = make_plan(ref, _busy("laptop-4050-6g", 5)).to_dict()  # with all 5.75 GiB free nothing streams
    assert data["predicted_peak_bytes"] == data["memory"]["total"]
    assert set(data["memory"]) >= {"cuda_context", "weights_resident", "streamed_buffers", "kv_cache",
                                   "activations", "safety_margin"}
    assert set(data["components"]) == {c.name for c in ref.adapter.components(ref.config)}
    assert all(c["dtype"] == "bfloat16" and c["placement"] for c in data["components"].values())
    assert data["executor"] == "streamed" and data["streamed_layers"]
    assert all(data["device_map"][p] == "cpu" for p in data["streamed_layers"])


def test_shorter_chunks_come_before_offloading():
    """pocket-tts at batch 8 on a 6 GB GTX 1060 (fp32 compute) fits resident once chunks are halved."""
    plan = make_plan(describe("pocket-tts"), PRESETS["gtx1060-6g"], Workload(300, 8))
    assert plan.level == "resident" and plan.max_chunk_chars == 150
    assert any("300-character chunks" in r for r in plan.reasons)
    assert any("shortened to 150" in r for r in plan.reasons)


def test_as_many_layers_stay_resident_as_fit_and_the_streamed_ones_are_spread_out():
    """More free memory, fewer streamed layers; they are spread through the stack, in execution order,
    so each copy hides behind the resident layers computing before it."""
    ref = describe("vibevoice-1.5b")
    layers = [p for p, _ in _size(ref, 8).streamable_layers]
    counts = []
    for free in (4.0, 4.5, 5.0, 5.5):  # from 5.75 GiB the voice encoder on the CPU is enough
        plan = make_plan(ref, _machine(free))
        assert plan.level == "streamed" and plan.predicted_peak_bytes <= free * GiB
        positions = [layers.index(p) for p in plan.streamed_layers]
        assert positions == sorted(positions) and positions[-1] == len(layers) - 1
        gaps = {b - a for a, b in zip([-1, *positions], positions, strict=False)}
        assert max(gaps) - min(gaps) <= 1, positions
        counts.append(len(plan.streamed_layers))
    assert counts == sorted(counts, reverse=True) and counts[0] > counts[-1]


def test_a_smaller_batch_on_the_gpu_comes_before_the_cpu():
    plan = make_plan(describe("vibevoice-1.5b"), _machine(2.7, ram_gib=64), Workload(300, 8))
    assert plan.device.startswith("cuda") and plan.batch_size < 8
    assert any("nothing fits the GPU at batch 8" in r for r in plan.reasons)


def test_a_codec_moves_to_the_cpu_when_the_adapter_says_it_is_fast_there():
    """CSM's Mimi decodes at 0.09x real time on a CPU: the first thing to leave a GPU that is too small."""
    ref = describe("csm-1b")
    codec = next(c for c in _size(ref, 80).components if c.role is Role.CODEC)
    free = 8.0
    while (plan := make_plan(ref, _machine(free))).level == "resident":
        resident = plan
        free -= 1 / 32
    assert plan.level == "codec-cpu" and plan.compute_on_cpu == ("codec_model",)
    assert plan.device_map["codec_model"] == "cpu" and "0.07" in plan.components["codec"]["placement"]
    assert plan.memory.weights_resident == resident.memory.weights_resident - codec.nbytes


def test_modules_read_outside_forward_stay_on_the_compute_device():
    """VibeVoice's per-frame towers are too slow on a CPU and pinned anyway; no plan ever moves a pinned
    module off the compute device, except the layers of one the family lets stream (``streams_layers``),
    which the streamed executor brings in for their forward. Its voice encoder runs only for the prompt:
    that one may compute on the CPU."""
    for model in MODELS:
        ref = describe(model)
        components = ref.adapter.components(ref.config)
        pinned = [p for c in components if c.pinned_to_compute for p in c.module_paths]
        for free in (2.5, 4, 6, 9, 24):
            try:
                ladder = candidates(ref, _machine(free, ram_gib=64))
            except VesperError:
                continue
            for plan in ladder:
                if plan.device == "cpu":
                    continue
                for path in pinned:
                    assert all(v == plan.device or k in plan.streamed_layers for k, v in plan.device_map.items()
                               if k == path or k.startswith(path + ".")), (model, plan.level, path)
                    assert path not in plan.cpu_islands
                prompt_only = {p for c in components if c.prompt_only for p in c.module_paths}
                assert set(plan.prompt_on_cpu) <= prompt_only and not set(plan.compute_on_cpu) & prompt_only
    reasons = make_plan(describe("vibevoice-1.5b"), PRESETS["laptop-4050-6g"]).reasons
    assert any(r.startswith("acoustic_encoder on the CPU (acoustic_encoder only encodes each new voice; ")
               and "must stay on the compute device" in r for r in reasons)


def test_step_down_walks_the_whole_ladder_in_order():
    ref, hardware = describe("csm-1b"), PRESETS["laptop-4050-6g"]
    ladder = candidates(ref, hardware, Workload(300, 4))
    walked = [ladder[0]]
    while (lower := step_down(walked[-1], ref, hardware)) is not None:
        walked.append(lower)
        assert any("stepped down from" in r for r in lower.reasons)
    assert [fingerprint(p) for p in walked] == [fingerprint(p) for p in ladder]
    assert walked[-1].device == "cpu" and walked[-1].batch_size == 1


def test_a_plan_not_found_on_the_ladder_never_steps_back_up():
    """A plan made in another process can differ in what that process measured: its step down is still lower."""
    ref, hardware = describe("csm-1b"), PRESETS["laptop-4050-6g"]
    ladder = candidates(ref, hardware, Workload(300, 4))
    levels = [p.level for p in ladder]
    for index, plan in enumerate(ladder[:-1]):
        elsewhere = replace(plan, offload={**plan.offload, "measured": "in another process"})
        assert fingerprint(elsewhere) not in {fingerprint(p) for p in ladder}
        lower = step_down(elsewhere, ref, hardware)
        keys = [fingerprint(p) for p in ladder]
        assert lower is not None and keys.index(fingerprint(lower)) > index, (levels, index)


def test_without_deepspeed_the_planner_says_so_and_falls_back():
    """deepspeed is not installed in the test environment: ZeRO-3 in RAM falls back to accelerate's hooks; on
    NVMe its place is taken by the streamed executor reading the checkpoint's own files (no offload folder)."""
    assert not deepspeed_support.installed()
    ref = describe("vibevoice-7b")
    linux = candidates(ref, _machine(8, ram_gib=16))  # too little RAM to pin the layers: a ZeRO level
    assert (linux[0].level, linux[0].executor) == ("zero3-cpu", "accelerate")
    assert any("deepspeed is not installed" in r for r in linux[0].reasons)
    assert {p.level for p in linux} >= {"streamed-disk"} and "zero3-nvme" not in {p.level for p in linux}
    windows = make_plan(ref, PRESETS["laptop-4060-8g"])  # 10 GB available: not even ZeRO-3 in RAM
    assert (windows.level, windows.executor) == ("streamed-disk", "streamed")
    assert any("does not run on Windows" in r for r in windows.reasons)
    forced = {p.level: p.executor for p in candidates(ref, PRESETS["laptop-4060-8g"], executor="accelerate")}
    assert forced.get("zero3-nvme") == "accelerate" and "streamed-disk" not in forced


def test_with_deepspeed_installed_the_zero_levels_use_it_with_a_resident_budget(monkeypatch):
    """The planner side only: which executor and persistence budget it would hand DeepSpeed."""
    monkeypatch.setattr(deepspeed_support, "installed", lambda: True)
    plan = make_plan(describe("vibevoice-7b"), _machine(7.5, ram_gib=16))  # from 8 GiB the table stays
    assert plan.level == "zero3-cpu" and plan.executor == "deepspeed"
    # The fp32 voice encoder would not fit the RAM beside the host layers: it stays on the GPU, and the
    # input table is read on the CPU instead (bf16, a few rows a step).
    assert plan.prompt_on_cpu == () and plan.lookups_on_cpu == ("model.language_model.embed_tokens",)
    table = dict(_size(describe("vibevoice-7b"), 8).lookups)["model.language_model.embed_tokens"]
    resident_parts = _non_layer_bytes("vibevoice-7b") - table
    assert 0 < plan.offload["persist_bytes"] == plan.memory.weights_resident - resident_parts
    assert plan.predicted_peak_bytes <= 7.5 * GiB
    assert any(r.startswith("zero3-cpu with acoustic_encoder on the CPU: needs ") for r in plan.reasons)


def _non_layer_bytes(model: str) -> int:
    ref = describe(model)
    size = _size(ref, 8)
    return size.total_bytes - sum(n for _, n in size.streamable_layers)


def test_the_planner_names_no_model_family():
    """Adding a model must not touch the planner: everything family-specific comes from the family's facts
    and the model's shape."""
    for module in (planner, types, shapes, estimates, corrections, fit):
        source = inspect.getsource(module).lower()
        for family in registry.FAMILY_MODULES + ("mimi", "qwen", "llama", "pocket"):
            assert family not in source, (module.__name__, family)


def test_a_calibration_record_corrects_the_prediction_and_is_read_fast():
    ref = describe("csm-1b")
    hardware = _machine(16)
    plan = make_plan(ref, hardware)
    assert not plan.calibrated and plan.memory.calibration == 0
    corrections.store(plan, {"measured_bytes": 3_000_000_000, "predicted_bytes": 2_500_000_000})
    started = time.perf_counter()
    again = make_plan(ref, hardware)
    assert time.perf_counter() - started < 0.1
    assert again.calibrated and again.memory.calibration == 500_000_000
    assert again.predicted_peak_bytes == plan.predicted_peak_bytes + 500_000_000
    assert any("calibrated on this machine" in r for r in again.reasons)
    # Another batch is another plan: no record, no correction.
    assert not make_plan(ref, hardware, Workload(300, 2)).calibrated


def test_calibration_keys_name_the_machine_and_the_placement(tmp_path, monkeypatch):
    ref = describe("csm-1b")
    plan = make_plan(ref, _machine(16))
    assert corrections.record_path(plan).parent == tmp_path / "cache" / "calibration"
    assert corrections.record_path(plan) == corrections.record_path(replace(plan, reasons=("other",)))
    for changed in (replace(plan, gpu_id="Other GPU|1"), replace(plan, batch_size=8),
                    replace(plan, dtype="float16"), replace(plan, level="streamed", executor="streamed"),
                    replace(plan, model_digest="another checkpoint")):
        assert corrections.record_path(changed) != corrections.record_path(plan)


def test_cli_plan_prints_the_breakdown_and_the_fallbacks(capsys):
    # Under a 5 GiB limit (the laptop's 5.75 GiB free fit all but the voice encoder) some layers stream.
    assert main(["plan", "--model", "vibevoice-1.5b", "--hardware", "laptop-4050-6g", "--vram-limit", "5GiB"]) == 0
    text = capsys.readouterr().out
    for words in ("streamed (executor streamed)", "streamed_buffers", "kv_cache", "safety_margin",
                  "component  diffusion_head", "fallback", "why        acoustic_encoder on the CPU (",
                  "component  acoustic_encoder   0.64 GiB bfloat16  cpu (encodes each new voice there"):
        assert words in text
    assert main(["plan", "--model", "csm-1b", "--hardware", "laptop-4060-8g", "--batch", "8", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["level"] == "resident" and data["predicted_peak_bytes"] > 0 and data["fallbacks"]


def test_untied_embedding_tables_leave_the_gpu_when_layers_alone_do_not_fit():
    """VibeVoice-7B's 1 GB input table is read on the CPU (a step looks up a few rows); 1.5B's is tied to
    its lm_head, which multiplies by the whole table every step, so it never leaves."""
    assert _size(describe("vibevoice-1.5b"), 8).lookups == ()
    # 7 GiB free (the bench's 8 GB cap, 7.45 GiB, now just holds the table beside the streamed layers)
    plan = make_plan(describe("vibevoice-7b"), _machine(7, ram_gib=120), Workload(300, 8))
    assert plan.lookups_on_cpu == ("model.language_model.embed_tokens",)
    assert plan.device_map["model.language_model.embed_tokens"] == "cpu"
    assert any("trying with the embedding tables read on the CPU" in r for r in plan.reasons)
    roomy = make_plan(describe("vibevoice-7b"), _machine(12, ram_gib=64))
    assert roomy.level == "streamed" and roomy.lookups_on_cpu == ()


@pytest.mark.parametrize(("model", "preset"), [("vibevoice-7b", "gtx1650-4g")])
def test_a_refusal_is_one_line_naming_the_largest_part_with_the_figures_it_compared(model, preset):
    """Through the real launcher: exit 2, nothing on stdout, one line, advice spelled as the user typed it."""
    done = subprocess.run([sys.executable, "launch.py", "plan", "--model", model, "--hardware", preset],
                          cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout) == (2, "") and "Traceback" not in done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"vesper: {model} does not fit this machine: its smallest GPU plan needs ")
    assert "the largest part being the weights that cannot leave the GPU" in line and "close other programs" in line
    assert "and this CPU has no native bfloat16 arithmetic (AVX512-BF16 or AMX)" in line
    assert "the largest model that fits here (`python launch.py models` lists them all)" in line
    hardware = PRESETS[preset]
    usable = gib(planner.usable_ram(hardware))
    assert f"more than the {usable} usable ({RAM_HEADROOM:.0%} of the {gib(hardware.ram_available_bytes)} " \
           "available; the rest is kept for the system and other programs)" in line
    needed = float(re.search(r"on the CPU it needs ([\d.]+) GiB", line).group(1))
    assert needed > float(usable.split()[0])  # the figure compared is the figure printed
    gpu_need, gpu_free = map(float, re.search(r"needs ([\d.]+) GiB of the ([\d.]+) GiB free", line).groups())
    assert gpu_need > gpu_free == float(gib(hardware.gpu.free_bytes).split()[0])


def test_a_refusal_from_the_console_script_suggests_vesper_and_a_cpu_machine_names_ram_only(capsys):
    assert main(["plan", "--model", "vibevoice-7b", "--hardware", "cpu-16g"], program="vesper") == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("vesper: vibevoice-7b does not fit this machine: on the CPU it needs ")
    assert "GPU" not in line and "choose vibevoice-1.5b, the largest model that fits here (`vesper models`" in line


def test_every_decision_is_logged_as_it_is_kept_in_the_reasons(caplog):
    """Each step's decision is in the reasons of every rung made after it; the CPU's comes last (here fp32
    weights do not fit, so the CPU rung stores bf16 and upcasts). With 5 GiB of the laptop's GPU free the voice
    encoder on the CPU is not enough either, so that step is logged too."""
    with caplog.at_level(logging.INFO, logger="inference.planning.fit"):
        ladder = candidates(describe("vibevoice-1.5b"), _busy("laptop-4050-6g", 5))
    logged = [r.getMessage().removeprefix("vibevoice-1.5b: ") for r in caplog.records]
    *steps, last = logged
    assert steps and all(any(reason in plan.reasons for plan in ladder) for reason in steps)
    assert set(steps[:2]) <= set(ladder[0].reasons) and steps[2].startswith("acoustic_encoder on the CPU (")
    assert last.startswith("CPU in fp32: needs") and last in ladder[-1].reasons
    assert (ladder[-1].dtype, ladder[-1].compute_dtype) == ("bfloat16", "float32")
