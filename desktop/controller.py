"""Speak and narrate through the bridge. Speak reads its text as the narration does
(``desktop.state.speech``) and sends its jobs one after another (one per run of chunks in one voice),
each played as it comes, with the markup's pauses as silence between them; Narrate runs the shared
narration (``inference.narration.book`` with a ``Runner``) on a thread of its own, on the document's
project folder, so what is generated is kept there and a later Narrate resumes; its chunks play as they
come, spaced as the assembled book will be (``assembly.spacing``). No widget code: the window draws what
this emits.
"""

from __future__ import annotations

import dataclasses
import threading
import traceback
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from desktop.bridge import WorkerBridge
from desktop.state.narration import UNTITLED, ChunkStatus, NarrationState
from desktop.state.speech import Say, Silence, read_speech
from desktop.widgets.player import PlayerWidget
from inference.errors import BadInputError, VesperError
from inference.narration import book
from inference.narration.runner import NarrationCancelled, Progress, Runner
from inference.voice_library import Voice, VoiceLibrary
from inference.worker import protocol as p


@dataclasses.dataclass(frozen=True)
class VoiceChoice:
    voice: Voice
    model: str


@dataclasses.dataclass(frozen=True)
class Document:
    """What the editor holds: its text, how to read it, and the file it came from (None: typed)."""

    text: str
    kind: str = "text"
    path: Path | None = None


class Controller(QObject):
    rows_reset = Signal()  # the narration's rows were read again from the project
    busy_changed = Signal(bool)
    failed = Signal(object)  # JobFailed
    _progressed = Signal(object)  # Progress, emitted on the narration thread, handled on the GUI thread
    _ended = Signal()  # the narration thread is over

    def __init__(self, bridge: WorkerBridge, player: PlayerWidget, chunk_chars: int, library: VoiceLibrary,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.bridge, self.player = bridge, player
        self.state = NarrationState(chunk_chars, library)  # ``[voice: NAME]`` names the library's voices
        self.last_result: book.NarrationResult | None = None
        self._speaking: set[str] = set()  # ids of speak jobs
        self._current: str | None = None  # the speak job whose end sends the rest of the speech
        self._rest: list[Say | Silence] = []  # what the speech says after the current job
        self._model = ""  # the speech's model
        self._thread: threading.Thread | None = None
        self._runner: Runner | None = None
        self._outcome: book.NarrationResult | BaseException | None = None
        bridge.chunk_piece.connect(self._on_piece)
        bridge.chunk_ready.connect(self._on_ready)
        bridge.job_failed.connect(self._on_failed)
        bridge.job_ended.connect(self._on_ended)
        self._progressed.connect(self._on_progress)
        self._ended.connect(self._finish)

    @property
    def busy(self) -> bool:
        return bool(self._speaking) or self._thread is not None

    # Commands.

    def set_text(self, document: Document, choice: VoiceChoice | None) -> None:
        """The editor's text (or the voice or model) changed: plan it against its project again."""
        if self._thread is not None:
            return  # the project is being filled in; read again when the narration ends
        self.state.revise(document.text, document.kind, document.path, choice and choice.voice,
                          choice.model if choice else "")
        self.rows_reset.emit()

    def speak(self, text: str, kind: str, choice: VoiceChoice) -> None:
        """Say ``text`` now (a selection or a paragraph, read as ``kind``), playing it as it is generated.

        Bad markup or an unknown voice raises ``BadInputError`` with Narrate's message, and nothing is sent.
        """
        self.stop()
        self._rest, self._model = read_speech(text, kind, choice.voice, self.state.library,
                                              self.state.chunk_chars), choice.model
        self._say_next()  # the first job: a recording it cannot use raises before anything plays
        self.player.start_live()
        self.busy_changed.emit(True)

    def narrate(self, document: Document, choice: VoiceChoice, redo: tuple[int, ...] = ()) -> None:
        """Generate every chunk the project has no file for (``redo``: new takes of those chunk numbers),
        in order, playing as it comes; a finished narration plays."""
        self.stop()
        self.set_text(document, choice)
        state = self.state
        if state.problem:
            raise BadInputError(state.problem)
        if state.script is None or state.project is None:
            raise BadInputError("The text is empty: type or open something to narrate.")
        if not redo and all(r.status is ChunkStatus.DONE for r in state.rows):
            return self.player.play_audio(*state.assembled())
        narration = book.Narration(str(document.path or UNTITLED), state.script, state.voices,
                                   state.project.root, choice.model, redo=redo)
        state.start()
        self._runner = self.bridge.runner(self._progressed.emit)
        self._thread = threading.Thread(target=self._run, args=(narration, self._runner), name="narration",
                                        daemon=True)
        self.player.start_live()
        self.busy_changed.emit(True)
        self._thread.start()

    def regenerate(self, row: int, document: Document, choice: VoiceChoice) -> None:
        """A new take of one chunk (the project's redo); it is chosen and played as it arrives."""
        self.narrate(document, choice, redo=(self.state.rows[row].number,))

    def choose_take(self, row: int, take: int) -> None:
        self.state.choose(row, take)
        self.rows_reset.emit()
        self.play_row(row)

    def play_row(self, row: int) -> None:
        if (chosen := self.state.chosen_audio(row)) is not None:
            self.player.play_audio(*chosen)

    def stop(self) -> None:
        """Cancel the speech (and the jobs it has yet to send) and the narration; waits for the narration
        thread (one micro-batch at most)."""
        self._rest, self._current = [], None
        self.bridge.cancel(list(self._speaking))
        if self._runner is not None:
            self._runner.cancel()
        self._finish()

    def _say_next(self) -> None:
        """Send the speech's next job, after the silence asked for before it."""
        while isinstance(self._rest[0], Silence):  # a speech ends with words: something follows a pause
            self.player.silence(self._rest.pop(0).seconds)
        say = self._rest.pop(0)
        try:
            self._current = self.bridge.speak(say.job(self._model))
        except VesperError:
            self._rest = []
            raise
        self._speaking.add(self._current)

    # The narration thread.

    def _run(self, narration: book.Narration, runner: Runner) -> None:
        try:
            self._outcome = book.narrate(narration, runner)
        except NarrationCancelled:
            self._outcome = None
        except Exception as exc:  # noqa: BLE001 - whatever ends the thread is shown, not lost
            self._outcome = exc
        self._ended.emit()

    def _finish(self) -> None:
        """The narration thread is over (or is told to stop): join it, read the project back, say so."""
        if self._thread is None:
            return
        self._thread.join()
        self._thread, self._runner = None, None
        outcome, self._outcome = self._outcome, None
        self.last_result = outcome if isinstance(outcome, book.NarrationResult) else None
        if isinstance(outcome, BaseException):
            self.state.fail(str(outcome))
        self.state.progress = None
        self.state.replan()
        self.rows_reset.emit()
        if isinstance(outcome, BaseException):
            detail = "".join(traceback.format_exception(outcome))
            self.failed.emit(p.JobFailed("", str(outcome), isinstance(outcome, VesperError), detail))
        self._idle()

    def _on_progress(self, progress: Progress) -> None:
        if self._thread is None:
            return  # arrived after the narration was stopped
        self.state.progress = progress
        self.state.replan()
        self.rows_reset.emit()

    # Worker events (on the GUI thread, queued there by the bridge).

    def _on_piece(self, event: p.ChunkPiece) -> None:
        if self._live(event.job_id):
            self.player.feed((event.job_id, event.index), event.offset, event.audio, event.sample_rate,
                             self._pause_before(event.job_id, event.index))

    def _on_ready(self, event: p.ChunkReady) -> None:
        if self._live(event.job_id):
            self.player.feed((event.job_id, event.index), 0, event.audio, event.sample_rate,
                             self._pause_before(event.job_id, event.index))

    def _pause_before(self, job_id: str, index: int) -> float | None:
        """A narration chunk's silence before it in the assembled book (its pauses and ``[pause]`` markup),
        so live playback is spaced as the file will be; None (the player's chunk pause) for speech."""
        runner = self._runner
        item = runner.chunk_of(job_id, index) if runner is not None and job_id not in self._speaking else None
        return None if item is None else self.state.pause_before(item.number)

    def _live(self, job_id: str) -> bool:
        """Audio to play now: a speak job's, or the running narration's (the only other jobs with audio)."""
        return job_id in self._speaking or self._thread is not None

    def _on_failed(self, event: p.JobFailed) -> None:
        """A speak job's failure (the rest of the speech is not sent); the narration's comes back through
        its runner."""
        if event.job_id in self._speaking:
            if event.job_id == self._current:
                self._rest = []
            self.failed.emit(event)

    def _on_ended(self, job_id: str) -> None:
        if job_id not in self._speaking:
            return
        self._speaking.discard(job_id)
        if job_id == self._current:
            self._current = None
            if self._rest:
                try:
                    self._say_next()
                except VesperError as exc:  # the next voice's recording became unusable meanwhile
                    self.failed.emit(p.JobFailed("", str(exc), True))
        self._idle()

    def _idle(self) -> None:
        if not self.busy:
            self.player.end_live()
            self.busy_changed.emit(False)
