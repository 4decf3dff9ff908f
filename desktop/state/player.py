"""What the player plays: one growing track of audio, a cursor, and play/pause/stop (no Qt, no sound).

Audio is fed while it is generated: chunk pieces as they stream (a retried chunk streams again from
offset 0, so samples already held are skipped by their offset, as ``inference.playback.LivePlayer``
does) and whole chunks, with the narration's pause between chunks, and a longer silence before the
next chunk where the text asks for one (``[pause 2s]``, ``silence``). The sound device's callback
pulls samples with ``read``; while the track has run dry but more is coming it gets silence and
the cursor waits, so playback resumes where it was once the next piece arrives.
"""

from __future__ import annotations

import bisect
import enum
import threading

import numpy as np

from inference.worker.protocol import CHUNK_GAP_SECONDS


class PlayState(str, enum.Enum):
    STOPPED = "stopped"
    PLAYING = "playing"
    PAUSED = "paused"


class PlayerState:
    """Thread-safe: the GUI feeds and seeks, the audio callback reads."""

    def __init__(self, gap: float = CHUNK_GAP_SECONDS) -> None:
        self.gap = gap
        self._lock = threading.Lock()
        self._parts: list[np.ndarray] = []
        self._length = 0
        self._starts: list[int] = []  # where each part starts in the track
        self._fed: dict[object, int] = {}  # chunk key -> samples of it already in the track
        self._silence = 0.0  # seconds of silence owed before the next chunk, beside the gap
        self.sample_rate = 0
        self.position = 0  # samples
        self.state = PlayState.STOPPED
        self.complete = True  # False while a job may still add audio: running dry then waits, not stops

    def clear(self, live: bool = False) -> None:
        """Empty the track; ``live``: audio will be fed as it is generated until ``close`` is called."""
        with self._lock:
            self._parts, self._starts, self._length, self._fed, self._silence = [], [], 0, {}, 0.0
            self.sample_rate, self.position, self.state = 0, 0, PlayState.STOPPED
            self.complete = not live

    def close(self) -> None:
        """No more audio is coming: playback stops when it reaches the end, at once if it is there (the
        sound device may have been let go while the track waited for more)."""
        with self._lock:
            self.complete = True
            self._stop_at_end()

    def load(self, audio: np.ndarray, rate: int) -> None:
        """Replace the track with ``audio`` (a chunk's take, a whole narration)."""
        self.clear()
        self.feed("whole", 0, audio, rate)

    def silence(self, seconds: float) -> None:
        """``seconds`` of silence before the next chunk fed, on top of the chunk pause (a ``[pause]``);
        it is laid down when that chunk comes, at its sample rate."""
        with self._lock:
            self._silence += seconds

    def feed(self, key: object, offset: int, audio: np.ndarray, rate: int, pause: float | None = None) -> None:
        """The samples of chunk ``key`` from ``offset`` on; a new key starts after ``pause`` (None: the chunk
        pause) and any silence asked for, or at once when it is the first."""
        with self._lock:
            if self.sample_rate and rate != self.sample_rate:
                raise ValueError(f"audio at {rate} Hz fed to a track at {self.sample_rate} Hz")
            self.sample_rate = rate
            if key not in self._fed:
                pause = ((self.gap if pause is None else pause) if self._fed else 0.0) + self._silence
                self._append(np.zeros(int(pause * rate), dtype=np.float32))
                self._fed[key], self._silence = 0, 0.0
            skip = self._fed[key] - offset
            if skip < len(audio):
                self._append(np.clip(np.asarray(audio[max(skip, 0):], dtype=np.float32), -1.0, 1.0))
                self._fed[key] = offset + len(audio)

    def _append(self, samples: np.ndarray) -> None:
        if len(samples):
            self._parts.append(samples)
            self._starts.append(self._length)
            self._length += len(samples)

    # Transport.

    def play(self) -> None:
        with self._lock:
            if self.state is PlayState.STOPPED:
                self.position = 0
            self.state = PlayState.PLAYING

    def pause(self) -> None:
        with self._lock:
            if self.state is PlayState.PLAYING:
                self.state = PlayState.PAUSED

    def stop(self) -> None:
        with self._lock:
            self.state, self.position = PlayState.STOPPED, 0

    def seek(self, seconds: float) -> None:
        with self._lock:
            rate = self.sample_rate or 1
            self.position = min(max(int(seconds * rate), 0), self._length)

    @property
    def duration(self) -> float:
        return self._length / self.sample_rate if self.sample_rate else 0.0

    @property
    def sounding(self) -> bool:
        """Playing with audio left to hear now (not paused, stopped, or waiting for the next piece)."""
        return self.state is PlayState.PLAYING and self.position < self._length

    @property
    def seconds(self) -> float:
        return self.position / self.sample_rate if self.sample_rate else 0.0

    def read(self, frames: int) -> np.ndarray:
        """The next ``frames`` samples to hear (silence-padded); advances the cursor while playing."""
        out = np.zeros(frames, dtype=np.float32)
        with self._lock:
            if self.state is not PlayState.PLAYING:
                return out
            written = 0
            part = bisect.bisect_right(self._starts, self.position) - 1
            while written < frames and 0 <= part < len(self._parts):
                samples = self._parts[part][self.position - self._starts[part]:][:frames - written]
                out[written:written + len(samples)] = samples
                written += len(samples)
                self.position += len(samples)
                part += 1
            self._stop_at_end()
            return out

    def _stop_at_end(self) -> None:
        if self.state is PlayState.PLAYING and self.complete and self.position >= self._length:
            self.state, self.position = PlayState.STOPPED, 0
