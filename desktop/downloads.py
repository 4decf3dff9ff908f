"""Model downloads as the model manager shows them, without Qt: one per model, driven by worker events.

A download is a ``LoadJob`` submitted through the bridge: the worker resolves the model, fetches its
files into the Hugging Face cache (``DownloadProgress`` per file) and loads it. Cancelling sends
``Cancel``; the worker answers ``JobCancelled``, and the download stays cancelled until started again.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from inference.worker.protocol import (
    DownloadProgress,
    Event,
    JobCancelled,
    JobFailed,
    JobFinished,
    Stage,
    StageStarted,
)


class Phase(str, enum.Enum):
    RUNNING = "running"
    CANCELLING = "cancelling"
    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"


@dataclass
class Download:
    model: str
    job_id: str
    phase: Phase = Phase.RUNNING
    stage: Stage = Stage.RESOLVING
    files: dict[str, tuple[int, int]] = field(default_factory=dict)  # file -> (done, total) bytes
    message: str = ""

    @property
    def done_bytes(self) -> int:
        return sum(done for done, _ in self.files.values())

    @property
    def total_bytes(self) -> int:
        return sum(total for _, total in self.files.values())

    @property
    def fraction(self) -> float | None:
        """Of the bytes announced so far; None before the hub has announced a size."""
        return min(1.0, self.done_bytes / self.total_bytes) if self.total_bytes else None

    @property
    def active(self) -> bool:
        return self.phase in (Phase.RUNNING, Phase.CANCELLING)

    def describe(self) -> str:
        """One line for the model's row."""
        if self.phase is Phase.RUNNING and self.stage is Stage.DOWNLOADING:
            if self.fraction is None:
                return f"Downloading: {self.done_bytes / 1e9:.2f} GB"
            return f"Downloading: {self.done_bytes / 1e9:.2f} of {self.total_bytes / 1e9:.2f} GB ({self.fraction:.0%})"
        return {Phase.RUNNING: f"{self.stage.value.capitalize()}…", Phase.CANCELLING: "Cancelling…",
                Phase.DONE: "Downloaded and loaded.", Phase.CANCELLED: "Cancelled.",
                Phase.FAILED: self.message}[self.phase]


class Downloads:
    """Every download of this session by model; ``observe`` routes worker events to theirs by job id."""

    def __init__(self) -> None:
        self.by_model: dict[str, Download] = {}

    def start(self, model: str, job_id: str) -> Download:
        self.by_model[model] = Download(model, job_id)
        return self.by_model[model]

    def cancel(self, model: str) -> str | None:
        """Mark ``model``'s running download as cancelling; the job id to send ``Cancel`` for."""
        download = self.by_model.get(model)
        if download is None or download.phase is not Phase.RUNNING:
            return None
        download.phase = Phase.CANCELLING
        return download.job_id

    def observe(self, event: Event) -> Download | None:
        """Apply ``event`` to the download it belongs to; that download, or None for other jobs' events."""
        download = next((d for d in self.by_model.values() if d.job_id == getattr(event, "job_id", None)), None)
        if download is None or not download.active:
            return None
        if isinstance(event, StageStarted):
            download.stage = event.stage
        elif isinstance(event, DownloadProgress):
            download.stage = Stage.DOWNLOADING
            download.files[f"{event.repo_id}/{event.filename}"] = (event.done_bytes, event.total_bytes)
        elif isinstance(event, JobFinished):
            download.phase = Phase.DONE
        elif isinstance(event, JobCancelled):
            download.phase = Phase.CANCELLED
        elif isinstance(event, JobFailed):
            download.phase, download.message = Phase.FAILED, event.message
        else:
            return None
        return download
