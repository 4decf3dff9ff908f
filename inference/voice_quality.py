"""Is this recording good enough to clone a voice from? Trim it and say what to fix, in plain words.

Shared by the desktop recorder and ``vesper voices add``; torch-free (the GUI imports it). A voice
activity detector (WebRTC's, through webrtcvad-wheels) marks 30 ms frames as speech or not, at 16 kHz:
leading and trailing silence is cut (keeping a short pad so words are not clipped), and the speech and
non-speech frames give the signal-to-noise estimate. Each problem becomes a ``Finding`` with one
sentence of advice; ``QualityReport.usable`` is False only when cloning from it would clearly fail.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np
import soxr
import webrtcvad

VAD_RATE = 16000  # webrtcvad takes 8/16/32/48 kHz; 16 kHz covers the speech band
FRAME_MS = 30  # webrtcvad takes 10/20/30 ms frames
VAD_AGGRESSIVENESS = 2  # 0 (keeps most) .. 3 (drops most non-speech)
PAD_SECONDS = 0.15  # silence kept before the first and after the last speech frame
MIN_SPEECH_SECONDS = 5.0
MAX_SECONDS = 30.0
CLIP_LEVEL = 0.99  # |sample| at or above this is at full scale
CLIP_FRACTION = 0.001  # more than 0.1% of samples at full scale sounds distorted
QUIET_PEAK_DBFS = -20.0
QUIET_SPEECH_RMS_DBFS = -40.0
NOISY_SNR_DB = 15.0
MAX_SNR_DB = 90.0  # digital silence between words: report this rather than infinity


class Severity(str, enum.Enum):
    INFO = "info"  # worth knowing, nothing to do
    WARNING = "warning"  # the voice will work but sound worse; re-recording helps
    PROBLEM = "problem"  # cloning from it will not work well; record again


class Check(str, enum.Enum):
    NO_SPEECH = "no speech"
    TOO_SHORT = "too short"
    TOO_LONG = "too long"
    CLIPPED = "clipped"
    TOO_QUIET = "too quiet"
    NOISY = "noisy"
    RESAMPLED = "resampled"


@dataclass(frozen=True)
class Finding:
    check: Check
    severity: Severity
    advice: str  # one sentence for the user


@dataclass(frozen=True)
class QualityReport:
    """What the checks measured on the recording and what they found."""

    findings: tuple[Finding, ...]
    duration_seconds: float  # of the recording as given
    speech_seconds: float  # speech frames, by the VAD
    trimmed_seconds: float  # of the audio kept
    peak_dbfs: float
    speech_rms_dbfs: float
    snr_db: float
    clipped_fraction: float

    @property
    def usable(self) -> bool:
        return not any(f.severity is Severity.PROBLEM for f in self.findings)

    def summary(self) -> str:
        """The findings as plain sentences, or a line saying all is well."""
        if not self.findings:
            return f"Good recording: {self.speech_seconds:.1f} s of clear speech."
        return "\n".join(f.advice for f in self.findings)


@dataclass(frozen=True)
class Analysis:
    audio: np.ndarray  # mono float32 at ``sample_rate``, silence trimmed, at most MAX_SECONDS
    sample_rate: int
    report: QualityReport


def analyse(audio: np.ndarray, rate: int, model_rate: int | None = None) -> Analysis:
    """Trim ``audio`` (mono float32) to its speech and check it; ``model_rate`` notes a resampling."""
    audio = np.ascontiguousarray(audio, dtype=np.float32).reshape(-1)
    speech = speech_frames(audio, rate)
    frame = rate * FRAME_MS // 1000
    start, end = _speech_span(speech, frame, rate, len(audio))
    kept = audio[start:end]
    findings: list[Finding] = []
    if len(kept) > MAX_SECONDS * rate:
        kept = kept[: int(MAX_SECONDS * rate)]
        findings.append(Finding(Check.TOO_LONG, Severity.INFO,
                                f"The recording is longer than {MAX_SECONDS:.0f} s; only the first "
                                f"{MAX_SECONDS:.0f} s of speech are kept."))
    power = _frame_power(audio, frame)
    speech_seconds = float(speech.sum()) * FRAME_MS / 1000
    report_values = _levels(audio, power, speech)
    findings += _findings(speech_seconds, *report_values, rate, model_rate)
    report = QualityReport(tuple(findings), len(audio) / rate, speech_seconds, len(kept) / rate, *report_values)
    return Analysis(np.ascontiguousarray(kept), rate, report)


def speech_frames(audio: np.ndarray, rate: int) -> np.ndarray:
    """One bool per FRAME_MS frame of ``audio`` (at its own rate): does the VAD hear speech in it?"""
    at_vad = soxr.resample(audio, rate, VAD_RATE) if rate != VAD_RATE else audio
    pcm = (np.clip(at_vad, -1.0, 1.0) * 32767).astype("<i2")
    step = VAD_RATE * FRAME_MS // 1000
    vad = webrtcvad.Vad(VAD_AGGRESSIVENESS)
    count = min(len(pcm) // step, len(audio) // (rate * FRAME_MS // 1000))
    return np.array([vad.is_speech(pcm[i * step:(i + 1) * step].tobytes(), VAD_RATE) for i in range(count)],
                    dtype=bool)


def level_dbfs(block: np.ndarray) -> float:
    """Peak level of a block in dBFS (-inf for silence): what a level meter shows."""
    return _db(float(np.abs(block).max())) if block.size else -math.inf


def _speech_span(speech: np.ndarray, frame: int, rate: int, length: int) -> tuple[int, int]:
    """Sample range from the first to the last speech frame, padded; the whole recording without speech."""
    hits = np.flatnonzero(speech)
    if not hits.size:
        return 0, length
    pad = int(PAD_SECONDS * rate)
    return max(0, int(hits[0]) * frame - pad), min(length, (int(hits[-1]) + 1) * frame + pad)


def _frame_power(audio: np.ndarray, frame: int) -> np.ndarray:
    count = len(audio) // frame
    frames = audio[: count * frame].astype(np.float64).reshape(count, frame)
    return (frames**2).mean(axis=1)


def _levels(audio: np.ndarray, power: np.ndarray, speech: np.ndarray) -> tuple[float, float, float, float]:
    """Peak dBFS, speech RMS dBFS, SNR dB and the clipped fraction."""
    peak = _db(float(np.abs(audio).max())) if audio.size else -math.inf
    power = power[: len(speech)]
    speech_power = float(power[speech].mean()) if speech.any() else 0.0
    # The noise floor: the quiet frames between and around the words. With hardly any of them (speech
    # edge to edge) the quietest tenth of all frames stands in.
    quiet = power[~speech] if (~speech).sum() >= 5 else np.sort(power)[: max(1, len(power) // 10)]
    noise_power = float(np.median(quiet)) if quiet.size else 0.0
    if noise_power <= 0.0:
        snr = MAX_SNR_DB
    else:
        snr = min(MAX_SNR_DB, 10 * math.log10(max(speech_power - noise_power, 1e-20) / noise_power))
    clipped = float((np.abs(audio) >= CLIP_LEVEL).mean()) if audio.size else 0.0
    return peak, _db(math.sqrt(speech_power)), snr, clipped


def _findings(speech_seconds: float, peak: float, speech_rms: float, snr: float, clipped: float, rate: int,
              model_rate: int | None) -> list[Finding]:
    if speech_seconds == 0.0:
        return [Finding(Check.NO_SPEECH, Severity.PROBLEM,
                        "No speech was heard; check that the right microphone is selected and not muted.")]
    out = []
    if speech_seconds < MIN_SPEECH_SECONDS:
        out.append(Finding(Check.TOO_SHORT, Severity.PROBLEM,
                           f"Only {speech_seconds:.1f} s of speech; record at least {MIN_SPEECH_SECONDS:.0f} s "
                           "(a few full sentences)."))
    if clipped > CLIP_FRACTION:
        out.append(Finding(Check.CLIPPED, Severity.WARNING,
                           f"{clipped:.1%} of the recording hits full scale (distortion); lower the input "
                           "gain or move back from the microphone."))
    if peak < QUIET_PEAK_DBFS or speech_rms < QUIET_SPEECH_RMS_DBFS:
        out.append(Finding(Check.TOO_QUIET, Severity.WARNING,
                           f"The recording is quiet (peak {peak:.0f} dBFS); move closer to the microphone or "
                           "raise its input gain."))
    if snr < NOISY_SNR_DB:
        out.append(Finding(Check.NOISY, Severity.WARNING,
                           f"Background noise is high (speech only {snr:.0f} dB above it); record in a quieter "
                           "room, away from fans."))
    if model_rate and model_rate != rate:
        out.append(_resampled(rate, model_rate))
    return out


def _resampled(rate: int, model_rate: int) -> Finding:
    if rate < model_rate:
        return Finding(Check.RESAMPLED, Severity.WARNING,
                       f"The microphone records at {rate} Hz, below the model's {model_rate} Hz; a device or "
                       f"setting that records at {model_rate} Hz or more will sound clearer.")
    return Finding(Check.RESAMPLED, Severity.INFO,
                   f"Recorded at {rate} Hz and resampled to the model's {model_rate} Hz, which loses nothing.")


def _db(amplitude: float) -> float:
    return 20 * math.log10(amplitude) if amplitude > 0 else -math.inf
