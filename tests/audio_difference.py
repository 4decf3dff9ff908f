"""How far one waveform is from another of the same length: what a faster variant of a model changes in its audio.

Shared by the CPU tier's benchmark (benchmarks/cpu_tier.py) and its test, so both state the same figures:
the waveform's signal-to-noise ratio against the reference and its largest and mean absolute difference,
and the mel spectrogram's relative difference (Frobenius norm of the difference over the reference's,
power spectrogram) and mean absolute difference in dB (log mel, floored 80 dB below the reference's
peak). The mel figures say what a listener would hear better than the samples do: a small shift of
phase moves samples a lot and the spectrogram little.
"""

from __future__ import annotations

import numpy as np
from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

FFT = 1024
HOP = 256
MELS = 80
FLOOR_DB = 80.0


def snr_db(reference: np.ndarray, other: np.ndarray) -> float:
    noise = float(np.sum((reference - other) ** 2))
    return float("inf") if noise == 0 else float(10 * np.log10(float(np.sum(reference ** 2)) / noise))


def mel_power(audio: np.ndarray, rate: int) -> np.ndarray:
    """(mels, frames) power mel spectrogram, Slaney mels up to the Nyquist frequency."""
    filters = mel_filter_bank(FFT // 2 + 1, MELS, 0.0, rate / 2, rate, norm="slaney", mel_scale="slaney")
    return spectrogram(audio.astype(np.float64), window_function(FFT, "hann"), FFT, HOP, power=2.0,
                       mel_filters=filters)


def difference(reference: np.ndarray, other: np.ndarray, rate: int) -> dict[str, float]:
    """SNR (dB), max and mean absolute sample difference, mel relative difference and mean dB difference."""
    if reference.shape != other.shape:
        raise ValueError(f"waveforms of different lengths: {reference.shape} and {other.shape}")
    ref_mel, other_mel = mel_power(reference, rate), mel_power(other, rate)
    floor = ref_mel.max() * 10 ** (-FLOOR_DB / 10)
    ref_db, other_db = (10 * np.log10(np.maximum(m, floor)) for m in (ref_mel, other_mel))
    return {"snr_db": snr_db(reference, other), "max_abs": float(np.abs(reference - other).max()),
            "mean_abs": float(np.abs(reference - other).mean()),
            "mel_relative": float(np.linalg.norm(ref_mel - other_mel) / np.linalg.norm(ref_mel)),
            "mel_db_mean_abs": float(np.abs(ref_db - other_db).mean())}
