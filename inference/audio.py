"""Reading reference recordings and writing results: the only module that touches audio files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from inference.defaults import MAX_REFERENCE_SECONDS  # the planner sizes voice prompts for this much
from inference.errors import BadInputError
from inference.output import atomic_output

MIN_REFERENCE_SECONDS = 1.0


def read_reference(path: Path) -> tuple[np.ndarray, int]:
    """Load a reference recording as mono float32, with a clear error for anything unusable."""
    if not path.exists():
        raise BadInputError(f"Reference recording {path} does not exist.")
    if not path.is_file():
        raise BadInputError(f"Reference recording {path} is not a file.")
    try:
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise BadInputError(f"Reference recording {path} is not a readable audio file (WAV, FLAC or OGG): "
                            f"{exc}.") from exc
    mono = audio.mean(axis=1)
    seconds = len(mono) / rate
    if seconds < MIN_REFERENCE_SECONDS:
        raise BadInputError(f"Reference recording {path} is {seconds:.2f} s long; record at least "
                            f"{MIN_REFERENCE_SECONDS:.0f} s of speech (5-15 s works best).")
    if not np.isfinite(mono).all():
        raise BadInputError(f"Reference recording {path} holds invalid samples (NaN or infinity): it is corrupt; "
                            "export or record it again.")
    if float(np.abs(mono).max()) == 0.0:
        raise BadInputError(f"Reference recording {path} is silent: record 5-15 s of clear speech.")
    if seconds > MAX_REFERENCE_SECONDS:
        # Cloning needs a few seconds; a long recording only costs memory and time.
        mono = mono[: int(MAX_REFERENCE_SECONDS * rate)]
    return np.ascontiguousarray(mono), int(rate)


def trimmed_reference_notice(path: Path) -> str | None:
    """What to tell the user when ``read_reference`` used only the start of ``path`` (None: all of it)."""
    seconds = sf.info(str(path)).duration
    if seconds <= MAX_REFERENCE_SECONDS:
        return None
    return (f"Reference recording {path} is {seconds:.0f} s long; only its first {MAX_REFERENCE_SECONDS:.0f} s "
            "are used (5-15 s of clear speech is enough).")


def resample(audio: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """High-quality band-limited resampling (libsoxr); a no-op when the rates match."""
    if rate == target_rate:
        return audio
    return soxr.resample(audio, rate, target_rate, quality="HQ").astype(np.float32, copy=False)


def write_wav(path: Path, audio: np.ndarray, rate: int) -> None:
    """Write 16-bit PCM atomically: a crash or a full disk never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as partial:
        sf.write(partial, np.clip(audio, -1.0, 1.0), rate, subtype="PCM_16", format="WAV")
