"""The sound device behind the player: one sounddevice output stream that pulls from a ``PlayerState``.

The stream opens at the track's sample rate when there is audio to hear and closes when there has been
none for a moment (``PlayerWidget`` decides): an open stream keeps a laptop's sound device awake, and a
virtual one without a clock is written as fast as the callback can fill it. PortAudio's callback runs on
its own thread and only copies samples, so a slow GUI never starves it.
"""

from __future__ import annotations

from desktop.state.player import PlayerState
from inference.errors import VesperError
from inference.playback import _sounddevice


class AudioOutput:
    """Plays ``state`` on the default output device; errors opening the device are ``VesperError``s."""

    def __init__(self, state: PlayerState) -> None:
        self.state = state
        self._stream = None

    def ensure_open(self) -> None:
        rate = self.state.sample_rate
        if self._stream is not None and self._stream.samplerate == rate:
            return
        self.close()
        sd = _sounddevice()
        try:
            self._stream = sd.OutputStream(samplerate=rate, channels=1, dtype="float32", callback=self._fill)
            self._stream.start()
        except sd.PortAudioError as exc:
            raise VesperError(f"Cannot play audio ({exc}); check the sound output device.") from exc

    def _fill(self, outdata, frames: int, time_info, status) -> None:
        outdata[:, 0] = self.state.read(frames)

    @property
    def is_open(self) -> bool:
        return self._stream is not None

    def close(self) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream.close()
            self._stream = None
