"""Page-locked host memory never outlives the load or the engine that registered it.

A worker that ran out of memory loads again in the same process (a smaller batch, a failed load): a host
buffer still registered with CUDA after its stream is gone makes the next registration of that address
fail, and CUDA's pending error then surfaces in an unrelated kernel (``AcceleratorError: CUDA error: part
or all of the requested memory range is already mapped``, benchmarks/results/memory-matrix-h200.md). On
the CPU the streamed executor keeps the same count of registrations (``live_registrations``) without the
CUDA calls, so these tests see what a GPU would leave behind; the ``cuda`` tests make the real calls.
"""

from __future__ import annotations

import gc
from dataclasses import replace

import pytest
import torch

from inference import calibration, paths
from inference.engine import Engine
from inference.executors.streamed_executor import LayerStream, live_registrations
from inference.models import describe
from inference.worker import memory
from tests.test_executors import _on_cpu, _rungs

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
TOO_LARGE = 2**50  # bytes: more than any machine's address space, so allocating it fails at once


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.CACHE_DIR_ENV, str(tmp_path / "cache"))


def _streamed_plan(tiny_checkpoint, family: str = "pocket_tts"):
    ref = describe(str(tiny_checkpoint(family)))
    return ref, _rungs(ref)["streamed", "streamed"]


def _layers_failing_at_the_second(device: torch.device) -> list[torch.nn.Module]:
    """A small layer that packs (and registers), then one too large for host memory, as a load that runs
    out of memory half-way through packing meets it."""
    small = torch.nn.Linear(64, 64)
    huge = torch.nn.Linear(TOO_LARGE // 4 // 2**20, 2**20, bias=False, device="meta")
    return [small, huge]


def _live_streams() -> list[LayerStream]:
    gc.collect()
    return [o for o in gc.get_objects() if type(o) is LayerStream]


def test_a_stream_that_fails_while_packing_unregisters_what_it_registered():
    before = live_registrations()
    layers = _layers_failing_at_the_second(torch.device("cpu"))
    with pytest.raises(RuntimeError) as raised:
        LayerStream(layers, torch.device("cpu"))
    assert memory.is_out_of_memory(raised.value)  # what the worker steps down on
    del raised
    assert live_registrations() == before
    assert not layers[0]._forward_pre_hooks and not layers[0]._forward_hooks
    assert _live_streams() == []


def test_a_load_that_fails_after_placing_closes_the_stream(tiny_checkpoint, monkeypatch):
    """The calibration probe (a prefill at the worst-case chunk) is where a GPU load runs out of memory
    after the executor placed the model; on the CPU it is skipped, so here it is made to fail."""
    ref, plan = _streamed_plan(tiny_checkpoint)

    before = live_registrations()

    def probe_out_of_memory(plan, ref, loaded):
        assert live_registrations() == before + len(plan.streamed_layers)  # the stream holds its buffers now
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(calibration, "calibrate", probe_out_of_memory)
    with pytest.raises(torch.OutOfMemoryError):
        Engine.load(ref, _on_cpu(plan))
    assert live_registrations() == before
    assert _live_streams() == []


def test_closing_an_engine_leaves_no_registration_and_may_run_twice(tiny_checkpoint):
    ref, plan = _streamed_plan(tiny_checkpoint)
    before = live_registrations()
    engine = Engine.load(ref, _on_cpu(plan))
    assert live_registrations() == before + len(plan.streamed_layers)
    engine.close()
    assert live_registrations() == before and engine.keep == []
    engine.close()
    del engine
    assert _live_streams() == []


@cuda
@pytest.mark.cuda
def test_a_failed_registration_leaves_no_pending_cuda_error():
    """Why the worker met ``already mapped`` far from any registration: a failed cudaHostRegister leaves
    its error pending, and the next kernel launch reports it. The stream's fallback clears it."""
    from inference.executors.streamed_executor import _clear_last_error

    device = torch.device("cuda:0")
    torch.ones(1, device=device)  # CUDA initialised first: nothing of its start-up reads the error
    cudart = torch.cuda.cudart()
    buffer = torch.empty(2**20, dtype=torch.uint8)
    assert int(cudart.cudaHostRegister(buffer.data_ptr(), buffer.numel(), 0)) == 0
    try:
        assert int(cudart.cudaHostRegister(buffer.data_ptr(), buffer.numel(), 0)) != 0  # already registered
        with pytest.raises(RuntimeError, match="CUDA error"):
            torch.ones(1, device=device)  # an innocent kernel reports the registration's error
        torch.ones(1, device=device)  # reported once, then cleared
        assert int(cudart.cudaHostRegister(buffer.data_ptr(), buffer.numel(), 0)) != 0
        _clear_last_error(device, "test")
        assert torch.ones(1, device=device).add_(1).item() == 2
    finally:
        cudart.cudaHostUnregister(buffer.data_ptr())


@cuda
@pytest.mark.cuda
def test_a_stream_that_fails_on_the_gpu_unregisters_and_the_next_one_registers_again():
    device = torch.device("cuda:0")
    before = live_registrations()
    for _ in range(3):  # as a worker that runs out of memory loading, again and again, in one process
        layers = _layers_failing_at_the_second(device)
        with pytest.raises(RuntimeError):
            LayerStream(layers, device)
        assert live_registrations() == before
        assert not layers[0].weight.data.is_pinned()  # unregistered: ordinary memory again
    layers = [torch.nn.Linear(64, 64) for _ in range(3)]
    stream = LayerStream(layers, device)
    assert live_registrations() == before + 3 and all(p.host.is_pinned() for p in stream.packed)
    stream.close()
    assert live_registrations() == before


@cuda
@pytest.mark.cuda
def test_a_streamed_engine_on_the_gpu_loads_again_after_a_failed_load(tiny_checkpoint, monkeypatch,
                                                                     reference_voice):
    ref, plan = _streamed_plan(tiny_checkpoint)
    plan = replace(plan, device="cuda:0")
    real_calibrate = calibration.calibrate

    def probe_out_of_memory(plan, ref, loaded):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    before = live_registrations()
    monkeypatch.setattr(calibration, "calibrate", probe_out_of_memory)
    for _ in range(3):
        with pytest.raises(torch.OutOfMemoryError):
            Engine.load(ref, plan)
        assert live_registrations() == before
    monkeypatch.setattr(calibration, "calibrate", real_calibrate)
    engine = Engine.load(ref, plan)
    assert live_registrations() == before + len(plan.streamed_layers)
    prompt = engine.voice_prompt(*reference_voice, None)
    assert engine.synthesize(prompt, "Hello there.", 0).size > 0
    engine.close()
    assert live_registrations() == before
