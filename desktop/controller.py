"""Speak and narrate through the bridge: builds the jobs, routes their events to the narration state
and to the player, and says when work starts and ends. No widget code: the window draws what it emits.

Until ``inference.narration``'s runner is on main, a narration runs as one ``SpeakJob`` per chunk,
each with its chunk and seed pinned (so a chunk can be regenerated alone and its take reproduced).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from PySide6.QtCore import QObject, Signal

from desktop.bridge import WorkerBridge
from desktop.state.narration import ChunkStatus, NarrationProgress
from desktop.widgets.player import PlayerWidget
from inference.errors import BadInputError
from inference.voice_library import Voice
from inference.worker import protocol as p


@dataclasses.dataclass(frozen=True)
class VoiceChoice:
    voice: Voice
    model: str


class Controller(QObject):
    rows_reset = Signal()  # the narration's rows were rebuilt
    row_changed = Signal(int)
    busy_changed = Signal(bool)
    failed = Signal(object)  # JobFailed

    def __init__(self, bridge: WorkerBridge, player: PlayerWidget, chunk_chars: int,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.bridge, self.player = bridge, player
        self.progress = NarrationProgress("", chunk_chars)
        self._speaking: set[str] = set()  # ids of plain speak jobs (not narration rows)
        self._failed: set[str] = set()
        self._quiet: set[str] = set()  # jobs stopped because an earlier chunk failed: their failure is not news
        bridge.chunk_piece.connect(self._on_piece)
        bridge.chunk_ready.connect(self._on_ready)
        bridge.job_failed.connect(self._on_failed)
        bridge.job_ended.connect(self._on_ended)

    @property
    def busy(self) -> bool:
        return bool(self._speaking or self.progress.active_jobs)

    # Commands.

    def set_text(self, text: str, kind: str = "text") -> None:
        """The editor's text changed: re-cut paragraphs (kept takes stay, edited paragraphs are marked)."""
        if self.progress.active_jobs:
            return  # rows are being generated; revised when the narration ends
        self.progress.revise(text, kind)
        self.rows_reset.emit()

    def speak(self, text: str, choice: VoiceChoice) -> None:
        """Say ``text`` now (a selection or a paragraph), playing it as it is generated."""
        self.stop()
        job = p.SpeakJob(text, choice.voice.recording, choice.voice.transcript, choice.model)
        self._speaking.add(self.bridge.speak(job))
        self.player.start_live()
        self.busy_changed.emit(True)

    def narrate(self, text: str, kind: str, choice: VoiceChoice) -> None:
        """Generate every chunk without a take (new, edited or failed), in order, playing as it comes."""
        self.stop()
        self.set_text(text, kind)
        rows = self.progress.to_generate()
        if not self.progress.rows:
            raise BadInputError("The text is empty: type or open something to narrate.")
        if not rows:
            return self.player.play_audio(*self.progress.assembled())
        self._submit(rows, choice)

    def regenerate(self, row: int, choice: VoiceChoice) -> None:
        """A new take of one chunk from the next seed; it is chosen and played when it arrives."""
        self.stop()
        self._submit([row], choice)

    def choose_take(self, row: int, take: int) -> None:
        self.progress.choose(row, take)
        self.row_changed.emit(row)
        self.play_row(row)

    def play_row(self, row: int) -> None:
        take = self.progress.rows[row].audio
        if take is not None:
            self.player.play_audio(take.audio, take.sample_rate)

    def stop(self) -> None:
        """Cancel everything queued or running; each job ends in JobCancelled."""
        self.bridge.cancel([*self._speaking, *self.progress.active_jobs])

    def _submit(self, rows: list[int], choice: VoiceChoice) -> None:
        jobs = []
        for row in rows:
            chunk, seed = self.progress.rows[row], self.progress.take_seed(row)
            jobs.append(p.SpeakJob(chunk.text, choice.voice.recording, choice.voice.transcript, choice.model, seed=seed,
                                   chunks=(chunk.text,), seeds=(seed,)))
        ids = self.bridge.narrate(jobs)
        for job_id, row, job in zip(ids, rows, jobs, strict=True):
            self.progress.assign(job_id, row, job.seed)
            self.row_changed.emit(row)
        self.player.start_live()
        self.busy_changed.emit(True)

    # Events (on the GUI thread, queued there by the bridge).

    def _on_piece(self, event: p.ChunkPiece) -> None:
        self._route(event.job_id, event.index, lambda key: self.player.feed(key, event.offset, event.audio,
                                                                           event.sample_rate))

    def _on_ready(self, event: p.ChunkReady) -> None:
        row = self.progress.ready(event.job_id, event.audio, event.sample_rate)
        self._route(event.job_id, event.index, lambda key: self.player.feed(key, 0, event.audio, event.sample_rate))
        if row is not None:
            self.row_changed.emit(row)

    def _route(self, job_id: str, index: int, feed: Callable[[object], None]) -> None:
        """Feed the player under the chunk's key: (job, index) for speech, the row for narration."""
        if job_id in self._speaking:
            feed((job_id, index))
            return
        row = self.progress.row_of(job_id)
        if row is None:
            return
        if self.progress.rows[row].status is ChunkStatus.PENDING:  # its first audio
            self.progress.generating(job_id)
            self.row_changed.emit(row)
        feed(row)

    def _on_failed(self, event: p.JobFailed) -> None:
        """Shown once; a failed narration chunk stops the rest (they would fail the same way)."""
        self._failed.add(event.job_id)
        if event.job_id in self._quiet:
            return
        if self.progress.row_of(event.job_id) is not None:
            others = [j for j in self.progress.active_jobs if j != event.job_id]
            self._quiet.update(others)
            self.bridge.cancel(others)
        self.failed.emit(event)

    def _on_ended(self, job_id: str) -> None:
        self._speaking.discard(job_id)
        row = self.progress.ended(job_id, failed=job_id in self._failed)
        self._failed.discard(job_id)
        self._quiet.discard(job_id)
        if row is not None:
            self.row_changed.emit(row)
        if not self.busy:
            self.player.end_live()
            self.busy_changed.emit(False)
