"""Recording analysis on real speech (espeak-ng) with silence, noise and clipping added by numpy."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from inference.voice_quality import MAX_SECONDS, Check, Severity, analyse, level_dbfs, speech_frames

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng (.ci/run installs it)")

SENTENCES = ("The quick brown fox jumps over the lazy dog. A voice is cloned from a short and clear recording, "
             "read at an even pace, in a quiet room, close to the microphone.")


def espeak(tmp_path_factory, text: str) -> tuple[np.ndarray, int]:
    path = tmp_path_factory.mktemp("espeak") / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, timeout=60)
    audio, rate = sf.read(path, dtype="float32")
    return audio, rate


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> tuple[np.ndarray, int]:
    """About 9 s of espeak-ng speech (22.05 kHz), scaled to a peak of -6 dBFS."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("needs espeak-ng (.ci/run installs it)")
    audio, rate = espeak(tmp_path_factory, SENTENCES)
    return (audio / np.abs(audio).max() * 0.5).astype(np.float32), rate


def _checks(analysis) -> set[Check]:
    return {f.check for f in analysis.report.findings}


def _pad(audio: np.ndarray, rate: int, before: float, after: float, noise: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(0)
    out = np.concatenate([np.zeros(int(before * rate)), audio, np.zeros(int(after * rate))])
    return (out + noise * rng.standard_normal(len(out))).astype(np.float32)


@needs_espeak
def test_clean_speech_passes_and_silence_is_trimmed(speech):
    audio, rate = speech
    padded = _pad(audio, rate, 2.0, 3.0, noise=1e-4)  # a quiet room: -80 dBFS of hiss
    result = analyse(padded, rate)
    assert result.report.findings == () and result.report.usable
    # About 5 s of leading/trailing silence are gone; the speech itself is kept whole.
    assert result.report.duration_seconds == pytest.approx(len(padded) / rate)
    assert len(audio) / rate - 0.2 < result.report.trimmed_seconds < len(audio) / rate + 0.6
    kept_energy = float((result.audio.astype(np.float64) ** 2).sum())
    assert kept_energy > 0.999 * float((audio.astype(np.float64) ** 2).sum())
    assert result.report.snr_db > 40
    assert "Good recording" in result.report.summary()


@needs_espeak
def test_short_recording_is_a_problem(tmp_path_factory):
    audio, rate = espeak(tmp_path_factory, "Hello there.")
    result = analyse(_pad(audio, rate, 0.5, 0.5), rate)
    assert Check.TOO_SHORT in _checks(result) and not result.report.usable
    assert result.report.speech_seconds < 5


def test_silence_is_no_speech():
    result = analyse(np.zeros(16000 * 6, np.float32), 16000)
    assert _checks(result) == {Check.NO_SPEECH} and not result.report.usable
    assert "microphone" in result.report.summary()


@needs_espeak
def test_clipping_is_found(speech):
    audio, rate = speech
    clipped = np.clip(audio * 8, -1.0, 1.0)  # +18 dB into a hard limit
    result = analyse(clipped, rate)
    assert Check.CLIPPED in _checks(result)
    assert result.report.clipped_fraction > 0.01
    assert Check.CLIPPED not in _checks(analyse(audio, rate))


@needs_espeak
def test_quiet_recording_is_found(speech):
    audio, rate = speech
    result = analyse(audio * 0.02, rate)  # peak -40 dBFS
    assert Check.TOO_QUIET in _checks(result)
    assert result.report.peak_dbfs == pytest.approx(-40, abs=0.5)


@needs_espeak
def test_noise_lowers_the_snr_estimate(speech):
    audio, rate = speech
    clean = analyse(_pad(audio, rate, 1.0, 1.0, noise=1e-3), rate).report
    noisy = analyse(_pad(audio, rate, 1.0, 1.0, noise=0.05), rate).report  # speech RMS ~ -22 dBFS, noise -26
    assert Check.NOISY in {f.check for f in noisy.findings}
    assert Check.NOISY not in {f.check for f in clean.findings}
    assert noisy.snr_db < 15 < clean.snr_db


@needs_espeak
def test_long_recording_is_cut_to_thirty_seconds(speech):
    audio, rate = speech
    long = np.concatenate([audio] * 4)  # about 36 s of speech
    result = analyse(long, rate)
    assert Check.TOO_LONG in _checks(result)
    assert len(result.audio) == int(MAX_SECONDS * rate)
    assert result.report.usable


@needs_espeak
@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000])
def test_every_device_rate_is_analysed_and_resampling_noted(speech, rate):
    import soxr

    audio, source_rate = speech
    at_rate = soxr.resample(_pad(audio, source_rate, 1.0, 1.0), source_rate, rate).astype(np.float32)
    result = analyse(at_rate, rate, model_rate=24000)
    resampled = [f for f in result.report.findings if f.check is Check.RESAMPLED]
    assert len(resampled) == 1
    assert resampled[0].severity is (Severity.WARNING if rate < 24000 else Severity.INFO)
    assert result.report.speech_seconds > 5
    assert len(speech_frames(at_rate, rate)) == len(at_rate) // (rate * 30 // 1000)


def test_level_meter_reading():
    assert level_dbfs(np.array([0.5, -1.0], np.float32)) == pytest.approx(0.0)
    assert level_dbfs(np.array([0.1], np.float32)) == pytest.approx(-20.0)
    assert level_dbfs(np.zeros(4, np.float32)) == -np.inf


def test_voice_quality_does_not_import_torch():
    code = "import sys, inference.voice_quality; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
