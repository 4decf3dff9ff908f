"""Record a voice (or import a file), hear it back, see what to fix, save it into the library.

The microphone opens when the countdown ends and runs on PortAudio's audio thread: its callback only
copies blocks into a queue, and a QTimer on the GUI thread drains that queue into ``RecorderState`` and
the level meter, so no Qt object is touched off the GUI thread. ``record_action`` / ``stop_action`` are
QActions the main window can put in a menu or bind to its own shortcut.
"""

from __future__ import annotations

import math
import queue
import tempfile
import threading
from pathlib import Path

import numpy as np
import sounddevice as sd
import soundfile as sf
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from desktop.recorder_state import InputDevice, Phase, RecorderState, microphones
from desktop.voice_store import Voice, VoiceStore
from inference.audio import write_wav
from inference.errors import VesperError
from inference.voice_quality import MAX_SECONDS, MIN_SPEECH_SECONDS, Analysis, Severity, analyse

METER_FLOOR_DBFS = -60.0  # the meter's empty end
POLL_MS = 30  # how often the GUI drains the audio queue (the meter's refresh rate)
MAX_DRAIN_SECONDS = 1.0  # audio taken from the queue per poll at most: a poll never stalls the GUI
SEVERITY_MARK = {Severity.INFO: "ℹ", Severity.WARNING: "⚠", Severity.PROBLEM: "✖"}


def meter_value(dbfs: float) -> int:
    """0..100 for the level meter: METER_FLOOR_DBFS..0 dBFS."""
    if math.isinf(dbfs):
        return 0
    return int(round(100 * min(1.0, max(0.0, 1 - dbfs / METER_FLOOR_DBFS))))


class RecorderWidget(QWidget):
    """The recorder: device picker, meter, countdown and timer, review, transcript, save and import."""

    saved = Signal(object)  # the Voice just added to the library
    _analysed = Signal(object)  # an Analysis, emitted from the analysing thread (Qt queues it to ours)

    def __init__(self, store: VoiceStore, model_rate: int | None = None, countdown_ms: int = 1000,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.state = RecorderState(model_rate)
        self._blocks: queue.SimpleQueue[np.ndarray] = queue.SimpleQueue()
        self._stream: sd.InputStream | None = None
        self._devices: list[InputDevice] = []
        self._countdown = QTimer(self, interval=countdown_ms)
        self._countdown.timeout.connect(self._tick)
        self._poll = QTimer(self, interval=POLL_MS)
        self._poll.timeout.connect(self._poll_audio)
        self._analysed.connect(self._review)
        self._build()
        self.refresh_devices()
        self._show()

    # Layout.

    def _build(self) -> None:
        self.record_action = QAction("Record", self, shortcut=QKeySequence("Ctrl+R"))
        self.record_action.setToolTip(f"Count down, then record {MIN_SPEECH_SECONDS:.0f}-{MAX_SECONDS:.0f} s")
        self.record_action.triggered.connect(self.record)
        self.stop_action = QAction("Stop", self, shortcut=QKeySequence("Ctrl+."))
        self.stop_action.triggered.connect(self.stop)
        for action in (self.record_action, self.stop_action):
            # Its keys act within the recorder; the main window adds the action to a menu or binds its own key.
            action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            self.addAction(action)

        self.device_box = _named(QComboBox(), "Microphone")
        self.device_box.setPlaceholderText("No microphone found: connect one, or import a file")
        self.meter = _named(QProgressBar(), "Input level")
        self.meter.setRange(0, 100)
        self.meter.setTextVisible(False)
        self.clock = _named(QLabel(), "Recording time")
        self.clock.setAlignment(Qt.AlignmentFlag.AlignCenter)
        font = self.clock.font()
        font.setPointSizeF(font.pointSizeF() * 1.6)
        self.clock.setFont(font)
        self.record_button = _button(self.record_action, "Record (Ctrl+R)")
        self.stop_button = _button(self.stop_action, "Stop (Ctrl+.)")
        self.play_button = _named(QPushButton("&Play take"), "Play the take")
        self.play_button.clicked.connect(self.play)
        self.import_button = _named(QPushButton("&Import a file…"), "Import a recording from a file")
        self.import_button.clicked.connect(self._choose_file)
        self.report = _named(QLabel(), "Recording quality")
        self.report.setWordWrap(True)
        self.report.setTextFormat(Qt.TextFormat.PlainText)
        self.name_edit = _named(QLineEdit(), "Voice name")
        self.name_edit.setPlaceholderText("e.g. My voice")
        self.name_edit.textChanged.connect(self._show)
        self.transcript_edit = _named(QLineEdit(), "Transcript (optional)")
        self.transcript_edit.setPlaceholderText("What the recording says (optional, helps some models)")
        self.save_button = _named(QPushButton("&Save voice"), "Save the voice into the library")
        self.save_button.clicked.connect(self.save)

        form = QFormLayout()
        form.addRow("&Microphone:", self.device_box)
        form.addRow("Level:", self.meter)
        buttons = QHBoxLayout()
        for b in (self.record_button, self.stop_button, self.play_button, self.import_button):
            buttons.addWidget(b)
        details = QFormLayout()
        details.addRow("&Name:", self.name_edit)
        details.addRow("&Transcript:", self.transcript_edit)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.clock)
        layout.addLayout(buttons)
        layout.addWidget(self.report)
        layout.addLayout(details)
        layout.addWidget(self.save_button, alignment=Qt.AlignmentFlag.AlignRight)
        layout.addStretch(1)
        self.setAccessibleName("Voice recorder")

    # Devices.

    def refresh_devices(self) -> None:
        """Offer the input devices that are microphones, the system default first selected."""
        self._devices = microphones(sd.query_devices())
        self.device_box.clear()
        for device in self._devices:
            self.device_box.addItem(device.name, device.index)
        default = sd.default.device[0]
        position = next((i for i, d in enumerate(self._devices) if d.index == default), 0)
        self.device_box.setCurrentIndex(position)

    @property
    def device(self) -> InputDevice | None:
        position = self.device_box.currentIndex()
        return self._devices[position] if 0 <= position < len(self._devices) else None

    # Recording.

    def record(self) -> None:
        """Count down, then open the microphone and record until stopped or MAX_SECONDS."""
        device = self.device
        if device is None or self.state.phase in (Phase.COUNTDOWN, Phase.RECORDING):
            return
        sd.stop()
        self.state.start(device.default_rate)
        if self.state.phase is Phase.COUNTDOWN:
            self._countdown.start()
        else:
            self._open(device)
        self._show()

    def _tick(self) -> None:
        if self.state.tick():
            self._countdown.stop()
            device = self.device
            if device is not None:
                self._open(device)
        self._show()

    def _open(self, device: InputDevice) -> None:
        self._blocks = queue.SimpleQueue()
        try:
            self._stream = sd.InputStream(device=device.index, channels=1, samplerate=device.default_rate,
                                          dtype="int16", callback=self._on_audio)
            self._stream.start()
        except sd.PortAudioError as exc:
            self._stream = None
            self.state.discard()
            self._show(f"Cannot open {device.name} ({exc}); choose another microphone.")
            return
        self._poll.start()

    def _on_audio(self, indata: np.ndarray, frames: int, time, status) -> None:  # noqa: ARG002 - PortAudio's signature
        """The audio thread: copy the block out, nothing else (16-bit: what every capture device offers)."""
        self._blocks.put(indata[:, 0].copy())

    def _poll_audio(self) -> None:
        if self._drain():
            self.stop()
        else:
            self._show()

    def _drain(self) -> bool:
        """GUI thread: feed what the microphone queued to the state (the meter shows its peak); True when full."""
        blocks, count = [], 0
        while count < self.state.rate * MAX_DRAIN_SECONDS:
            try:
                blocks.append(self._blocks.get_nowait())
            except queue.Empty:
                break
            count += len(blocks[-1])
        return bool(blocks) and self.state.add(_to_float(np.concatenate(blocks)))

    def stop(self) -> None:
        """Stop the countdown or the take; a take is trimmed, checked and ready to play or save."""
        self._countdown.stop()
        self._poll.stop()
        if self._stream is not None:
            self._stream.stop()
            self._stream.close()
            self._stream = None
            self._drain()  # the last blocks, if the take is not full yet
        sd.stop()
        take = self.state.stop()
        if take is not None:
            self._analyse(take, self.state.rate)
        self._show()

    def _analyse(self, audio: np.ndarray, rate: int) -> None:
        """Trim and check on a thread: 30 s of audio take tens of milliseconds, too long for the event loop."""
        def run() -> None:
            result = analyse(audio, rate, self.state.model_rate)
            try:
                self._analysed.emit(result)
            except RuntimeError:  # the widget was closed meanwhile
                pass

        threading.Thread(target=run, name="vesper-take-analysis", daemon=True).start()

    def _review(self, take: Analysis) -> None:
        if self.state.phase is Phase.ANALYSING:
            self.state.review(take)
            self._show()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        """Closing the recorder ends a take in progress and releases the microphone."""
        self.stop()
        super().closeEvent(event)

    # Review.

    def play(self) -> None:
        take = self.state.take
        if take is not None:
            sd.play(take.audio, take.sample_rate)

    def import_file(self, path: Path) -> None:
        """Review a recording from a file as if it had just been recorded."""
        try:
            audio, rate = sf.read(path, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            self.report.setText(f"Cannot read {path.name} ({exc}); choose a WAV, FLAC or OGG file.")
            return
        self.state.analysing(rate)
        self._analyse(audio.mean(axis=1), rate)
        if not self.name_edit.text():
            self.name_edit.setText(path.stem)
        self._show()

    def _choose_file(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Import a recording", "", "Audio (*.wav *.flac *.ogg)")
        if name:
            self.import_file(Path(name))

    def save(self) -> Voice | None:
        """Add the trimmed take to the library under the name typed, with the transcript if any."""
        take, name = self.state.take, self.name_edit.text().strip()
        if not self.state.can_save or not name:
            return None
        with tempfile.TemporaryDirectory(prefix="vesper-take-") as folder:
            recording = Path(folder) / "take.wav"  # the library copies it into the voices folder
            write_wav(recording, take.audio, take.sample_rate)
            try:
                voice = self.store.add(name, recording, self.transcript_edit.text().strip() or None)
            except (OSError, VesperError) as exc:
                QMessageBox.warning(self, "Voice not saved", str(exc))
                return None
        self.state.discard()
        self.name_edit.clear()
        self.transcript_edit.clear()
        self._show(f"Saved “{voice.name}” in the voice library.")
        self.saved.emit(voice)
        return voice

    # Drawing.

    def _show(self, message: str | None = None) -> None:
        state, phase = self.state, self.state.phase
        self.meter.setValue(meter_value(state.level_dbfs))
        busy = phase in (Phase.COUNTDOWN, Phase.RECORDING)
        if phase is Phase.COUNTDOWN:
            self.clock.setText(f"Get ready… {state.countdown_left}")
        elif phase is Phase.RECORDING:
            self.clock.setText(f"● Recording {state.elapsed_seconds:4.1f} s / {MAX_SECONDS:.0f} s")
        elif phase is Phase.ANALYSING:
            self.clock.setText("Checking the take…")
        elif phase is Phase.REVIEW and state.take is not None:
            self.clock.setText(f"Take: {state.take.report.trimmed_seconds:.1f} s after trimming silence")
        else:
            self.clock.setText(f"Press Record and read {MIN_SPEECH_SECONDS:.0f}-15 s of text aloud")
        self.record_action.setEnabled(not busy and self.device is not None)
        self.stop_action.setEnabled(busy)
        self.device_box.setEnabled(not busy)
        self.import_button.setEnabled(not busy)
        self.play_button.setEnabled(phase is Phase.REVIEW)
        self.save_button.setEnabled(state.can_save and bool(self.name_edit.text().strip()))
        if message is not None:
            self.report.setText(message)
        elif phase is Phase.REVIEW and state.take is not None:
            self.report.setText(_report_text(state.take.report))
        elif busy:
            self.report.setText("")


def _to_float(block: np.ndarray) -> np.ndarray:
    return block.astype(np.float32) / 32768.0


def _report_text(report) -> str:
    if not report.findings:
        return "✔ " + report.summary()
    return "\n".join(f"{SEVERITY_MARK[f.severity]} {f.advice}" for f in report.findings)


def _named(widget, name: str):
    widget.setAccessibleName(name)
    return widget


def _button(action: QAction, name: str) -> QPushButton:
    """A push button that mirrors ``action`` (text, enabled state) and triggers it."""
    button = _named(QPushButton(action.text()), name)
    button.clicked.connect(action.trigger)
    action.changed.connect(lambda: button.setEnabled(action.isEnabled()))
    button.setEnabled(action.isEnabled())
    return button
