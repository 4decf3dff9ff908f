"""Play, pause, stop and seek the track in ``PlayerState``; it may still be growing while it plays."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSlider, QWidget

from desktop.playback import AudioOutput
from desktop.state.player import PlayerState, PlayState
from inference.errors import VesperError

REFRESH_MS = 100
IDLE_CLOSE_MS = 1500  # silence this long (paused, stopped, waiting for the next piece) closes the stream


class PlayerWidget(QWidget):
    failed = Signal(str)  # the sound device could not be opened
    play_requested = Signal()  # play pressed with nothing loaded: the window offers the narration

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = PlayerState()
        self.output = AudioOutput(self.state)
        self.play_button = QPushButton("Play", self)
        self.play_button.setAccessibleName("Play or pause")
        self.play_button.clicked.connect(self.toggle)
        self.stop_button = QPushButton("Stop", self)
        self.stop_button.setAccessibleName("Stop playback")
        self.stop_button.clicked.connect(self.stop)
        self.slider = QSlider(Qt.Orientation.Horizontal, self)
        self.slider.setAccessibleName("Playback position")
        self.slider.sliderReleased.connect(lambda: self.state.seek(self.slider.value() / 10))
        self.position_label = QLabel("0:00 / 0:00", self)
        self.position_label.setAccessibleName("Position and length")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for widget in (self.play_button, self.stop_button):
            layout.addWidget(widget)
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.position_label)
        self._idle_ms = 0  # how long the open stream has had nothing to play
        self._timer = QTimer(self)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self.refresh)
        self._timer.start()

    # Feeding.

    def start_live(self) -> None:
        """A job starts: clear the track and play its audio as it arrives."""
        self.state.clear(live=True)
        self.state.play()

    def feed(self, key: object, offset: int, audio: np.ndarray, rate: int, pause: float | None = None) -> None:
        self.state.feed(key, offset, audio, rate, pause)
        self._open()

    def silence(self, seconds: float) -> None:
        """A pause the text asks for (``[pause 2s]``), heard before the next chunk fed."""
        self.state.silence(seconds)

    def end_live(self) -> None:
        self.state.close()

    def play_audio(self, audio: np.ndarray, rate: int) -> None:
        self.state.load(audio, rate)
        self.state.play()
        self._open()

    # Transport.

    def toggle(self) -> None:
        if self.state.state is PlayState.PLAYING:
            self.state.pause()
        elif self.state.duration == 0:
            self.play_requested.emit()
        else:
            self.state.play()
            self._open()
        self.refresh()

    def stop(self) -> None:
        self.state.stop()
        self.refresh()

    def seek(self, seconds: float) -> None:
        self.state.seek(seconds)
        self.refresh()

    def refresh(self) -> None:
        self._close_when_idle()
        playing = self.state.state is PlayState.PLAYING
        self.play_button.setText("Pause" if playing else "Play")
        duration = self.state.duration
        self.slider.setMaximum(int(duration * 10))
        if not self.slider.isSliderDown():
            self.slider.setValue(int(self.state.seconds * 10))
        self.position_label.setText(f"{_clock(self.state.seconds)} / {_clock(duration)}")

    def _close_when_idle(self) -> None:
        """Release the sound device after ``IDLE_CLOSE_MS`` with nothing to hear; ``_open`` reopens it."""
        if self.state.sounding or not self.output.is_open:
            self._idle_ms = 0
            return
        self._idle_ms += REFRESH_MS
        if self._idle_ms >= IDLE_CLOSE_MS:
            self.output.close()
            self._idle_ms = 0

    def _open(self) -> None:
        if self.state.sample_rate == 0:
            return
        try:
            self.output.ensure_open()
        except VesperError as exc:
            self.state.stop()
            self.failed.emit(str(exc))

    def close_output(self) -> None:
        self._timer.stop()
        self.output.close()


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 60}:{whole % 60:02d}"
