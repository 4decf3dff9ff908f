"""What ``say`` shows on stderr while the worker runs: stages, downloads, generation, plan changes.

On a terminal, downloads and generation are tqdm bars; otherwise (a log, a test, a pipe) each becomes
plain lines, so nothing is garbled by carriage returns. Plan changes, restarts and notices are one
line each either way. Torch-free: it only reads events.
"""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm

from inference.worker.protocol import (
    DownloadProgress,
    Event,
    GenerationProgress,
    Notice,
    PlanChanged,
    Stage,
    StageStarted,
    WorkerRestarted,
)

QUICK_STAGES = (Stage.RESOLVING, Stage.PLANNING)  # well under a second: not worth a line


class Progress:
    """Call it with every event of one job; ``close()`` at the end."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self.bars = stream.isatty()
        self._downloads: dict[tuple[str, str], tqdm] = {}
        self._started: set[tuple[str, str]] = set()
        self._generation: tqdm | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, StageStarted):
            self._stage(event)
        elif isinstance(event, DownloadProgress):
            self._download(event)
        elif isinstance(event, GenerationProgress):
            self._generated(event)
        elif isinstance(event, (PlanChanged, WorkerRestarted, Notice)):
            self._line(f"vesper: {event.message}")

    def close(self) -> None:
        for bar in self._downloads.values():
            bar.close()
        self._downloads.clear()
        if self._generation is not None:
            self._generation.close()
            self._generation = None

    def _stage(self, event: StageStarted) -> None:
        if event.stage is Stage.DONE:
            self.close()
            return
        if event.stage in QUICK_STAGES:
            return  # a bad model name fails here: its error stays the only line
        detail = f": {event.detail}" if event.detail else ""
        self._line(f"vesper: {event.stage.value}{detail}")

    def _download(self, event: DownloadProgress) -> None:
        key = (event.repo_id, event.filename)
        if not self.bars:
            if key not in self._started:  # one line per file
                self._started.add(key)
                self._line(f"downloading {event.repo_id}/{event.filename} ({_size(event.total_bytes)})")
            return
        bar = self._downloads.get(key)
        if bar is None:
            bar = self._downloads[key] = tqdm(total=event.total_bytes or None, desc=event.filename, unit="B",
                                              unit_scale=True, file=self.stream, leave=False)
        bar.update(event.done_bytes - bar.n)
        if 0 < event.total_bytes <= event.done_bytes:
            bar.close()
            del self._downloads[key]

    def _generated(self, event: GenerationProgress) -> None:
        eta = f", ETA {event.eta_seconds:.0f} s" if event.eta_seconds is not None else ""
        summary = f"{event.audio_seconds:.1f} s of audio, {event.speed:.1f}x real time{eta}"
        if not self.bars:
            self._line(f"chunk {event.chunks_done}/{event.chunks_total}: {summary}")
            return
        if self._generation is None:
            self._generation = tqdm(total=event.chunks_total, desc="generating", unit="chunk", file=self.stream,
                                    initial=event.chunks_done - 1)
        self._generation.update(event.chunks_done - self._generation.n)
        self._generation.set_postfix_str(summary)

    def _line(self, text: str) -> None:
        if self.bars:
            tqdm.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)


def _size(n: int) -> str:
    if not n:
        return "size unknown"
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{max(1, n // 1024)} KiB"
