"""What the recorder is doing, without Qt: the countdown, the take being recorded, its review.

The recorder widget drives this from the GUI thread (timer ticks, audio blocks drained from the
audio thread's queue) and only draws what it says, so the whole recording flow is testable in plain
Python. Which input devices count as microphones is decided here too.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from inference.voice_quality import MAX_SECONDS, Analysis, level_dbfs

COUNTDOWN_SECONDS = 3
# Devices that capture what the computer plays rather than a voice (PulseAudio/PipeWire monitors,
# Windows' Stereo Mix, Creative's What U Hear, loopback drivers).
MONITOR_WORDS = ("monitor", "loopback", "stereo mix", "what u hear")


class Phase(str, enum.Enum):
    IDLE = "idle"
    COUNTDOWN = "countdown"
    RECORDING = "recording"
    ANALYSING = "analysing"  # the take is being trimmed and checked (off the GUI thread)
    REVIEW = "review"  # a take (recorded or imported) is analysed and can be played or saved


@dataclass(frozen=True)
class InputDevice:
    index: int
    name: str
    channels: int
    default_rate: int


def is_monitor(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in MONITOR_WORDS)


def microphones(devices: Iterable[Mapping]) -> list[InputDevice]:
    """The devices of ``sounddevice.query_devices()`` a user can speak into."""
    return [InputDevice(i, str(d["name"]), int(d["max_input_channels"]), int(d["default_samplerate"]))
            for i, d in enumerate(devices)
            if int(d["max_input_channels"]) > 0 and not is_monitor(str(d["name"]))]


class RecorderState:
    """Countdown, then recording until stopped or ``MAX_SECONDS``, then review of the analysed take."""

    def __init__(self, model_rate: int | None = None, countdown: int = COUNTDOWN_SECONDS) -> None:
        self.model_rate = model_rate
        self.countdown = countdown
        self.phase = Phase.IDLE
        self.countdown_left = 0
        self.rate = 0
        self.level_dbfs = -math.inf
        self.take: Analysis | None = None
        self._blocks: list[np.ndarray] = []
        self._samples = 0

    @property
    def elapsed_seconds(self) -> float:
        return self._samples / self.rate if self.rate else 0.0

    @property
    def can_save(self) -> bool:
        return self.phase is Phase.REVIEW and self.take is not None and self.take.report.usable

    def start(self, rate: int) -> None:
        """Begin the countdown for a take at ``rate`` Hz (straight to recording without a countdown)."""
        self.rate, self.take, self._blocks, self._samples = rate, None, [], 0
        self.countdown_left = self.countdown
        self.phase = Phase.COUNTDOWN if self.countdown else Phase.RECORDING

    def tick(self) -> bool:
        """One second of countdown has passed; True when recording starts now."""
        if self.phase is not Phase.COUNTDOWN:
            return False
        self.countdown_left -= 1
        if self.countdown_left > 0:
            return False
        self.phase = Phase.RECORDING
        return True

    def add(self, block: np.ndarray) -> bool:
        """Audio from the microphone (mono float32); True once the take reached its maximum length."""
        self.level_dbfs = level_dbfs(block)
        if self.phase is not Phase.RECORDING:
            return False  # outside a take the meter may move; nothing is kept
        room = int(MAX_SECONDS * self.rate) - self._samples
        self._blocks.append(block[:room])
        self._samples += min(len(block), room)
        return self._samples >= MAX_SECONDS * self.rate

    def stop(self) -> np.ndarray | None:
        """End the countdown or the recording; the recorded take, to be analysed, or None without one."""
        self.level_dbfs = -math.inf
        if self.phase is Phase.RECORDING and self._samples:
            self.phase = Phase.ANALYSING
            return np.concatenate(self._blocks)
        if self.phase in (Phase.COUNTDOWN, Phase.RECORDING):
            self.phase = Phase.IDLE
        return None

    def analysing(self, rate: int) -> None:
        """An imported recording at ``rate`` Hz is being analysed."""
        self.rate, self.take, self.phase = rate, None, Phase.ANALYSING

    def review(self, take: Analysis) -> None:
        """The analysed take (recorded or imported) is ready to play or save."""
        self.rate, self.take, self.phase = take.sample_rate, take, Phase.REVIEW

    def discard(self) -> None:
        self.phase, self.take, self._blocks, self._samples = Phase.IDLE, None, [], 0
