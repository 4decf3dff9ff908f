"""The inference worker on the tiny Pocket TTS checkpoint (CPU): faults survived, memory flat, cache, cancel.

Tests that need a real worker process spawn one (``WorkerClient``); the rest drive the same ``Worker``
class in this process, which is faster and lets them look inside (cache, loaded model).
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import time
import weakref
from dataclasses import replace
from itertools import pairwise
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch

from inference import jobs, registry
from inference.adapters.base import VoicePrompt
from inference.audio import write_wav
from inference.engine import Engine
from inference.errors import VesperError
from inference.hardware import PRESETS, GiB, with_vram_limit
from inference.models import describe
from inference.planner import (
    NoPlanFitsError,
    Workload,
    candidates,
    describe_plan,
    fingerprint,
    make_plan,
    step_down,
)
from inference.worker import client as client_module
from inference.worker import memory, protocol
from inference.worker.client import MAX_FRESH_STARTS_WITHOUT_PROGRESS, WorkerClient, WorkerError
from inference.worker.faults import Fault, FaultInjector, parse
from inference.worker.plan_memory import PlanMemory
from inference.worker.process import Worker, needs_fresh_process
from inference.worker.protocol import (
    EXIT_AFTER_GPU_ERROR,
    EXIT_TO_RELOAD,
    TERMINAL_EVENTS,
    ChunkPiece,
    ChunkReady,
    GenerationProgress,
    JobCancelled,
    JobFailed,
    JobFinished,
    JobStarted,
    MemorySample,
    ModelUnloaded,
    PlanChangeCause,
    PlanChanged,
    RestartCause,
    SpeakJob,
    Stage,
    StageStarted,
    Submit,
    UpdateSettings,
    WorkerRestarted,
    WorkerSettings,
)
from inference.worker.voices import VoiceCache, voice_key
from tests.conftest import REPO, SAMPLE_VOICE

FIVE_CHUNKS = "One two three. Four five six. Seven eight nine. Ten eleven twelve. Thirteen fourteen."
MiB = 2**20


@pytest.fixture(scope="module", autouse=True)
def worker_env(tmp_path_factory):
    """Environment that spawned workers inherit."""
    with pytest.MonkeyPatch.context() as patch:
        # Two torch threads on two shared cores thrash: the tiny model ran 10x slower than on one.
        patch.setenv("OMP_NUM_THREADS", "1")
        patch.setenv("VESPER_CACHE_DIR", str(tmp_path_factory.mktemp("vesper-cache")))
        patch.delenv("VESPER_FAULT", raising=False)
        yield


@pytest.fixture(scope="module")
def tiny(tiny_checkpoint) -> Path:
    return tiny_checkpoint("pocket_tts")


@pytest.fixture(scope="module")
def client(worker_env):
    """A long-lived worker decoding one chunk at a time, shared by the tests that need no fault."""
    with WorkerClient(WorkerSettings(low_latency=True)) as shared:
        yield shared


@pytest.fixture
def one_thread():
    """Same thread count as the workers, so in-process audio is bit-identical to theirs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _job(tiny: Path, text: str = FIVE_CHUNKS, voice: Path = SAMPLE_VOICE, **kwargs) -> SpeakJob:
    return SpeakJob(text, voice, model=str(tiny), chunk_chars=20, **kwargs)


def _local_worker(tmp_path: Path, settings: WorkerSettings = WorkerSettings(max_batch=1),
                  fault: Fault | None = None) -> tuple[Worker, list]:
    events: list = []
    plans = PlanMemory(tmp_path / "plans.json")
    worker = Worker(settings, queue.Queue(), events.append, FaultInjector(fault), plans)
    return worker, events


def _run_local(worker: Worker, events: list, job: SpeakJob, job_id: str = "job") -> list:
    start = len(events)
    worker.run(Submit(job_id, job))
    return events[start:]


def _audio(events: list) -> np.ndarray:
    return protocol.join([e for e in events if isinstance(e, ChunkReady)])


def _until_end(client: WorkerClient, job_id: str, timeout: float = 120) -> list:
    out = []
    for event in client.events(timeout):
        if event.job_id == job_id:
            out.append(event)
            if isinstance(event, (JobFinished, JobFailed, JobCancelled)):
                return out
    raise AssertionError("events ended before the job did")


# Plain data and small parts.

def test_client_and_protocol_never_import_torch():
    code = ("import sys, inference.worker.client, inference.worker.protocol; "
            "print([m for m in ('torch', 'transformers') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_jobs_and_protocol_share_one_job_type():
    assert jobs.SpeakJob is protocol.SpeakJob


def test_fault_spec():
    assert parse(None) is None and parse("") is None
    assert parse("oom@2") == Fault("oom", 2)
    assert parse("crash@1") == Fault("crash", 1)
    assert parse("hang@3") == Fault("hang", 3)
    assert parse("cuda@4") == Fault("cuda", 4)
    assert parse("oom@2", worker=1) is None  # the worker that replaces the first runs without the fault
    assert [parse("oom@1, cuda@2", worker=n) for n in range(3)] == [Fault("oom", 1), Fault("cuda", 2), None]
    for bad in ("oom", "oom@0", "segv@2", "crash@x", "oom@1,", "oom@1,segv@1"):
        with pytest.raises(ValueError):
            parse(bad)


def test_fault_strikes_once_at_the_kth_chunk_counted_across_batches():
    injector = FaultInjector(Fault("oom", 4))
    injector.before_chunks(2)  # chunks 1-2
    with pytest.raises(torch.OutOfMemoryError):
        injector.before_chunks(2)  # chunks 3-4
    injector.before_chunks(2)  # the retry of the same chunks: already fired
    injector.before_chunks(1)


def test_an_injected_cuda_error_reads_as_one():
    with pytest.raises(torch.AcceleratorError) as raised:
        FaultInjector(Fault("cuda", 1)).before_chunks(1)
    assert memory.is_cuda_error(raised.value) and not memory.is_out_of_memory(raised.value)


def test_cuda_errors_recognised():
    assert memory.is_cuda_error(torch.AcceleratorError("CUDA error: invalid argument"))
    assert memory.is_cuda_error(RuntimeError("CUDA error: part or all of the requested memory range is already mapped"))
    assert not memory.is_cuda_error(RuntimeError("CUDA error: out of memory"))  # out-of-memory: its own path
    assert not memory.is_cuda_error(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not memory.is_cuda_error(RuntimeError("shape mismatch"))
    assert not memory.is_cuda_error(ValueError("CUDA error"))


def test_out_of_memory_recognised():
    assert memory.is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert memory.is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert memory.is_out_of_memory(RuntimeError("CUBLAS_STATUS_ALLOC_FAILED when calling cublasCreate"))
    assert not memory.is_out_of_memory(RuntimeError("shape mismatch"))
    assert not memory.is_out_of_memory(ValueError("out of memory"))


# Voice cache.

def _prompt(nbytes: int = 1024) -> VoicePrompt:
    return VoicePrompt("test", {"latents": torch.zeros(nbytes // 4)})


def test_voice_cache_capacity_and_lru_order():
    cache = VoiceCache(capacity=2)
    cpu = torch.device("cpu")
    for key in ("a", "b"):
        cache.fetch(key, cpu, _prompt)
    cache.fetch("a", cpu, _prompt)  # a becomes the most recent
    cache.fetch("c", cpu, _prompt)  # evicts b
    assert len(cache) == 2 and "a" in cache and "c" in cache and "b" not in cache
    assert (cache.hits, cache.misses) == (1, 3)


def test_voice_cache_eviction_releases_the_tensors():
    cache = VoiceCache(capacity=1)
    first = cache.fetch("a", torch.device("cpu"), lambda: _prompt(4 * MiB))
    alive = weakref.ref(first.tensors["latents"])
    del first
    cache.fetch("b", torch.device("cpu"), _prompt)
    assert alive() is None


def test_voice_key_depends_on_content_not_file(tmp_path, reference_voice):
    audio, rate = reference_voice
    renamed = tmp_path / "another name.wav"
    shutil.copy(SAMPLE_VOICE, renamed)
    again, again_rate = sf.read(renamed, dtype="float32")
    key = voice_key(audio, rate, None, "m", "float32")
    assert voice_key(again, again_rate, None, "m", "float32") == key
    assert voice_key(audio, rate, "a transcript", "m", "float32") != key
    assert voice_key(audio, rate, None, "other-model", "float32") != key
    assert voice_key(audio * 0.5, rate, None, "m", "float32") != key


def test_same_recording_under_another_name_hits_the_cache(tmp_path, tiny, one_thread):
    worker, events = _local_worker(tmp_path)
    renamed = tmp_path / "copy-of-sample.wav"
    shutil.copy(SAMPLE_VOICE, renamed)
    _run_local(worker, events, _job(tiny, "Hello there."))
    _run_local(worker, events, _job(tiny, "Hello again.", voice=renamed))
    assert (worker.voices.misses, worker.voices.hits, len(worker.voices)) == (1, 1, 1)


def test_evicted_voice_prompt_is_freed_in_the_worker(tmp_path, tiny, reference_voice, one_thread):
    worker, events = _local_worker(tmp_path, WorkerSettings(max_batch=1, voice_cache_size=1))
    _run_local(worker, events, _job(tiny, "Hello there."))
    (first,) = worker.voices._entries.values()
    alive = weakref.ref(first.tensors["audio_prompt_latents"])
    del first
    quieter = tmp_path / "quieter.wav"
    audio, rate = reference_voice
    sf.write(quieter, audio * 0.5, rate)
    _run_local(worker, events, _job(tiny, "Hello there.", voice=quieter))
    assert len(worker.voices) == 1 and alive() is None


# Model loading and unloading.

def test_switching_model_unloads_the_previous_one(tmp_path, tiny, one_thread):
    from tests.tiny_models import build

    other = build("pocket_tts", tmp_path / "other", seed=1)
    worker, events = _local_worker(tmp_path)
    _run_local(worker, events, _job(tiny, "Hello there."))
    first_model = weakref.ref(worker.engine.loaded.model)
    _run_local(worker, events, _job(other, "Hello there."))
    assert isinstance(events[-1], JobFinished)
    assert first_model() is None
    assert worker.engine.ref.label == str(other)
    assert all(t.device.type == "cpu" for p in worker.voices._entries.values() for t in p.tensors.values())
    worker.unload()
    assert worker.engine is None


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_model_switch_returns_vram_to_the_idle_baseline(tmp_path, tiny):
    from tests.tiny_models import build

    other = build("pocket_tts", tmp_path / "other", seed=1)
    worker, events = _local_worker(tmp_path)
    baseline = torch.cuda.memory_allocated(), torch.cuda.memory_reserved()
    _run_local(worker, events, _job(other, "Hello there."))
    assert events[-1].plan.split(" on ")[1].startswith("cuda")
    other_alone = torch.cuda.memory_allocated()
    _run_local(worker, events, _job(tiny, "Hello there."))
    _run_local(worker, events, _job(other, "Hello there."))
    # Nothing of the first model stayed behind. Two loads of the same model differed by 2 KiB of small
    # codec buffers on an H100 (allocation order, not a leak: the unload below returns to exactly 0),
    # far below the tiny model's own weights.
    assert torch.cuda.memory_allocated() <= other_alone + 64 * 1024
    worker.unload()
    assert torch.cuda.memory_allocated() <= baseline[0] and torch.cuda.memory_reserved() <= baseline[1]


# Plans: run-time step-down, pre-flight check, memory of lower plans.

def test_lower_plan_is_remembered_per_model_and_machine(tmp_path, tiny):
    ref, hardware = describe(str(tiny)), PRESETS["cpu-16g"]
    top = make_plan(ref, hardware, Workload(300, 4))
    lower = step_down(top, ref, hardware)
    plans = PlanMemory(tmp_path / "plans.json")
    assert plans.recall(ref, hardware, top) is top
    plans.remember(ref, hardware, lower)
    assert describe_plan(plans.recall(ref, hardware, top)) == describe_plan(lower) == "cpu on cpu, batch 2"
    assert plans.recall(ref, PRESETS["laptop-4060-8g"], top) is top  # another machine
    (tmp_path / "plans.json").write_text("{not json")
    assert plans.recall(ref, hardware, top) is top


def test_a_step_down_under_a_vram_limit_is_remembered_for_that_limit_only(tmp_path, tiny):
    from inference.hardware import with_vram_limit

    ref, roomy = describe(str(tiny)), PRESETS["laptop-4060-8g"]
    tight = with_vram_limit(roomy, 4 * 2**30)
    top = make_plan(ref, tight, Workload(300, 4))
    plans = PlanMemory(tmp_path / "plans.json")
    plans.remember(ref, tight, step_down(top, ref, tight))
    assert plans.recall(ref, tight, top) is not top
    unlimited = make_plan(ref, roomy, Workload(300, 4))
    assert plans.recall(ref, roomy, unlimited) is unlimited  # the same GPU without the limit starts at the top


def test_out_of_memory_without_a_lower_plan_fails_clearly(tmp_path, tiny, one_thread):
    worker, events = _local_worker(tmp_path, WorkerSettings(max_batch=1), Fault("oom", 2))
    out = _run_local(worker, events, _job(tiny))
    assert isinstance(out[-1], JobFailed) and out[-1].user_error
    assert "even with the most frugal plan" in out[-1].message
    _run_local(worker, events, _job(tiny, "Hello there."))
    assert isinstance(events[-1], JobFinished)  # the worker is still usable


def test_out_of_memory_while_loading_steps_down(tmp_path, tiny, monkeypatch, one_thread):
    real_load, loads = Engine.load, []

    def load_failing_once(ref, plan):
        loads.append(plan.batch_size)
        if len(loads) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return real_load(ref, plan)

    monkeypatch.setattr(Engine, "load", staticmethod(load_failing_once))
    worker, events = _local_worker(tmp_path, WorkerSettings(max_batch=2))
    out = _run_local(worker, events, _job(tiny))
    assert loads == [2, 1]
    (change,) = [e for e in out if isinstance(e, PlanChanged)]
    assert change.cause is PlanChangeCause.OUT_OF_MEMORY and "while loading the model" in change.message
    assert (change.from_plan, change.to_plan, change.at_chunk) == ("cpu on cpu, batch 2", "cpu on cpu, batch 1", 0)
    assert isinstance(out[-1], JobFinished) and out[-1].plan == "cpu on cpu, batch 1"


def test_only_a_gpu_step_down_that_places_the_model_anew_goes_to_a_fresh_process(tiny):
    ref, hardware = describe(str(tiny)), PRESETS["laptop-4060-8g"]
    resident = make_plan(ref, hardware, Workload(300, 4))
    shorter = step_down(resident, ref, hardware)
    assert (shorter.level, shorter.max_chunk_chars) == ("resident", 150)
    assert not needs_fresh_process(resident, shorter)  # the same placement: the loaded model goes on
    codec_cpu = step_down(shorter, ref, hardware)
    assert codec_cpu.level == "codec-cpu" and needs_fresh_process(shorter, codec_cpu)
    ladder = candidates(ref, hardware, Workload(300, 4))
    gpu, cpu = [p for p in ladder if p.device != "cpu"], [p for p in ladder if p.device == "cpu"]
    assert needs_fresh_process(gpu[-1], cpu[0])  # onto the CPU: no CUDA context at all in the new worker
    assert [describe_plan(p) for p in cpu] == ["cpu on cpu, batch 4", "cpu on cpu, batch 2", "cpu on cpu, batch 1"]
    assert not needs_fresh_process(cpu[0], cpu[1])  # RAM ran short, which a new process does not add


def test_no_ladder_steps_down_into_more_fresh_processes_than_a_job_may_take():
    """Every fresh start begins one plan lower; the client's bound leaves room for the whole GPU part of
    every ladder, and one more start (a CUDA error on the last plan retries it)."""
    most = 0
    for machine in PRESETS.values():
        for hardware in (machine, with_vram_limit(machine, 4 * GiB)):
            for model in registry.specs():
                try:
                    ladder = candidates(describe(model), hardware)
                except NoPlanFitsError:
                    continue
                most = max(most, sum(needs_fresh_process(a, b) for a, b in pairwise(ladder)))
    assert 0 < most < MAX_FRESH_STARTS_WITHOUT_PROGRESS


def test_out_of_memory_loading_a_gpu_plan_ends_the_worker_when_the_lower_plan_places_anew(tmp_path, tiny,
                                                                                           monkeypatch):
    """A GPU preset's plan on this CPU machine, whose loads run out of memory as a full GPU's would: the
    shorter-chunk rung keeps the placement and is tried in place; the codec moving to the CPU needs a
    reload, so that plan is remembered and left to a fresh worker."""
    loads = []

    def load_out_of_memory(ref, plan):
        loads.append(plan.level)
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")

    monkeypatch.setattr(jobs, "usable_here", lambda hardware, spec: hardware)  # as if this PyTorch had CUDA
    monkeypatch.setattr(Engine, "load", staticmethod(load_out_of_memory))
    worker, events = _local_worker(tmp_path, WorkerSettings(max_batch=4))
    out = _run_local(worker, events, SpeakJob(FIVE_CHUNKS, SAMPLE_VOICE, model=str(tiny), chunk_chars=300,
                                              hardware="laptop-4060-8g"))
    assert loads == ["resident", "resident"]  # 300 characters, then 150 on the same placement
    changes = [e for e in out if isinstance(e, PlanChanged)]
    assert [(c.cause, c.to_plan) for c in changes] == [(PlanChangeCause.OUT_OF_MEMORY, "resident on cuda:0, batch 4"),
                                                       (PlanChangeCause.OUT_OF_MEMORY, "codec-cpu on cuda:0, batch 4")]
    assert "fresh worker process" not in changes[0].message and "in a fresh worker process" in changes[1].message
    assert worker.exit_code == EXIT_TO_RELOAD and not any(isinstance(e, TERMINAL_EVENTS) for e in out)
    (remembered,) = json.loads((tmp_path / "plans.json").read_text()).values()
    assert remembered["plan"] == "codec-cpu on cuda:0, batch 4"


def test_a_cuda_error_remembers_the_lower_plan_and_ends_the_worker(tmp_path, tiny, one_thread):
    worker, events = _local_worker(tmp_path, WorkerSettings(max_batch=2), Fault("cuda", 3))
    out = _run_local(worker, events, _job(tiny))
    (change,) = [e for e in out if isinstance(e, PlanChanged)]
    assert (change.cause, change.at_chunk) == (PlanChangeCause.GPU_ERROR, 2)
    assert (change.from_plan, change.to_plan) == ("cpu on cpu, batch 2", "cpu on cpu, batch 1")
    assert "in a fresh worker process" in change.message and "AcceleratorError" in change.message
    assert [e.index for e in out if isinstance(e, ChunkReady)] == [0, 1]
    assert not any(isinstance(e, TERMINAL_EVENTS) for e in out)  # the job goes on in the next worker
    assert worker.exit_code == EXIT_AFTER_GPU_ERROR
    (remembered,) = json.loads((tmp_path / "plans.json").read_text()).values()
    assert remembered["plan"] == "cpu on cpu, batch 1"


def test_preflight_steps_down_when_free_vram_shrinks(tmp_path, tiny, monkeypatch):
    from inference.worker.process import _Run

    ref, hardware = describe(str(tiny)), PRESETS["laptop-4060-8g"]
    prepared = jobs.PreparedJob(_job(tiny), ref, make_plan(ref, hardware, Workload(20, 1)), ["a"],
                                np.zeros(1, np.float32), 24000, hardware)
    assert prepared.plan.device == "cuda:0"
    worker, events = _local_worker(tmp_path)
    switched = []
    monkeypatch.setattr(worker, "_switch", lambda run, plan: switched.append(plan))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 0)
    run = _Run(Submit("job", prepared.job), ref, hardware, prepared.plan, prepared, tuple(prepared.chunks))

    monkeypatch.setattr(memory, "gpu_free_bytes", lambda device: 4 * 2**30)
    worker._preflight(run, 0)
    assert switched == []
    monkeypatch.setattr(memory, "gpu_free_bytes", lambda device: 1 * MiB)
    worker._preflight(run, 0)
    (lower,) = switched
    assert lower.level != "resident" and lower.memory.allocator_peak <= 1 * MiB  # the tiny codec moved off
    assert isinstance(events[-1], PlanChanged) and "GPU memory is free now" in events[-1].message
    assert events[-1].cause is PlanChangeCause.PREFLIGHT and events[-1].at_chunk == 0
    monkeypatch.setattr(memory, "gpu_free_bytes", lambda device: 0)
    worker._preflight(run, 0)
    assert switched[-1].device == "cpu"


def test_preflight_shortfall_counts_what_torch_already_holds(tiny):
    plan = make_plan(describe(str(tiny)), PRESETS["laptop-4060-8g"])
    need = plan.memory.allocator_peak
    assert memory.shortfall(plan, need, 0) == 0
    assert memory.shortfall(plan, need // 2, need // 2) == 0
    assert memory.shortfall(plan, need // 2, 0) > 0


# Through a real worker process.

def test_worker_audio_equals_the_in_process_pipeline(client, tiny, one_thread):
    job = _job(tiny)
    job_id = client.submit(job)
    events = _until_end(client, job_id)
    kinds = [type(e).__name__ for e in events if isinstance(e, (JobStarted, ChunkReady, JobFinished))]
    assert kinds == ["JobStarted"] + ["ChunkReady"] * 5 + ["JobFinished"]
    assert [e.index for e in events if isinstance(e, ChunkReady)] == list(range(5))
    assert any(isinstance(e, ChunkPiece) for e in events)  # Pocket TTS's CPU tier streams each chunk
    prepared = jobs.prepare(job)
    engine = Engine.load(prepared.ref, prepared.plan)
    audio = protocol.join(list(jobs.synthesize(prepared, engine)))
    assert np.array_equal(_audio(events), audio)


def test_a_narration_can_start_at_a_later_chunk(client, tiny, tmp_path, one_thread):
    job_id = client.submit(_job(tiny), start_chunk=3)
    events = _until_end(client, job_id)
    assert [e.index for e in events if isinstance(e, ChunkReady)] == [3, 4]
    worker, local = _local_worker(tmp_path)
    full = [e for e in _run_local(worker, local, _job(tiny)) if isinstance(e, ChunkReady)]
    tail = [e for e in events if isinstance(e, ChunkReady)]
    assert all(np.array_equal(a.audio, b.audio) for a, b in zip(full[3:], tail, strict=True))


def test_cancel_stops_within_one_chunk_and_the_worker_stays_usable(client, tiny):
    long = _job(tiny, " ".join(f"Sentence number {i}." for i in range(12)))
    running = client.submit(long)
    queued = client.submit(_job(tiny, "Never spoken."))
    client.cancel(queued)
    chunks_after_cancel = None
    for event in client.events(120):
        if isinstance(event, ChunkReady) and event.job_id == running:
            if chunks_after_cancel is None:
                client.cancel(running)
                chunks_after_cancel = 0
            else:
                chunks_after_cancel += 1
        assert event.job_id == running or isinstance(event, JobCancelled)  # the queued job never starts
        if isinstance(event, JobCancelled) and event.job_id == running:
            break
    assert chunks_after_cancel <= 1
    result = client.speak(_job(tiny, "Still here."), timeout=120)
    assert len(result.chunks) == 1 and result.audio().size > 0


def test_out_of_memory_steps_down_retries_the_chunk_and_remembers(tiny, monkeypatch, tmp_path):
    monkeypatch.setenv("VESPER_FAULT", "oom@2")
    monkeypatch.setenv("VESPER_CACHE_DIR", str(tmp_path))
    with WorkerClient(WorkerSettings(max_batch=2)) as faulty:
        result = faulty.speak(_job(tiny, "One two three. Four five six. Seven eight nine."), timeout=120)
        assert [c.index for c in result.chunks] == [0, 1, 2]
        assert result.plan == "cpu on cpu, batch 1"
        assert any("Ran out of memory at chunk 1 of 3" in n for n in result.notices)
        assert faulty.restarts == 0
        (remembered,) = json.loads((tmp_path / "plans.json").read_text()).values()
        assert remembered["plan"] == "cpu on cpu, batch 1" and len(remembered["fingerprint"]) == 32
        again = faulty.speak(_job(tiny, "Hello there."), timeout=120)
        assert again.plan == "cpu on cpu, batch 1" and "higher plan ran out of memory" in again.notices[0]


def test_a_cuda_error_goes_on_in_a_fresh_worker_with_the_audio_of_a_step_down_in_place(tiny, monkeypatch, tmp_path,
                                                                                        one_thread):
    monkeypatch.setenv("VESPER_FAULT", "cuda@3")
    monkeypatch.setenv("VESPER_CACHE_DIR", str(tmp_path / "cache"))
    job = _job(tiny)
    with WorkerClient(WorkerSettings(max_batch=2)) as faulty:
        first_pid = faulty.worker_pid
        events = _until_end(faulty, faulty.submit(job), timeout=180)
        assert faulty.restarts == 1 and faulty.worker_pid != first_pid
    assert isinstance(events[-1], JobFinished) and events[-1].plan == "cpu on cpu, batch 1"
    assert [e.index for e in events if isinstance(e, ChunkReady)] == list(range(5))  # none lost, none twice
    order = [e for e in events if isinstance(e, (JobStarted, PlanChanged, WorkerRestarted))]
    assert [type(e).__name__ for e in order] == ["JobStarted", "PlanChanged", "WorkerRestarted", "JobStarted"]
    _, change, restart, resumed = order
    assert (change.cause, change.at_chunk, change.to_plan) == (PlanChangeCause.GPU_ERROR, 2, "cpu on cpu, batch 1")
    assert (restart.cause, restart.exit_code, restart.resume_chunk) == (RestartCause.FRESH_PROCESS,
                                                                        EXIT_AFTER_GPU_ERROR, 2)
    assert "fresh CUDA context" in restart.message and "chunk 3 of 5" in restart.message
    assert (resumed.start_chunk, resumed.plan) == (2, "cpu on cpu, batch 1")  # the remembered plan
    (remembered,) = json.loads((tmp_path / "cache" / "plans.json").read_text()).values()
    assert remembered["plan"] == "cpu on cpu, batch 1"
    # The same plans from the same chunks as a step-down in place (out of memory on the CPU): the same audio.
    worker, local = _local_worker(tmp_path, WorkerSettings(max_batch=2), Fault("oom", 3))
    assert np.array_equal(_audio(events), _audio(_run_local(worker, local, job)))


def test_a_job_whose_fresh_workers_keep_failing_ends_in_one_readable_failure(tiny, monkeypatch, tmp_path):
    monkeypatch.setattr(client_module, "MAX_FRESH_STARTS_WITHOUT_PROGRESS", 1)  # the app allows 8: 10 workers
    monkeypatch.setenv("VESPER_FAULT", "cuda@1,cuda@1")
    monkeypatch.setenv("VESPER_CACHE_DIR", str(tmp_path))
    with WorkerClient(WorkerSettings(max_batch=2)) as faulty:
        events = _until_end(faulty, faulty.submit(_job(tiny, "One two three.")), timeout=240)
        failed = events[-1]
        assert isinstance(failed, JobFailed) and failed.user_error and "\n" not in failed.message
        assert failed.message.startswith("The GPU kept failing: 2 fresh worker processes in a row")
        # Batch 2 stepped down to batch 1; batch 1 has no lower plan, so the next worker tried it again.
        assert [e.to_plan for e in events if isinstance(e, PlanChanged)] == ["cpu on cpu, batch 1"]
        restarts = [e for e in events if isinstance(e, WorkerRestarted)]
        assert [r.cause for r in restarts] == [RestartCause.FRESH_PROCESS] and faulty.restarts == 1
        result = faulty.speak(_job(tiny, "Still here."), timeout=120)  # a third worker, without a fault
        assert len(result.chunks) == 1


@pytest.mark.parametrize("batch, fault, resumed_at", [(1, "crash@2", 1), (2, "crash@3", 2)])
def test_crash_resumes_from_the_first_unfinished_chunk(tiny, monkeypatch, tmp_path, one_thread, batch, fault,
                                                       resumed_at):
    monkeypatch.setenv("VESPER_FAULT", fault)
    job = _job(tiny)
    with WorkerClient(WorkerSettings(max_batch=batch)) as faulty:
        first_pid = faulty.worker_pid
        job_id = faulty.submit(job)
        events = _until_end(faulty, job_id, timeout=180)
        assert faulty.restarts == 1 and faulty.worker_pid != first_pid
    assert isinstance(events[-1], JobFinished)
    assert [e.index for e in events if isinstance(e, ChunkReady)] == list(range(5))  # none lost, none twice
    assert [e.start_chunk for e in events if isinstance(e, JobStarted)] == [0, resumed_at]
    (restart,) = [e for e in events if isinstance(e, WorkerRestarted)]
    assert (restart.cause, restart.resume_chunk, restart.exit_code) == (RestartCause.CRASHED, resumed_at, -9)
    worker, local = _local_worker(tmp_path, WorkerSettings(max_batch=batch))
    assert np.array_equal(_audio(events), _audio(_run_local(worker, local, job)))


def test_a_worker_killed_while_idle_is_replaced_on_the_next_job(client, tiny):
    os.kill(client.worker_pid, signal.SIGKILL)
    result = client.speak(_job(tiny, "After the kill."), timeout=120)
    assert [c.index for c in result.chunks] == [0]


def test_user_errors_come_back_as_vesper_errors(client):
    with pytest.raises(VesperError, match="Unknown model 'no-such-model'"):
        client.speak(SpeakJob("Hello.", SAMPLE_VOICE, model="no-such-model"), timeout=120)
    with pytest.raises(VesperError, match="text is empty"):
        client.submit(SpeakJob("  ", SAMPLE_VOICE))  # checked before anything is queued


# The event contract.

def _kinds(events: list) -> list[str]:
    """Event names with stages spelled out, ChunkPieces left out (how many depends on the decoder)."""
    return [f"Stage:{e.stage.value}" if isinstance(e, StageStarted) else type(e).__name__
            for e in events if not isinstance(e, ChunkPiece)]


def test_a_job_reports_every_stage_and_progress_in_order(tmp_path, tiny, one_thread):
    worker, events = _local_worker(tmp_path)
    out = _run_local(worker, events, _job(tiny, "One two three. Four five six."))
    per_chunk = ["MemorySample", "ChunkReady", "GenerationProgress"]
    # A MemorySample right after the model is loaded: the memory is known before the first chunk.
    assert _kinds(out) == ["Stage:resolving", "Stage:planning", "JobStarted", "Stage:loading", "MemorySample",
                           "Stage:encoding voice", "Stage:generating", *per_chunk, *per_chunk, "Stage:done",
                           "JobFinished"]
    progress = [e for e in out if isinstance(e, GenerationProgress)]
    assert [(p.chunks_done, p.chunks_total) for p in progress] == [(1, 2), (2, 2)]
    chunks = [e for e in out if isinstance(e, ChunkReady)]
    assert progress[-1].audio_seconds == pytest.approx(sum(len(c.audio) for c in chunks) / 24000)
    assert progress[0].eta_seconds > 0 and progress[-1].eta_seconds == 0 and progress[-1].speed > 0
    sample = next(e for e in out if isinstance(e, MemorySample))
    assert sample.rss_bytes > 0 and sample.nvml_total_bytes == 0 and sample.cuda_reserved_bytes == 0  # CPU plan
    again = _run_local(worker, events, _job(tiny, "Seven eight nine."), "again")
    # The model is loaded and the voice cached: neither stage comes again.
    assert _kinds(again)[:4] == ["Stage:resolving", "Stage:planning", "JobStarted", "Stage:generating"]


def test_settings_update_applies_to_the_next_job_not_the_running_one(tmp_path, tiny, one_thread):
    worker, events = _local_worker(tmp_path, WorkerSettings(max_batch=1, voice_cache_size=4))
    worker.inbox.put(UpdateSettings(WorkerSettings(max_batch=2, voice_cache_size=1)))  # read while job 1 runs
    first = _run_local(worker, events, _job(tiny), "first")
    second = _run_local(worker, events, _job(tiny), "second")
    plans = [next(e for e in out if isinstance(e, JobStarted)).plan for out in (first, second)]
    assert plans == ["cpu on cpu, batch 1", "cpu on cpu, batch 2"] and worker.voices.capacity == 1


def test_an_internal_error_fails_with_one_line_and_diagnostics(client, tiny, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file" * 10)
    events = _until_end(client, client.submit(_job(broken, "Hello there.")))
    failed = events[-1]
    assert isinstance(failed, JobFailed) and not failed.user_error
    assert "\n" not in failed.message and "Traceback" not in failed.message
    assert failed.message.startswith("Internal error in the inference worker")
    for part in ("Traceback", "python ", "torch ", "transformers ", "vesper ", "plan: cpu on cpu",
                 "last worker log lines", "failed"):
        assert part in failed.detail, part
    with pytest.raises(WorkerError) as raised:
        client.speak(_job(broken, "Hello there."), timeout=120)
    assert raised.value.detail.startswith("vesper ")


def test_settings_update_through_the_client(client, tiny):
    before = client.settings
    client.update_settings(replace(before, low_latency=False, max_batch=2))
    try:
        events = _until_end(client, client.submit(_job(tiny, "One two three. Four five six.")))
    finally:
        client.update_settings(before)
    assert next(e for e in events if isinstance(e, JobStarted)).plan == "cpu on cpu, batch 2"
    assert [e.index for e in events if isinstance(e, ChunkReady)] == [0, 1]


def test_unload_then_preload_then_speak_loads_once(client, tiny):
    request = client.unload()
    answer = next(e for e in client.events(120) if isinstance(e, ModelUnloaded))
    assert answer.request_id == request
    preload = _until_end(client, client.preload(str(tiny)))
    assert _kinds(preload) == ["Stage:resolving", "Stage:planning", "Stage:loading", "MemorySample", "Stage:done",
                               "JobFinished"]
    assert preload[-1].plan == "cpu on cpu, batch 1"
    spoken = _until_end(client, client.submit(_job(tiny, "Hello there.")))
    assert isinstance(spoken[-1], JobFinished) and "Stage:loading" not in _kinds(spoken)


def test_cancel_while_loading_kills_the_worker_and_the_next_job_runs(client, tiny, tmp_path):
    """Loading weights cannot be interrupted: with no grace period the cancel kills the worker at once
    (the tiny model loads in about 0.6 s here, the cancel follows the loading stage within milliseconds)."""
    copy = tmp_path / "copy"
    shutil.copytree(tiny, copy)  # another folder: a model the worker has not loaded
    before, pid = client.settings, client.worker_pid
    client.update_settings(replace(before, cancel_grace_seconds=0.0))
    try:
        job_id = client.submit(_job(copy, "Hello there."))
        events = []
        for event in client.events(120):
            if event.job_id != job_id:
                continue
            events.append(event)
            if isinstance(event, StageStarted) and event.stage is Stage.LOADING:
                client.cancel(job_id)
            if isinstance(event, TERMINAL_EVENTS):
                break
    finally:
        client.update_settings(before)
    assert isinstance(events[-1], JobCancelled) and not any(isinstance(e, ChunkReady) for e in events)
    result = client.speak(_job(tiny, "Still here."), timeout=120)
    assert len(result.chunks) == 1 and client.worker_pid != pid


def test_a_hung_worker_is_replaced_and_the_job_resumes_identically(tiny, monkeypatch, tmp_path, one_thread):
    monkeypatch.setenv("VESPER_FAULT", "hang@2")
    job = _job(tiny)
    settings = WorkerSettings(max_batch=1, heartbeat_seconds=0.25, hang_seconds=8)
    with WorkerClient(settings) as faulty:
        events = _until_end(faulty, faulty.submit(job), timeout=240)
        assert faulty.restarts == 1
    assert isinstance(events[-1], JobFinished)
    (restart,) = [e for e in events if isinstance(e, WorkerRestarted)]
    assert (restart.cause, restart.resume_chunk, restart.exit_code) == (RestartCause.HUNG, 1, -9)
    assert [e.index for e in events if isinstance(e, ChunkReady)] == list(range(5))
    assert [e.start_chunk for e in events if isinstance(e, JobStarted)] == [0, 1]
    worker, local = _local_worker(tmp_path, settings)
    assert np.array_equal(_audio(events), _audio(_run_local(worker, local, job)))


# On the GPU: stepping down after out-of-memory, in place and in fresh workers.

@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_streamed_plan_on_the_gpu_loads_again_after_running_out_of_memory_in_one_process(tmp_path, tiny):
    """What the memory matrix met: load the streamed plan (host buffers registered), run out of memory,
    unload, load again in the same process; three times, then the job runs to its end."""
    from inference.executors.streamed_executor import live_registrations

    job = _job(tiny)
    prepared = jobs.prepare(job, 1)
    streamed = prepared.plan
    while streamed.level != "streamed":
        streamed = step_down(streamed, prepared.ref, prepared.hardware)
    before = live_registrations()
    for _ in range(3):
        worker, events = _local_worker(tmp_path, fault=Fault("oom", 1))
        worker.plans.remember(prepared.ref, prepared.hardware, streamed)
        out = _run_local(worker, events, job)
        assert next(e for e in out if isinstance(e, JobStarted)).plan.startswith("streamed on cuda")
        (change,) = [e for e in out if isinstance(e, PlanChanged)]
        assert change.cause is PlanChangeCause.OUT_OF_MEMORY and "in a fresh worker process" in change.message
        assert worker.exit_code == EXIT_TO_RELOAD and not any(isinstance(e, TERMINAL_EVENTS) for e in out)
        assert live_registrations() > before  # still loaded, as in a worker about to end
        worker.unload()
        assert live_registrations() == before
    worker, events = _local_worker(tmp_path)
    worker.plans.remember(prepared.ref, prepared.hardware, streamed)
    out = _run_local(worker, events, job)
    assert isinstance(out[-1], JobFinished) and out[-1].plan.startswith("streamed on cuda")
    assert [e.index for e in out if isinstance(e, ChunkReady)] == list(range(5))
    worker.unload()
    assert live_registrations() == before


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_out_of_memory_on_the_gpu_steps_down_in_fresh_workers_and_the_job_finishes(tiny, monkeypatch, tmp_path):
    monkeypatch.setenv("VESPER_FAULT", "oom@1,oom@1")  # the first two workers each run out at their first chunk
    monkeypatch.setenv("VESPER_CACHE_DIR", str(tmp_path))
    with WorkerClient(WorkerSettings(max_batch=1)) as faulty:
        events = _until_end(faulty, faulty.submit(_job(tiny)), timeout=300)
        assert faulty.restarts == 2
    assert isinstance(events[-1], JobFinished) and events[-1].plan.startswith("streamed on cuda")
    changes = [e for e in events if isinstance(e, PlanChanged)]
    assert [c.to_plan.split(" on ")[0] for c in changes] == ["codec-cpu", "streamed"]
    assert all(c.cause is PlanChangeCause.OUT_OF_MEMORY for c in changes)
    restarts = [e for e in events if isinstance(e, WorkerRestarted)]
    assert [(r.cause, r.exit_code, r.resume_chunk) for r in restarts] == [(RestartCause.FRESH_PROCESS,
                                                                           EXIT_TO_RELOAD, 0)] * 2
    assert [e.index for e in events if isinstance(e, ChunkReady)] == list(range(5))
    (remembered,) = json.loads((tmp_path / "plans.json").read_text()).values()
    assert remembered["plan"].startswith("streamed on cuda")


# The command line, through launch.py.

SAY_TEXT = " ".join(f"This is sentence number {i} of a narration that fills three chunks." for i in range(9))


def _say(tmp_path: Path, tiny: Path, name: str, fault: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "VESPER_CACHE_DIR": str(tmp_path / f"cache-{name}"), "VESPER_FAULT": fault}
    return subprocess.run([sys.executable, "launch.py", "say", SAY_TEXT, "--voice", str(SAMPLE_VOICE),
                           "--model", str(tiny), "--seed", "3", "--out", str(tmp_path / f"{name}.wav")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=240)


def test_say_survives_out_of_memory_and_a_crash(tmp_path, tiny, one_thread):
    oom = _say(tmp_path, tiny, "oom", "oom@2")
    assert oom.returncode == 0, oom.stderr
    assert "chunk 3/3" in oom.stderr and "Ran out of memory at chunk 1 of 3" in oom.stderr
    assert "cpu on cpu, batch 2" in oom.stdout  # the lower plan, named in the result line

    crash = _say(tmp_path, tiny, "crash", "crash@2")
    assert crash.returncode == 0, crash.stderr
    assert "restarted" in crash.stderr
    worker, events = _local_worker(tmp_path, WorkerSettings())  # the CLI's settings
    expected = tmp_path / "expected.wav"
    job = SpeakJob(SAY_TEXT, SAMPLE_VOICE, model=str(tiny), seed=3)
    write_wav(expected, _audio(_run_local(worker, events, job)), 24000)
    assert sf.read(tmp_path / "crash.wav")[0].tolist() == sf.read(expected)[0].tolist()


# Memory over many jobs.

def test_hundred_jobs_do_not_grow_worker_memory(client, tiny):
    started = time.perf_counter()
    series = []
    for i in range(100):
        result = client.speak(_job(tiny, f"Short line {i}."), timeout=120)
        series.append(result.memory)
    warm = series[9]
    rss = [m.rss_bytes - warm.rss_bytes for m in series[10:]]
    elapsed = time.perf_counter() - started
    print(f"100 jobs in {elapsed:.1f} s; RSS after warm-up {warm.rss_bytes / MiB:.1f} MiB, "
          f"growth max {max(rss) / MiB:.2f} MiB, last {rss[-1] / MiB:.2f} MiB")
    assert max(rss) <= 16 * MiB
    if warm.cuda_reserved_bytes:
        assert max(m.cuda_allocated_bytes - warm.cuda_allocated_bytes for m in series[10:]) <= 16 * MiB
        assert max(m.cuda_reserved_bytes - warm.cuda_reserved_bytes for m in series[10:]) <= 16 * MiB


def test_preflight_counts_the_caches_a_loaded_engine_keeps_and_moves_to_a_placement_that_fits(tmp_path, tiny,
                                                                                                monkeypatch):
    """Another program took every free byte between two jobs: the loaded engine still holds its weights and
    its batch's caches, so a smaller batch of the same placement gains nothing (its activations would be new
    memory); the pre-flight goes on to a plan that places the model anew within what the worker holds."""
    from inference.worker.process import _Run

    ref, hardware = describe(str(tiny)), PRESETS["laptop-4060-8g"]
    prepared = jobs.PreparedJob(_job(tiny), ref, make_plan(ref, hardware, Workload(20, 2)), ["a"],
                                np.zeros(1, np.float32), 24000, hardware)
    plan = prepared.plan
    worker, events = _local_worker(tmp_path)
    switched = []
    monkeypatch.setattr(worker, "_switch", lambda run, lower: switched.append(lower))
    worker.engine, worker._engine_key = SimpleNamespace(fast=object()), fingerprint(plan, placement_only=True)
    holding = plan.memory.allocator_peak - plan.memory.activations  # weights and caches: all allocated
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: holding)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: holding)
    monkeypatch.setattr(memory, "gpu_free_bytes", lambda device: 0)
    run = _Run(Submit("job", prepared.job), ref, hardware, plan, prepared, tuple(prepared.chunks))
    worker._preflight(run, 0)
    worker.engine, worker._engine_key = None, None  # nothing real was loaded
    (lower,) = switched
    assert fingerprint(lower, placement_only=True) != fingerprint(plan, placement_only=True)
    assert memory.shortfall(lower, 0, holding) <= 0  # loaded anew, it fits in what the worker gives back
    assert events[-1].cause is PlanChangeCause.PREFLIGHT

    held = memory.Held(holding, static_caches=True)
    assert memory.shortfall(plan, plan.memory.activations, holding, held) == 0  # room for the transients only
    assert memory.shortfall(plan, 0, holding + plan.memory.activations, held) == 0  # cached by torch: the same
    plain = memory.Held(holding, static_caches=False)  # plain generate allocates its KV cache per chunk
    assert memory.shortfall(plan, plan.memory.activations, holding, plain) == plan.memory.kv_cache
