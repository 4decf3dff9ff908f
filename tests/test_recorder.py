"""The recorder: its state without Qt, and the real widget recording from an ALSA virtual microphone.

The virtual microphone is ALSA's file plugin: capture reads raw S16 samples from a file we write
(espeak-ng speech, then silence), through real sounddevice/PortAudio. The plugin delivers the file as
fast as it is read rather than in real time, so a take reaches its 30 s maximum at once and stops itself.
"""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
import soundfile as sf
import soxr

from desktop.recorder_state import Phase, RecorderState, is_monitor, microphones
from inference.voice_quality import MAX_SECONDS, analyse
from tests.conftest import SPOKEN_TEXT
from tests.test_playback import _portaudio_available

needs_alsa = pytest.mark.skipif(not _portaudio_available(),
                                reason="needs libportaudio2 and ALSA (.ci/run installs them)")
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng (.ci/run installs it)")

# The default device is the virtual microphone; two more devices are named like system monitors.
ALSA_CONF = """</usr/share/alsa/alsa.conf>
pcm.!default {{
  type asym
  playback.pcm {{ type file slave.pcm "null" file "{played}" format "raw" }}
  capture.pcm {{ type file slave.pcm "null" file "/dev/null" infile "{mic}" format "raw" }}
}}
pcm.speakers_monitor {{ type file slave.pcm "null" file "/dev/null" infile "{mic}" format "raw" }}
pcm.Loopback_capture {{ type file slave.pcm "null" file "/dev/null" infile "{mic}" format "raw" }}
"""


@pytest.fixture
def virtual_microphone(tmp_path, monkeypatch):
    """``feed(audio)`` writes the microphone's file (``feed.played`` is the speaker's); PortAudio re-reads
    the ALSA configuration."""
    import sounddevice as sd

    mic, played = tmp_path / "mic.raw", tmp_path / "played.raw"
    mic.write_bytes(b"")
    conf = tmp_path / "asound.conf"
    conf.write_text(ALSA_CONF.format(mic=mic, played=played))
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(conf))
    sd._terminate()
    sd._initialize()

    def feed(audio: np.ndarray) -> None:
        mic.write_bytes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())

    feed.played = played

    yield feed
    monkeypatch.undo()
    sd._terminate()
    sd._initialize()


class StallMeter:
    """The longest gap between the ticks of a 10 ms repeating timer: how long the event loop was blocked."""

    def __init__(self) -> None:
        from PySide6.QtCore import QTimer

        self.ticks: list[float] = [time.perf_counter()]
        self.timer = QTimer(interval=10)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))
        self.timer.start()

    def longest(self) -> float:
        self.timer.stop()
        return float(np.diff(self.ticks).max())


@pytest.fixture
def library(tmp_path, monkeypatch):
    from inference.voice_library import VoiceLibrary

    monkeypatch.setenv("VESPER_HOME", str(tmp_path / "home"))
    return VoiceLibrary()


def test_monitor_devices_are_not_microphones():
    devices = [{"name": n, "max_input_channels": c, "default_samplerate": 48000.0} for n, c in [
        ("Built-in Microphone", 2), ("Monitor of Built-in Audio Analog Stereo", 2), ("HDMI output", 0),
        ("Stereo Mix (Realtek Audio)", 2), ("What U Hear (Sound Blaster)", 2), ("USB Loopback", 1),
        ("Headset Mic", 1)]]
    assert [d.name for d in microphones(devices)] == ["Built-in Microphone", "Headset Mic"]
    assert [d.index for d in microphones(devices)] == [0, 6]
    assert is_monitor("alsa_output.pci.analog-stereo.monitor") and not is_monitor("Blue Yeti")


def test_state_counts_down_records_and_stops_at_the_maximum():
    state = RecorderState(countdown=3)
    state.start(8000)
    assert state.phase is Phase.COUNTDOWN and state.countdown_left == 3
    state.add(np.full(800, 0.5, np.float32))  # outside a take nothing is kept
    assert state.level_dbfs == pytest.approx(-6.02, abs=0.01) and state.elapsed_seconds == 0
    assert [state.tick(), state.tick(), state.tick()] == [False, False, True]
    assert state.phase is Phase.RECORDING
    block = np.zeros(8000, np.float32)
    full = [state.add(block) for _ in range(int(MAX_SECONDS) + 2)]
    assert full.index(True) == int(MAX_SECONDS) - 1 and state.elapsed_seconds == MAX_SECONDS
    take = state.stop()
    assert state.phase is Phase.ANALYSING and len(take) == MAX_SECONDS * 8000
    state.review(analyse(take, 8000))
    assert state.phase is Phase.REVIEW and not state.can_save  # silence: no speech, nothing to save
    state.discard()
    assert state.phase is Phase.IDLE and state.take is None


def test_stopping_during_the_countdown_records_nothing():
    state = RecorderState()
    state.start(16000)
    assert state.stop() is None
    assert state.phase is Phase.IDLE and state.take is None


@needs_alsa
def test_device_picker_offers_only_microphones(qtbot, virtual_microphone, library):
    from desktop.widgets.recorder import RecorderWidget

    widget = RecorderWidget(library)
    qtbot.addWidget(widget)
    offered = [widget.device_box.itemText(i) for i in range(widget.device_box.count())]
    assert "default" in offered
    assert not [n for n in offered if "monitor" in n.lower() or "loopback" in n.lower()]
    assert widget.device.name == "default"  # the system default is preselected


@needs_alsa
@needs_espeak
def test_record_trim_check_and_save_from_the_virtual_microphone(qtbot, tmp_path, virtual_microphone, library,
                                                                spoken):
    from PySide6.QtCore import Qt

    from desktop.widgets.recorder import RecorderWidget

    audio, espeak_rate = spoken
    widget = RecorderWidget(library, model_rate=24000, countdown_ms=20)
    qtbot.addWidget(widget)
    rate = widget.device.default_rate
    speech = soxr.resample(audio, espeak_rate, rate).astype(np.float32)
    silence = np.zeros(int(1.5 * rate), np.float32)
    virtual_microphone(np.concatenate([silence, speech, np.zeros(int((MAX_SECONDS + 10) * rate), np.float32)]))

    levels: list[int] = []
    widget.meter.valueChanged.connect(levels.append)
    stall = StallMeter()
    widget.record_action.trigger()
    assert widget.state.phase is Phase.COUNTDOWN and "3" in widget.clock.text()
    qtbot.waitUntil(lambda: widget.state.phase is Phase.REVIEW, timeout=30000)
    assert max(levels) > 80  # the meter showed the speech (-6 dBFS peaks)
    # The microphone delivered 30 s of audio in about a second, and the event loop never stalled.
    assert stall.longest() < 0.1

    report = widget.state.take.report
    assert report.usable, report.summary()
    assert report.duration_seconds == pytest.approx(MAX_SECONDS)
    assert "resampled" in widget.report.text() and widget.play_button.isEnabled()

    widget.play_button.click()  # the take, trimmed, on the virtual speaker
    import sounddevice as sd

    sd.wait()
    raw = virtual_microphone.played.read_bytes()
    heard = np.frombuffer(raw[: len(raw) // 4 * 4], dtype="<f4")
    take = widget.state.take.audio
    take = take[np.flatnonzero(take)[0]:]  # both start with silence: align on the first sound
    heard = heard[np.flatnonzero(heard)[0]:]
    np.testing.assert_array_equal(heard[: len(take)], take)

    widget.name_edit.setText("Me")
    widget.transcript_edit.setText(SPOKEN_TEXT)
    assert widget.save_button.isEnabled()
    qtbot.mouseClick(widget.save_button, Qt.MouseButton.LeftButton)
    [voice] = library.list()
    assert voice.name == "Me" and voice.transcript == SPOKEN_TEXT
    assert voice.recording.is_relative_to(tmp_path / "home" / "data" / "voices")  # under VESPER_HOME

    saved, saved_rate = sf.read(voice.recording, dtype="float32")
    assert saved_rate == rate
    # Trimmed to the speech (plus the short pads), and it is the espeak speech: aligned, it correlates.
    assert len(speech) / rate < len(saved) / rate < len(speech) / rate + 0.5
    lag = int(np.argmax(np.correlate(saved[: rate], speech[: rate // 2], mode="valid")))
    match = saved[lag: lag + len(speech)]
    assert np.corrcoef(match, speech[: len(match)])[0, 1] > 0.99
    assert widget.state.phase is Phase.IDLE and "Saved" in widget.report.text()


@needs_alsa
@needs_espeak
def test_import_a_file(qtbot, tmp_path, library, spoken):
    from desktop.widgets.recorder import RecorderWidget

    audio, rate = spoken
    path = tmp_path / "Narrator.flac"
    sf.write(path, np.concatenate([np.zeros(rate), audio, np.zeros(rate)]), rate)
    widget = RecorderWidget(library, model_rate=24000)
    qtbot.addWidget(widget)
    widget.import_file(path)
    assert widget.state.phase is Phase.ANALYSING and widget.name_edit.text() == "Narrator"
    qtbot.waitUntil(lambda: widget.state.phase is Phase.REVIEW)
    assert widget.state.take.report.trimmed_seconds < len(audio) / rate + 0.5
    assert widget.save().name == "Narrator"
    widget.import_file(tmp_path / "missing.wav")
    assert "Cannot read" in widget.report.text()


def test_every_recorder_control_has_an_accessible_name(qtbot, library):
    from PySide6.QtWidgets import QComboBox, QLineEdit, QProgressBar, QPushButton

    from desktop.widgets.recorder import RecorderWidget

    widget = RecorderWidget(library)
    qtbot.addWidget(widget)
    controls = [c for kind in (QPushButton, QComboBox, QLineEdit, QProgressBar) for c in widget.findChildren(kind)]
    assert len(controls) >= 9 and all(c.accessibleName() for c in controls)
    assert widget.record_action.shortcut().toString() == "Ctrl+R"


@needs_alsa
def test_ctrl_r_counts_down_and_stop_cancels(qtbot, virtual_microphone, library):
    from PySide6.QtCore import Qt

    from desktop.widgets.recorder import RecorderWidget

    widget = RecorderWidget(library)
    qtbot.addWidget(widget)
    with qtbot.waitActive(widget):
        widget.show()
        widget.activateWindow()
    widget.name_edit.setFocus()
    qtbot.keyClick(widget.name_edit, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
    assert widget.state.phase is Phase.COUNTDOWN and widget.stop_button.isEnabled()
    qtbot.keyClick(widget.name_edit, Qt.Key.Key_Period, Qt.KeyboardModifier.ControlModifier)
    assert widget.state.phase is Phase.IDLE and widget.record_button.isEnabled()
