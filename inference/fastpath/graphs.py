"""One decode step, run eagerly or replayed from a captured CUDA graph.

A CSM frame is ~150 small kernels for the backbone and ~30 x 60 for the depth decoder: launched
one by one from Python they cost far more than their arithmetic. Captured once, the whole frame
is a single replay. The step function only reads and writes preallocated tensors, so the same
function runs eagerly on the CPU (and is what the CPU tests exercise).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def graphs_available(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_available()


class StepRunner:
    """Calls ``step()`` then ``then()``; on CUDA with ``use_graph`` ``step`` replays a graph captured by
    ``capture``. ``then`` always runs eagerly: the part of a frame that must call a model whose
    layers an offload executor swaps in and out."""

    def __init__(self, step: Callable[[], None], device: torch.device, use_graph: bool | None = None,
                 then: Callable[[], None] | None = None):
        self.step = step
        self.then = then
        self.device = device
        self.use_graph = graphs_available(device) and use_graph is not False
        self.graph: torch.cuda.CUDAGraph | None = None
        self.capture_seconds = 0.0

    def capture(self, warmup: int = 2) -> None:
        """Warm the step up on a side stream (lazy inits, autotuning), then record it.

        The warm-up runs really execute and change the step's state: callers reset their
        buffers before each real decode anyway.
        """
        if not self.use_graph or self.graph is not None:
            return
        start = time.perf_counter()
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(warmup):
                self.step()
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.step()
        torch.cuda.synchronize(self.device)
        self.graph = graph
        self.capture_seconds = time.perf_counter() - start

    def __call__(self) -> None:
        if self.graph is not None:
            self.graph.replay()
        else:
            self.step()
        if self.then is not None:
            self.then()
