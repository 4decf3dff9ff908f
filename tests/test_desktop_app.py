"""The desktop window, offscreen (pytest-qt), on the tiny Pocket TTS checkpoint through a real worker
process, with sound going to an ALSA file-plugin virtual speaker. Each test has its own worker, shut
down by the fixture, so none outlives its test."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import soxr
from PySide6.QtCore import QTimer
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import (
    QAbstractButton,
    QApplication,
    QComboBox,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QSlider,
    QTableWidget,
)

from desktop.bridge import WorkerBridge
from desktop.main_window import MainWindow
from desktop.recorder_state import Phase
from desktop.settings import Key, Settings
from desktop.state.narration import ChunkStatus
from desktop.state.player import PlayState
from desktop.state.status import GiB
from desktop.widgets.error_dialog import ErrorDialog
from desktop.widgets.export_dialog import ExportDialog
from inference import paths
from inference.narration.assembly import AssemblySettings
from inference.narration.mastering import Mode
from inference.voice_quality import MAX_SECONDS
from inference.worker.protocol import Stage, WorkerSettings
from tests.conftest import REPO, SAMPLE_TRANSCRIPT, SAMPLE_VOICE, SPOKEN_TEXT
from tests.test_playback import ALSA_CONF, _portaudio_available

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not _portaudio_available(), reason="needs libportaudio2 and ALSA (.ci/run)")]

THREE_PARAGRAPHS = ("The first paragraph is short.\n\n"
                    "The second paragraph follows it.\n\n"
                    "And the third one ends the text.")
JOB_TIMEOUT_MS = 180_000


@pytest.fixture(autouse=True)
def desktop_env(tmp_path, monkeypatch):
    """Settings, voices and caches under a temporary VESPER_HOME; one torch thread per worker (2 shared cores)."""
    monkeypatch.setenv("VESPER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("VESPER_FAULT", raising=False)


@pytest.fixture
def speaker(tmp_path, monkeypatch):
    """The default ALSA device of this process becomes a file: returns the path the speaker writes."""
    import sounddevice as sd

    played, mic = tmp_path / "played.raw", tmp_path / "mic.raw"
    mic.write_bytes(b"\0" * 4800)
    conf = tmp_path / "asound.conf"
    # Appended through cat: the player lets the device go when it has nothing to play, and a file device
    # opened again would be written from its start, losing what was heard before.
    conf.write_text(ALSA_CONF.format(played=f"|cat >> {played}", mic=mic))
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(conf))
    sd._terminate()  # PortAudio reads the ALSA configuration when it initialises
    sd._initialize()
    yield played
    monkeypatch.undo()
    sd._terminate()
    sd._initialize()


@pytest.fixture
def open_window(qtbot, tiny_checkpoint, speaker):
    """``open_window() -> MainWindow`` with the tiny checkpoint's folder as model and the sample voice."""
    opened: list[MainWindow] = []

    def make() -> MainWindow:
        window = MainWindow(WorkerBridge(WorkerSettings(low_latency=True)), Settings())
        window.model.choose(str(tiny_checkpoint("pocket_tts")))
        window.voice.choose(SAMPLE_VOICE)
        window.show()
        opened.append(window)
        qtbot.waitUntil(lambda: window.bridge.worker_pid is not None)
        return window

    yield make
    for window in opened:
        window.controller.stop()
        window.player.close_output()
        window.bridge.shutdown()
        window.deleteLater()


def _idle(qtbot, window: MainWindow) -> None:
    qtbot.waitUntil(lambda: not window.controller.busy, timeout=JOB_TIMEOUT_MS)


def _narrate(qtbot, window: MainWindow, text: str | None = THREE_PARAGRAPHS) -> None:
    """Narrate ``text`` (None: what the editor holds) and wait until it is over."""
    if text is not None:
        window.editor.set_text(text)
    window.narrate_action.trigger()
    _idle(qtbot, window)


def _heard(played: Path) -> np.ndarray:
    raw = played.read_bytes()
    return np.frombuffer(raw[: len(raw) // 4 * 4], dtype="<f4")  # PortAudio opens it as float32 mono


def test_speak_is_heard_on_the_virtual_speaker_while_it_is_generated(qtbot, open_window, speaker):
    window = open_window()
    pieces, chunks, early = [], [], []
    window.bridge.chunk_piece.connect(pieces.append)
    window.bridge.chunk_ready.connect(chunks.append)
    # Runs after the window's own handler: is it playing pieces before the first whole chunk is in?
    window.bridge.chunk_piece.connect(lambda e: chunks or early.append((window.player.state.state,
                                                                        window.player.state.duration)))
    window.editor.set_text("Speak this sentence. And this one too.")
    window.speak_action.trigger()
    _idle(qtbot, window)
    qtbot.waitUntil(lambda: window.player.state.state is PlayState.STOPPED, timeout=30_000)  # played to the end
    qtbot.waitUntil(lambda: not window.player.output.is_open, timeout=5_000)  # the device is let go when silent
    size = speaker.stat().st_size
    qtbot.wait(300)
    assert speaker.stat().st_size == size
    window.player.close_output()
    produced = np.clip(np.concatenate([c.audio for c in sorted(chunks, key=lambda c: c.index)]), -1, 1)
    assert pieces, "the fast path streams: playback starts from the first pieces"
    assert early and all(state is PlayState.PLAYING and queued > 0 for state, queued in early)
    heard = _heard(speaker)
    # Underruns (a worker slower than real time) insert silence; the sound itself is the produced audio.
    np.testing.assert_array_equal(heard[heard != 0], produced[produced != 0])


def _select_from(window: MainWindow, start: int) -> None:
    """Select the editor's text from ``start`` to its end, as a user dragging over it."""
    cursor = window.editor.edit.textCursor()
    cursor.setPosition(start)
    cursor.movePosition(QTextCursor.MoveOperation.End, QTextCursor.MoveMode.KeepAnchor)
    window.editor.edit.setTextCursor(cursor)


def _sent_jobs(window: MainWindow, monkeypatch) -> list:
    """The jobs the window hands the bridge, in order (they still go to the worker)."""
    sent, speak = [], window.bridge.speak
    monkeypatch.setattr(window.bridge, "speak", lambda job: sent.append(job) or speak(job))
    return sent


def test_speak_obeys_the_selections_markup_a_job_per_voice_with_the_pause_between(qtbot, open_window, speaker,
                                                                                  monkeypatch):
    window = open_window()
    other = window.voice.library.add("Other", SAMPLE_VOICE, SAMPLE_TRANSCRIPT)
    sent, chunks = _sent_jobs(window, monkeypatch), []
    window.bridge.chunk_ready.connect(chunks.append)
    window.editor.set_text("Hello [voice: Nobody] there.")
    window.editor.select_all()
    window.speak_action.trigger()  # an unknown voice: Narrate's message, and nothing is sent
    dialog = next(w for w in QApplication.topLevelWidgets() if isinstance(w, ErrorDialog) and w.isVisible())
    assert dialog.text().startswith("Unknown voice 'Nobody' in [voice: Nobody]") and not sent
    assert not window.controller.busy
    dialog.close()

    skipped = "Not this paragraph.\n\n"
    window.editor.set_text(skipped + "Said by the narrator. [pause 0.5s] [voice: other] Said by another voice.")
    _select_from(window, len(skipped))
    window.speak_action.trigger()
    _idle(qtbot, window)
    assert [(job.chunks, job.voice) for job in sent] == [
        (("Said by the narrator.",), SAMPLE_VOICE), (("Said by another voice.",), other.recording)]
    assert [(c.index, c.text) for c in chunks] == [(0, "Said by the narrator."), (0, "Said by another voice.")]
    assert chunks[0].job_id != chunks[1].job_id
    track, rate = window.player.state, chunks[0].sample_rate
    pause = int((track.gap + 0.5) * rate)  # the chunk pause and the half second asked for
    assert round(track.duration * rate) == len(chunks[0].audio) + pause + len(chunks[1].audio)  # both, in order
    qtbot.waitUntil(lambda: track.state is PlayState.STOPPED, timeout=30_000)  # played to the end
    window.player.close_output()
    produced = np.clip(np.concatenate([c.audio for c in chunks]), -1, 1)
    heard = _heard(speaker)
    np.testing.assert_array_equal(heard[heard != 0], produced[produced != 0])

    window.bridge.chunk_ready.connect(lambda _e: window.stop_action.trigger())
    window.speak_action.trigger()  # the same selection again, stopped in its first job: the second is not sent
    _idle(qtbot, window)
    qtbot.wait(500)
    assert len(sent) == 3 and sent[2].voice == SAMPLE_VOICE and not window.stop_action.isEnabled()


def test_the_status_bar_shows_the_workers_memory_once_the_model_is_loaded_before_any_chunk(
        qtbot, open_window, monkeypatch):
    window = open_window()
    sent, seen = _sent_jobs(window, monkeypatch), []
    window.bridge.stage_started.connect(lambda e: seen.append((e.stage, window.status.memory_label.text())))
    window.bridge.chunk_piece.connect(lambda _e: seen.append(("piece", window.status.memory_label.text())))
    window.editor.set_text("Plain text. Without markup.")
    window.speak_action.trigger()
    _idle(qtbot, window)
    shown = dict(reversed(seen))  # what the bar showed when each stage began (the first piece for "piece")
    assert shown[Stage.LOADING] == "Memory: -"  # a fresh worker: nothing measured yet
    for moment in (Stage.ENCODING_VOICE, Stage.GENERATING, "piece"):
        assert re.fullmatch(r"RAM \d+\.\d GiB", shown[moment]), (moment, shown[moment])
    assert [job.chunks for job in sent] == [("Plain text. Without markup.",)]  # plain text: one job


def _runqueue_wait() -> float:
    """Seconds this thread has spent ready to run but waiting for a CPU (Linux schedstat)."""
    return int(Path("/proc/thread-self/schedstat").read_text().split()[1]) / 1e9


class LoopWatch:
    """A repeating 10 ms timer on the GUI thread: the longest gap between its ticks is the longest stall.

    A gap also grows while the OS keeps the thread off the CPU (two cores shared by every process on the
    machine); that part is the scheduler's, not the window's, and is taken out of ``stalls``.
    """

    def __init__(self) -> None:
        self.gaps: list[float] = []
        self.stalls: list[float] = []
        self._last = (time.monotonic(), _runqueue_wait())
        self.timer = QTimer(interval=10, timeout=self._tick)
        self.timer.start()

    def _tick(self) -> None:
        now = (time.monotonic(), _runqueue_wait())
        self.gaps.append(now[0] - self._last[0])
        self.stalls.append(self.gaps[-1] - (now[1] - self._last[1]))
        self._last = now


def test_narrate_regenerate_export_without_blocking_the_event_loop(qtbot, open_window, tmp_path):
    window = open_window()
    watch = LoopWatch()
    _narrate(qtbot, window)
    watch.timer.stop()
    progress = window.controller.state
    assert [r.paragraph for r in progress.rows] == [0, 1, 2]
    assert all(r.status is ChunkStatus.DONE and r.takes == 1 for r in progress.rows)
    assert window.controller.last_result.run.generated == 3
    assert window.chunks.table.rowCount() == 3 and window.chunks.table.item(1, 1).text() == "done"
    assert "3/3 chunks done" in window.chunks.progress_label.text()
    assert len(watch.gaps) > 50 and max(watch.stalls) < 0.1, (
        f"the event loop stalled for {max(watch.stalls) * 1000:.0f} ms ({max(watch.gaps) * 1000:.0f} ms by the clock)")
    print(f"longest event-loop stall {max(watch.stalls) * 1000:.0f} ms, longest gap {max(watch.gaps) * 1000:.0f} ms")

    window.chunks.table.setCurrentCell(1, 3)
    window.chunks.regenerate_button.click()
    _idle(qtbot, window)
    second = progress.rows[1]
    assert (second.takes, second.take) == (2, 1) and window.controller.last_result.run.generated == 1
    assert not np.array_equal(progress.take_audio(1, 0)[0], progress.take_audio(1, 1)[0])
    assert window.chunks.takes.count() == 2
    window.chunks.takes.activated.emit(0)  # the user picks the first take again
    assert progress.rows[1].take == 0 and window.chunks.table.item(1, 2).text() == "1/2"
    assert progress.project.takes()[progress.planned[1].base_key] == {"chosen": 0, "takes": 2}  # kept there

    target = _export(window, tmp_path / "book.flac", "FLAC", Mode.NONE, subtitles=True)
    audio, rate = sf.read(target, dtype="float32")
    expected, expected_rate = progress.assembled()  # the narration assembled as `vesper narrate` assembles it
    assert rate == expected_rate and len(audio) == len(expected)
    assert np.allclose(audio, np.clip(expected, -1, 1), atol=2**-15)  # 16-bit FLAC
    assert sf.info(target).format == "FLAC" and Settings().text(Key.LAST_EXPORT_FORMAT) == "FLAC"
    cues = (tmp_path / "book.srt").read_text().split("\n\n")
    assert [c.splitlines()[2] for c in cues if c] == [r.text for r in progress.rows]


def _export(window: MainWindow, target: Path, fmt: str, master: Mode, subtitles: bool = False) -> Path:
    """Export… from the window, filling in its dialog as a user would; returns the file written."""
    def fill_in() -> None:
        dialog = QApplication.activeModalWidget()
        assert isinstance(dialog, ExportDialog)
        dialog.path.setText(str(target))
        dialog.format.setCurrentText(fmt)
        dialog.preset.setCurrentIndex(dialog.preset.findData(master))
        dialog.subtitles.setChecked(subtitles)
        dialog.title.setText("A short book")
        dialog.accept()

    QTimer.singleShot(0, fill_in)
    window.export_action.trigger()
    assert target.is_file() and window.status.currentMessage().startswith(f"Exported {target.name}")
    return target


BOOK = """# Morning

The first paragraph is short.

[voice: Other] The second paragraph is read by another voice.

# Evening

And the third one ends the day."""


def test_record_a_voice_then_narrate_hear_and_export_a_book_in_it(qtbot, open_window, speaker, spoken, tmp_path):
    """The issue's whole path: record from the virtual microphone (espeak-ng speech), save the voice,
    narrate a three-paragraph book with it (one paragraph in a second library voice, by markup), hear it
    on the virtual speaker, see the worker's memory, export FLAC and a chaptered M4B."""
    window = open_window()
    recorder = window.recorder
    audio, espeak_rate = spoken
    rate = recorder.device.default_rate
    take = np.concatenate([np.zeros(rate // 2, np.float32), soxr.resample(audio, espeak_rate, rate),
                           np.zeros(int((MAX_SECONDS + 5) * rate), np.float32)])
    (speaker.parent / "mic.raw").write_bytes((np.clip(take, -1, 1) * 32767).astype("<i2").tobytes())
    window.record_action.trigger()  # Ctrl+R: the Voices tab
    recorder.record_action.trigger()
    qtbot.waitUntil(lambda: recorder.state.phase is Phase.REVIEW, timeout=30_000)
    recorder.name_edit.setText("Me")
    recorder.transcript_edit.setText(SPOKEN_TEXT)
    recorder.save_button.click()
    me = window.voice.voice()
    assert me.name == "Me" and me.recording.is_relative_to(paths.voices_dir())
    window.voice.library.add("Other", SAMPLE_VOICE, SAMPLE_TRANSCRIPT)
    window.voice.refresh()
    assert window.voice.voice() == me

    document = tmp_path / "day.md"
    document.write_text(BOOK)
    window.editor.open_file(document)
    chunks, jobs = [], []
    window.bridge.chunk_ready.connect(chunks.append)
    window.bridge.job_started.connect(jobs.append)
    _narrate(qtbot, window, None)
    state = window.controller.state
    manifest = state.project.manifest()
    assert [(c["text"], c["voice"]) for c in manifest["chunks"]] == [
        ("Morning", "Me"), ("The first paragraph is short.", "Me"),
        ("The second paragraph is read by another voice.", "Other"), ("Evening", "Me"),
        ("And the third one ends the day.", "Me")]
    assert manifest["voices"]["Me"]["recording"] == str(me.recording)  # the recorded voice reads the book
    assert manifest["voices"]["Other"]["recording"] == str(window.voice.library.get("Other").recording)
    assert [len(j.chunks) for j in jobs] == [2, 1, 2]  # a job per chapter and voice, as `vesper narrate` sends
    assert re.fullmatch(r"RAM \d+\.\d GiB", window.status.memory_label.text())  # the worker's, from its samples
    assert 0.1 < window.status.model.rss / GiB < 16

    # Heard live as the file will be spaced: the chapter, paragraph and sentence pauses between the chunks.
    track, rate = window.player.state, chunks[0].sample_rate
    pauses = sum(int(state.pause_before(n) * rate) for n in range(2, len(chunks) + 1))
    assert round(track.duration * rate) == sum(len(c.audio) for c in chunks) + pauses
    assert pauses > int(AssemblySettings().chapter_pause * rate)  # "Evening" starts a chapter
    qtbot.waitUntil(lambda: window.player.state.state is PlayState.STOPPED, timeout=60_000)  # played out
    window.player.close_output()
    produced = np.clip(np.concatenate([c.audio for c in chunks]), -1, 1)
    heard = _heard(speaker)
    np.testing.assert_array_equal(heard[heard != 0], produced[produced != 0])

    flac = _export(window, tmp_path / "day.flac", "FLAC", Mode.NONE)
    assembled, assembled_rate = state.assembled()
    assert sf.info(flac).frames == len(assembled) and sf.info(flac).samplerate == assembled_rate
    m4b = _export(window, tmp_path / "day.m4b", "M4B", Mode.PODCAST)
    assembly = state.assembly()
    list(assembly.blocks())  # lays out the timeline: where the chapters start
    with av.open(str(m4b)) as container:
        chapters = container.chapters()
        assert container.duration / 1e6 == pytest.approx(assembly.timeline.seconds, abs=0.1)
    assert [c["metadata"]["title"] for c in chapters] == ["Morning", "Evening"]
    for mark, chapter in zip(assembly.timeline.chapters, chapters, strict=True):
        assert float(chapter["start"] * chapter["time_base"]) == pytest.approx(mark.start, abs=0.01)


def test_editing_a_paragraph_generates_only_that_paragraph_again(qtbot, open_window):
    window = open_window()
    _narrate(qtbot, window, "One paragraph.\n\nAnother one.")
    window.editor.set_text("One paragraph.\n\nAnother one, edited.")
    qtbot.waitUntil(lambda: window.chunks.table.item(1, 3).text() == "Another one, edited.", timeout=5000)
    assert [window.chunks.table.item(r, 1).text() for r in range(2)] == ["done", "pending"]
    window.narrate_action.trigger()
    _idle(qtbot, window)
    run = window.controller.last_result.run
    assert (run.reused, run.generated) == (1, 1)
    assert all(r.status is ChunkStatus.DONE for r in window.controller.state.rows)


def test_stop_cancels_the_narration(qtbot, open_window):
    window = open_window()
    window.editor.set_text("\n\n".join(f"Paragraph number {n} of a longer text." for n in range(8)))
    window.bridge.chunk_ready.connect(lambda _e: window.stop_action.trigger())
    window.narrate_action.trigger()
    _idle(qtbot, window)
    statuses = [r.status for r in window.controller.state.rows]
    assert statuses.count(ChunkStatus.DONE) < 8 and ChunkStatus.PENDING in statuses
    assert ChunkStatus.GENERATING not in statuses
    assert not window.stop_action.isEnabled()


def test_a_worker_killed_mid_job_shows_a_notice_and_the_narration_finishes(qtbot, open_window, monkeypatch):
    monkeypatch.setenv("VESPER_FAULT", "crash@2")  # read by the first worker when the client starts it
    window = open_window()
    first_pid = []
    window.bridge.job_started.connect(lambda _e: first_pid or first_pid.append(window.bridge.worker_pid))
    _narrate(qtbot, window)
    assert all(r.status is ChunkStatus.DONE for r in window.controller.state.rows)
    assert window.bridge.worker_pid != first_pid[0]
    assert any("restarted" in n for n in window.status.model.notices)
    assert "restarted" in window.status.currentMessage()


def test_a_chunk_that_cannot_be_written_shows_failed_and_the_next_narration_retries_it(qtbot, open_window):
    window = open_window()
    window.editor.set_text("One.\n\nTwo.\n\nThree.")
    window.controller.set_text(window.document(), window.choice())
    state = window.controller.state
    blocker = state.project.path(state.planned[1])
    blocker.mkdir(parents=True)  # a folder where chunk 2's file goes: renaming the finished file onto it fails
    failures = []
    window.controller.failed.connect(failures.append)
    _narrate(qtbot, window, None)
    assert [window.chunks.table.item(r, 1).text() for r in range(3)] == ["done", "failed", "pending"]
    assert len(failures) == 1 and failures[0].message.startswith("Could not write")
    assert window.chunks.table.item(1, 1).toolTip() == failures[0].message
    assert "1 failed" in window.chunks.progress_label.text()
    next(w for w in QApplication.topLevelWidgets() if isinstance(w, ErrorDialog) and w.isVisible()).close()

    blocker.rmdir()
    _narrate(qtbot, window, None)
    assert all(r.status is ChunkStatus.DONE for r in state.rows)
    assert window.controller.last_result.run.generated == 2 and not failures[1:]


def test_worker_errors_are_readable_and_diagnostics_can_be_copied(qtbot, open_window):
    window = open_window()
    window.model.choose("no-such-model")
    failures = []
    window.controller.failed.connect(failures.append)
    _narrate(qtbot, window, "One.\n\nTwo.\n\nThree.")
    assert len(failures) == 1 and "Unknown model 'no-such-model'" in failures[0].message  # the rest stopped
    rows = window.controller.state.rows
    assert [r.status for r in rows] == [ChunkStatus.FAILED, ChunkStatus.PENDING, ChunkStatus.PENDING]
    assert window.chunks.table.item(0, 1).text() == "failed"
    assert window.chunks.table.item(0, 1).toolTip() == failures[0].message == rows[0].reason
    dialog = next(w for w in QApplication.topLevelWidgets() if isinstance(w, ErrorDialog) and w.isVisible())
    assert "Unknown model" in dialog.text()
    dialog.close()
    diagnostics = ErrorDialog("The worker failed.", "Traceback: line 1", False, window)
    diagnostics.copy_button.click()
    assert QApplication.clipboard().text() == "The worker failed.\n\nTraceback: line 1"


def test_quitting_while_narrating_asks_then_stops_cleanly(qtbot, open_window):
    window = open_window()
    window.editor.set_text("\n\n".join(f"Paragraph {n} keeps the worker busy." for n in range(6)))
    window.narrate_action.trigger()
    qtbot.waitUntil(lambda: window.bridge.worker_pid is not None, timeout=JOB_TIMEOUT_MS)
    answers = [QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes]

    def answer() -> None:
        box = QApplication.activeModalWidget()
        assert isinstance(box, QMessageBox) and "Stop it and quit" in box.text()
        box.button(answers.pop(0)).click()

    QTimer.singleShot(0, answer)
    assert not window.close() and window.isVisible()  # "No": still narrating
    pid = window.bridge.worker_pid
    QTimer.singleShot(0, answer)
    assert window.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the worker is gone


def _answer_yes_when_asked(tries: int = 500) -> None:
    """Click Yes on the quit question once it is shown (it opens inside ``close()``)."""
    if (box := QApplication.activeModalWidget()) is not None:
        box.button(QMessageBox.StandardButton.Yes).click()
    elif tries:
        QTimer.singleShot(10, lambda: _answer_yes_when_asked(tries - 1))


PARAGRAPHS = 12


def test_quitting_mid_narration_then_reopening_the_document_resumes_with_the_finished_chunks(
        qtbot, open_window, tmp_path):
    document = tmp_path / "story.txt"
    document.write_text("\n\n".join(f"Paragraph {n} of the story goes on." for n in range(PARAGRAPHS)))
    window = open_window()
    window.editor.open_file(document)
    window.narrate_action.trigger()
    qtbot.waitUntil(lambda: [r.status for r in window.controller.state.rows].count(ChunkStatus.DONE) >= 2,
                    timeout=JOB_TIMEOUT_MS)
    _answer_yes_when_asked()
    assert window.close()
    chunk_files = list((window.controller.state.project.chunks_dir).glob("*.flac"))
    finished = len(chunk_files)
    assert 2 <= finished < PARAGRAPHS and window.controller.state.project.root.name == "story"
    assert not list(window.controller.state.project.chunks_dir.glob(".*"))  # no partial file left behind

    again = open_window()
    again.editor.open_file(document)
    _narrate(qtbot, again, None)
    run = again.controller.last_result.run
    assert (run.reused, run.generated, run.chunks_total) == (finished, PARAGRAPHS - finished, PARAGRAPHS)
    assert all(r.status is ChunkStatus.DONE for r in again.controller.state.rows)
    assert set(chunk_files) <= set(again.controller.state.project.chunks_dir.glob("*.flac"))  # reused, not redone


def test_geometry_and_last_choices_persist(qtbot, open_window, tiny_checkpoint):
    window = open_window()
    window.resize(760, 540)
    window.close()
    again = open_window()
    assert (again.width(), again.height()) == (760, 540)
    assert again.model.model() == str(tiny_checkpoint("pocket_tts")) and again.voice.voice().recording == SAMPLE_VOICE


def test_every_control_has_an_accessible_name_and_the_shortcuts_are_set(open_window):
    window = open_window()
    controls = window.findChildren(QAbstractButton) + window.findChildren(QComboBox) + window.findChildren(
        QSlider) + window.findChildren(QLineEdit) + window.findChildren(QPlainTextEdit) + window.findChildren(
        QTableWidget)
    unnamed = [c for c in controls if c.isVisibleTo(window) and not (c.accessibleName() or
                                                                     getattr(c, "text", lambda: "")())]
    assert not unnamed, [type(c).__name__ for c in unnamed]
    shortcuts = {a.text(): a.shortcut().toString() for a in (window.speak_action, window.stop_action,
                                                            window.play_action, window.record_action)}
    assert shortcuts == {"Speak": "Ctrl+Return", "Stop": "Esc", "Play/Pause": "Ctrl+Space", "Record": "Ctrl+R"}


OPEN_AND_LIST = """
import sys
from PySide6.QtCore import QTimer
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import QApplication, QMessageBox
app = QApplication(sys.argv)
def report():
    for w in app.topLevelWidgets():
        if w.isVisible():
            print(type(w).__name__, w.windowTitle(), w.text() if isinstance(w, QMessageBox) else "")
    app.quit()
QTimer.singleShot(3000, report)
from inference.cli import main
sys.exit(main([]))
"""


def _open_vesper(home: Path) -> str:
    """Run ``vesper`` with no arguments for three seconds; what windows were open, one per line."""
    env = dict(os.environ, VESPER_HOME=str(home), QT_QPA_PLATFORM="offscreen")
    out = subprocess.run([sys.executable, "-c", OPEN_AND_LIST], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_vesper_without_arguments_opens_the_window(tmp_path):
    assert _open_vesper(tmp_path).splitlines() == ["MainWindow Vesper "]


def test_a_bad_settings_file_is_reported_and_the_window_opens_on_the_defaults(tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "settings.json").write_text('{"chunk_chars": 5}')
    shown = _open_vesper(tmp_path)
    assert "MainWindow Vesper" in shown
    assert "chunk_chars must be a whole number of at least 80" in shown and "Using the default settings" in shown


def test_the_worker_runs_below_the_window_on_a_busy_cpu(open_window):
    window = open_window()
    pid = window.bridge.worker_pid
    assert {os.getpriority(os.PRIO_PROCESS, int(tid)) for tid in os.listdir(f"/proc/{pid}/task")} == {10}
