"""Live degradation on a real GPU: another program takes the VRAM in the middle of a narration.

A narration runs one worker job per chapter. Between two jobs the worker gives its cached blocks back
(``memory.release``), so a program that starts then (a game, a second app) can take that memory. The
next job's pre-flight reads NVML, sees the shortfall and steps down with a typed ``PlanChanged``
(cause PREFLIGHT) before any allocation fails; the narration finishes. The CPU test of the same
decision is ``tests/test_worker.py::test_preflight_steps_down_when_free_vram_shrinks``.

The model is CSM-1B at its real size (random weights, ``tests.tiny_models.full_size``): a tiny checkpoint
still holds all it will ever need after its first job (weights, caches and cuBLAS workspaces outweigh its
activations), so no program taking the rest could make it short; on the H200 it ran on, unchanged.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from inference.narration.project import Generation, Project, model_revision
from inference.narration.runner import Relay, Runner
from inference.worker.client import WorkerClient
from inference.worker.protocol import JobFinished, PlanChangeCause, PlanChanged
from tests.narration_books import NARRATOR, book

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

# Takes every byte the driver will give, in shrinking pieces, then says so and holds it until stdin closes.
INTRUDER = textwrap.dedent("""
    import sys, torch
    held, piece = [], 1 << 30
    while piece >= 1 << 20:
        try:
            held.append(torch.empty(piece, dtype=torch.uint8, device="cuda"))
        except torch.OutOfMemoryError:
            piece //= 2
    free, total = torch.cuda.mem_get_info()
    print(f"holding {sum(t.numel() for t in held)} bytes, {free} free", flush=True)
    sys.stdin.read()
""")


BOOK = book({"One": [["The first chapter is short."]], "Two": [["The second one follows.", "It has two chunks."]],
             "Three": [["And that was all."]]})


@pytest.fixture
def intruder():
    """``start()`` launches the memory-hungry program and returns once it holds the GPU's memory."""
    started: list[subprocess.Popen] = []

    def start() -> str:
        process = subprocess.Popen([sys.executable, "-c", INTRUDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   text=True)
        started.append(process)
        return process.stdout.readline().strip()

    yield start
    for process in started:
        process.stdin.close()
        process.wait(timeout=60)


@pytest.mark.slow
def test_vram_taken_between_chapters_steps_the_plan_down_before_an_oom(tmp_path, intruder, monkeypatch):
    from tests.tiny_models.full_size import build_full

    monkeypatch.setenv("VESPER_CACHE_DIR", str(tmp_path / "cache"))  # no plan history from other runs
    model = str(build_full("csm-1b", tmp_path / "csm-1b"))
    relay, events, said = Relay(), [], []

    def on_event(event) -> None:
        events.append(event)
        if isinstance(event, JobFinished) and not said:  # the first chapter is done: the other program starts
            said.append(intruder())
        relay(event)

    project = Project(tmp_path / "project").open()
    planned = project.plan(BOOK, {None: NARRATOR}, Generation(model, model_revision(model), 0))
    with WorkerClient(on_event=on_event) as client:
        result = relay.serve(Runner(client)).run(project, planned, model, hardware=None)  # this machine's GPU
    assert said and said[0].startswith("holding")
    changes = [e for e in events if isinstance(e, PlanChanged)]
    assert changes and changes[0].cause is PlanChangeCause.PREFLIGHT, [(c.cause, c.message) for c in changes]
    assert "GPU memory is free now" in changes[0].message
    assert not any(c.cause is PlanChangeCause.OUT_OF_MEMORY for c in changes)
    assert result.generated == 4 and len([e for e in events if isinstance(e, JobFinished)]) == 3
