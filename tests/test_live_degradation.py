"""Live degradation on a real GPU: another process takes VRAM mid-job and the job steps down, then finishes.

The CPU side of this behaviour (the pre-flight's decision for a given NVML reading) is covered in
tests/test_worker.py::test_preflight_steps_down_when_free_vram_shrinks; here the reading comes from a real
second process holding real memory, read by the worker through NVML.
"""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

torch = pytest.importorskip("torch")

from inference.worker.client import WorkerClient  # noqa: E402
from inference.worker.protocol import (  # noqa: E402
    ChunkReady,
    PlanChangeCause,
    PlanChanged,
    SpeakJob,
    WorkerSettings,
)
from tests.conftest import SAMPLE_VOICE  # noqa: E402

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

# Takes all but ``leave`` bytes of the GPU's free memory, says so, and holds it until stdin closes.
HOG = """
import sys, torch
free, _ = torch.cuda.mem_get_info()
held = torch.empty(max(0, free - int(sys.argv[1])), dtype=torch.uint8, device="cuda")
print("held", held.numel(), flush=True)
sys.stdin.read()
"""
# Long enough (a few hundred chunks of a tiny model) that the job is still running once the hog holds its memory.
SENTENCES = " ".join(f"This is sentence number {n} of a longer narration." for n in range(1, 301))


def test_another_process_taking_vram_mid_job_steps_the_plan_down(tiny_checkpoint, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    model = tiny_checkpoint("pocket_tts")
    hog: list[subprocess.Popen] = []
    taken = threading.Event()

    def on_chunk(event) -> None:
        if isinstance(event, ChunkReady) and event.index == 1 and not hog:
            process = subprocess.Popen([sys.executable, "-c", HOG, str(64 * 2**20)], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True)
            hog.append(process)
            assert process.stdout.readline().startswith("held")
            taken.set()

    try:
        with WorkerClient(WorkerSettings(max_batch=1)) as client:
            events: list = []
            result = client.speak(SpeakJob(SENTENCES, SAMPLE_VOICE, model=str(model), chunk_chars=60),
                                  lambda event: (events.append(event), on_chunk(event)))
    finally:
        for process in hog:
            process.stdin.close()
            process.wait(30)
    assert taken.is_set()
    changes = [e for e in events if isinstance(e, PlanChanged)]
    assert changes and changes[0].cause is PlanChangeCause.PREFLIGHT and changes[0].at_chunk >= 2
    assert changes[0].from_plan.split(" on ")[1].startswith("cuda")
    assert len(result.chunks) == len(set(c.index for c in result.chunks)) > 2  # every chunk, once
