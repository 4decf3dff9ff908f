"""Playing audio on the default output device."""

from __future__ import annotations

import numpy as np

from inference.errors import VesperError


def play(audio: np.ndarray, rate: int) -> None:
    """Play and wait until done; a missing sound device is a clear error, not a crash."""
    try:
        import sounddevice as sd
    except OSError as exc:  # the PortAudio library is missing
        raise VesperError(f"Cannot play audio: {exc} (on Debian/Ubuntu: apt install libportaudio2); "
                          "the file was saved.") from exc
    try:
        sd.play(audio, rate)
        sd.wait()
    except sd.PortAudioError as exc:
        raise VesperError(f"Cannot play audio ({exc}); the file was saved.") from exc
