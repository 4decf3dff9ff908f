"""Playing a narration on the default output device while it is generated."""

from __future__ import annotations

import threading
from collections import deque

import numpy as np

from inference.errors import VesperError
from inference.worker.protocol import CHUNK_GAP_SECONDS


def _sounddevice():
    """The sounddevice module; a missing PortAudio library is a clear error, not a crash."""
    try:
        import sounddevice as sd
    except OSError as exc:  # the PortAudio library is missing
        raise VesperError(f"Cannot play audio: {exc} (on Debian/Ubuntu: apt install libportaudio2); "
                          "the file is saved all the same.") from exc
    return sd


class LivePlayer:
    """Plays a narration while it is generated, with the pauses the saved file has between chunks.

    Chunks arrive in order, streamed in pieces (fast decode path) or whole. A chunk that is retried
    (a lower plan after running out of memory, a restarted worker) streams again from its start, so
    samples already queued are skipped by their offset. Sound starts once ``prebuffer`` seconds are
    queued; after an underrun (a plan slower than real time) it waits for that much again instead of
    stuttering sample by sample.
    """

    def __init__(self, prebuffer: float = 0.5, gap: float = CHUNK_GAP_SECONDS):
        self.prebuffer, self.gap = prebuffer, gap
        self._stream = None
        self._queue: deque[np.ndarray] = deque()
        self._queued = 0  # samples waiting
        self._fed: dict[int, int] = {}  # chunk index -> samples of it already queued
        self._lock = threading.Lock()
        self._playing = self._ending = False
        self._prebuffer_samples = 0  # set from the rate of the first audio
        self._drained = threading.Event()

    def piece(self, index: int, offset: int, audio: np.ndarray, rate: int) -> None:
        """The next samples of chunk ``index``, starting ``offset`` samples into it."""
        self._open(rate)
        if index not in self._fed:
            if self._fed:
                self._push(np.zeros(int(self.gap * rate), dtype=np.float32))
            self._fed[index] = 0
        skip = self._fed[index] - offset
        if skip < len(audio):  # clipped as the saved file is: a float device would not clip for us
            self._push(np.clip(np.asarray(audio[max(skip, 0):], dtype=np.float32), -1.0, 1.0))
            self._fed[index] = offset + len(audio)

    def chunk(self, index: int, audio: np.ndarray, rate: int) -> None:
        """Chunk ``index`` whole: whatever its pieces did not already queue."""
        self.piece(index, 0, audio, rate)

    def finish(self) -> None:
        """Wait until everything queued has been heard, then release the device."""
        if self._stream is None:
            return
        with self._lock:
            self._ending = True
            seconds = self._queued / self._stream.samplerate
        self._drained.wait(timeout=seconds + 5.0)
        self._stream.stop()
        self._stream.close()

    def _open(self, rate: int) -> None:
        if self._stream is not None:
            return
        sd = _sounddevice()
        self._prebuffer_samples = int(self.prebuffer * rate)
        try:
            self._stream = sd.OutputStream(samplerate=rate, channels=1, dtype="float32", callback=self._fill)
            self._stream.start()
        except sd.PortAudioError as exc:
            raise VesperError(f"Cannot play audio ({exc}); the file will still be saved.") from exc

    def _push(self, samples: np.ndarray) -> None:
        with self._lock:
            self._queue.append(samples)
            self._queued += len(samples)

    def _fill(self, outdata, frames: int, time_info, status) -> None:
        """PortAudio's callback: the next ``frames`` samples, silence while (re)buffering."""
        out = outdata[:, 0]
        with self._lock:
            if not self._playing and (self._queued >= self._prebuffer_samples or self._ending):
                self._playing = True
            written = self._take(out) if self._playing else 0
            out[written:] = 0
            if written < frames and not self._ending:
                self._playing = False
            if self._ending and self._queued == 0:
                self._drained.set()

    def _take(self, out: np.ndarray) -> int:
        written = 0
        while written < len(out) and self._queue:
            head = self._queue[0]
            n = min(len(out) - written, len(head))
            out[written:written + n] = head[:n]
            written += n
            if n == len(head):
                self._queue.popleft()
            else:
                self._queue[0] = head[n:]
        self._queued -= written
        return written
