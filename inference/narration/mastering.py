"""Mastering over the whole book in two streamed passes: measure, then apply one gain and a limiter.

Loudness is ITU-R BS.1770 integrated loudness with pyloudnorm's K-weighting filters, computed block by
block (filter state carried across blocks, the 400 ms gating blocks built from 100 ms energies) so a
10-hour book is measured without holding it; a test checks the result against pyloudnorm's own.
Peaks are kept by a look-ahead limiter (a smooth gain curve), never by clipping.

- ``podcast``: -16 LUFS integrated, true peak at most -1.5 dBTP.
- ``acx``: RMS -23..-18 dB, peak at most -3 dB, noise floor at most -60 dB, and no clipping in the
  source (which mastering cannot undo); the report passes or fails each.
- ``none``: the audio as assembled.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pyloudnorm
import soxr
from scipy import ndimage, signal

from inference.errors import BadInputError


class Mode(str, enum.Enum):
    PODCAST = "podcast"
    ACX = "acx"
    NONE = "none"


PODCAST_LUFS = -16.0
PODCAST_TRUE_PEAK_DB = -1.5
ACX_RMS_RANGE_DB = (-23.0, -18.0)
ACX_RMS_TARGET_DB = -20.0
ACX_PEAK_DB = -3.0
ACX_NOISE_FLOOR_DB = -60.0
LIMITER_MARGIN_DB = 0.3  # below the target: the limiter's peak estimate is 4x oversampled, not exact
TRUE_PEAK_OVERSAMPLING = 4
LIMITER_WINDOW_SECONDS = 0.005  # look-ahead and the length of the gain ramps
NOISE_WINDOW_SECONDS = 0.5
CLIP_LEVEL = 0.999
CLIP_RUN = 3  # this many consecutive samples at full scale: the source was clipped
SILENCE_DB = -120.0  # what an all-zero measurement reads as


def _db(power: float) -> float:
    return 10 * math.log10(power) if power > 0 else SILENCE_DB


class _Frames:
    """Sum of squares per fixed-length frame of a stream (the last partial frame is dropped)."""

    def __init__(self, length: int) -> None:
        self.length = length
        self.energies: list[float] = []
        self._carry = np.zeros(0, dtype=np.float64)

    def add(self, block: np.ndarray) -> None:
        data = np.concatenate([self._carry, np.asarray(block, dtype=np.float64)])
        whole = len(data) // self.length * self.length
        if whole:
            self.energies.extend(np.square(data[:whole]).reshape(-1, self.length).sum(axis=1).tolist())
        self._carry = data[whole:]


@dataclass
class Measurement:
    """Levels of a whole stream in dB (relative to full scale; LUFS for loudness)."""

    integrated_lufs: float
    rms_db: float
    peak_db: float
    true_peak_db: float
    noise_floor_db: float  # the quietest half-second window's RMS
    clipped_runs: int  # places where CLIP_RUN or more consecutive samples sit at full scale
    seconds: float


class Meter:
    """Everything ``Measurement`` holds, fed one block at a time."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._filters = [(f.passband_gain, f.b, f.a) for f in pyloudnorm.Meter(rate)._filters.values()]
        self._states = [signal.lfilter_zi(b, a) * 0.0 for _, b, a in self._filters]
        self._gating = _Frames(int(round(0.1 * rate)))  # K-weighted energy per 100 ms
        self._noise = _Frames(int(round(NOISE_WINDOW_SECONDS * rate)))
        self._oversampler = soxr.ResampleStream(rate, rate * TRUE_PEAK_OVERSAMPLING, 1, dtype="float32",
                                                quality="HQ")
        self._sum_squares = 0.0
        self._samples = 0
        self._peak = 0.0
        self._true_peak = 0.0
        self._clipped = 0
        self._run = 0  # full-scale samples at the end of the last block

    def add(self, block: np.ndarray) -> None:
        block = np.asarray(block, dtype=np.float32)
        if len(block) == 0:
            return
        weighted = block.astype(np.float64)
        for i, (gain, b, a) in enumerate(self._filters):
            weighted, self._states[i] = signal.lfilter(b, a, weighted, zi=self._states[i])
            weighted = weighted * gain
        self._gating.add(weighted)
        self._noise.add(block)
        self._sum_squares += float(np.square(block, dtype=np.float64).sum())
        self._samples += len(block)
        self._peak = max(self._peak, float(np.abs(block).max()))
        self._true_peak = max(self._true_peak, _peak(self._oversampler.resample_chunk(block)))
        self._count_clipping(np.abs(block) >= CLIP_LEVEL)

    def _count_clipping(self, full: np.ndarray) -> None:
        """Count a run of full-scale samples once, when it reaches CLIP_RUN (runs may span blocks)."""
        edges = np.diff(np.concatenate([[False], full, [False]]).astype(np.int8))
        starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        carried = np.where(starts == 0, self._run, 0)
        totals = carried + stops - starts
        self._clipped += int(np.count_nonzero((carried < CLIP_RUN) & (totals >= CLIP_RUN)))
        self._run = int(totals[-1]) if len(totals) and stops[-1] == len(full) else 0

    def result(self) -> Measurement:
        self._true_peak = max(self._true_peak, _peak(self._oversampler.resample_chunk(
            np.zeros(0, dtype=np.float32), last=True)))
        rms = self._sum_squares / self._samples if self._samples else 0.0
        windows = [e / self._noise.length for e in self._noise.energies] or [rms]
        return Measurement(self._integrated(), _db(rms), _db(self._peak**2), _db(self._true_peak**2),
                           _db(min(windows)), self._clipped, self._samples / self.rate)

    def _integrated(self) -> float:
        """BS.1770-4 gating over 400 ms blocks with 75 % overlap (four 100 ms energies each)."""
        energies = np.asarray(self._gating.energies)
        if len(energies) < 4:
            return SILENCE_DB
        step = self._gating.length
        blocks = np.convolve(energies, np.ones(4), mode="valid") / (4 * step)
        loudness = -0.691 + 10 * np.log10(np.maximum(blocks, 1e-30))
        blocks = blocks[loudness > -70.0]
        if len(blocks) == 0:
            return SILENCE_DB
        relative = -0.691 + 10 * np.log10(blocks.mean()) - 10.0
        gated = blocks[-0.691 + 10 * np.log10(blocks) > relative]
        return float(-0.691 + 10 * np.log10(gated.mean()))


def _peak(samples: np.ndarray) -> float:
    return float(np.abs(samples).max()) if len(samples) else 0.0


def measure(blocks: Iterable[np.ndarray], rate: int) -> Measurement:
    meter = Meter(rate)
    for block in blocks:
        meter.add(block)
    return meter.result()


class Limiter:
    """A look-ahead peak limiter on a stream: gain ramps down before a peak and back up after it.

    The gain at each sample is a moving average of a moving minimum of the gain each sample needs, both
    over windows that contain that sample, so it never exceeds what the sample needs: no output sample
    passes ``ceiling`` (nor, nearly, does the signal between samples). Output lags input by the
    look-ahead; ``flush`` returns the rest.
    """

    def __init__(self, rate: int, ceiling: float) -> None:
        self.ceiling = ceiling
        self.window = max(1, int(LIMITER_WINDOW_SECONDS * rate))
        self._context = np.zeros(2 * self.window, dtype=np.float32)  # already output: past for the filters
        self._pending = np.zeros(0, dtype=np.float32)
        self.min_gain = 1.0

    def process(self, block: np.ndarray) -> np.ndarray:
        self._pending = np.concatenate([self._pending, np.asarray(block, dtype=np.float32)])
        return self._emit(len(self._pending) - 2 * self.window)

    def flush(self) -> np.ndarray:
        count = len(self._pending)
        self._pending = np.concatenate([self._pending, np.zeros(2 * self.window, dtype=np.float32)])
        return self._emit(count)

    def _emit(self, count: int) -> np.ndarray:
        if count <= 0:
            return np.zeros(0, dtype=np.float32)
        data = np.concatenate([self._context, self._pending])
        needed = np.minimum(1.0, self.ceiling / np.maximum(_true_envelope(data), 1e-12))
        held = ndimage.minimum_filter1d(needed, 2 * self.window + 1, mode="nearest")
        gain = ndimage.uniform_filter1d(held, self.window + 1, mode="nearest")
        gain = np.minimum(gain, needed)  # float rounding in the average must not let a peak through
        start = len(self._context)
        out = (data[start:start + count] * gain[start:start + count]).astype(np.float32)
        if count:
            self.min_gain = min(self.min_gain, float(gain[start:start + count].min()))
        self._context = data[start + count - 2 * self.window:start + count]
        self._pending = self._pending[count:]
        return out


def _true_envelope(data: np.ndarray) -> np.ndarray:
    """Per sample, the largest magnitude of the signal around it at 4x the rate: peaks between samples."""
    upsampled = np.abs(signal.resample_poly(data, TRUE_PEAK_OVERSAMPLING, 1))[: len(data) * TRUE_PEAK_OVERSAMPLING]
    envelope = np.abs(data)
    for phase in range(TRUE_PEAK_OVERSAMPLING):  # strided maxima: far faster than max over a short axis
        np.maximum(envelope, upsampled[phase::TRUE_PEAK_OVERSAMPLING], out=envelope)
    return envelope


@dataclass
class MasterReport:
    """What mastering did and, for ``acx``, whether the result meets each requirement."""

    mode: Mode
    before: Measurement
    gain_db: float = 0.0
    limiter_reduction_db: float = 0.0
    after: Measurement | None = None
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def passed(self) -> bool | None:
        return all(self.checks.values()) if self.checks else None

    def lines(self) -> list[str]:
        b = self.before
        out = [f"mastering {self.mode.value}: source {b.integrated_lufs:.1f} LUFS, RMS {b.rms_db:.1f} dB, "
               f"peak {b.peak_db:.1f} dB, true peak {b.true_peak_db:.1f} dBTP"]
        if self.mode is not Mode.NONE:
            out.append(f"gain {self.gain_db:+.1f} dB; limiter reduced peaks by up to "
                       f"{self.limiter_reduction_db:.1f} dB")
        if self.after is not None:
            a = self.after
            out.append(f"result: {a.integrated_lufs:.1f} LUFS, RMS {a.rms_db:.1f} dB, peak {a.peak_db:.1f} dB, "
                       f"true peak {a.true_peak_db:.1f} dBTP, noise floor {a.noise_floor_db:.1f} dB")
        for name, ok in self.checks.items():
            out.append(f"ACX {name}: {'pass' if ok else 'FAIL'}")
        if self.passed is not None:
            out.append(f"ACX: {'passes' if self.passed else 'fails'}")
        return out


def parse_mode(name: str) -> Mode:
    try:
        return Mode(name)
    except ValueError:
        raise BadInputError(f"Unknown mastering '{name}': use podcast, acx or none.") from None


def plan_gain(mode: Mode, before: Measurement) -> tuple[float, float]:
    """The gain to apply (dB) and the limiter's ceiling (linear) for ``mode``."""
    if mode is Mode.PODCAST:
        gain = PODCAST_LUFS - before.integrated_lufs if before.integrated_lufs > SILENCE_DB else 0.0
        return gain, 10 ** ((PODCAST_TRUE_PEAK_DB - LIMITER_MARGIN_DB) / 20)
    if mode is Mode.ACX:
        gain = ACX_RMS_TARGET_DB - before.rms_db if before.rms_db > SILENCE_DB else 0.0
        return gain, 10 ** ((ACX_PEAK_DB - LIMITER_MARGIN_DB) / 20)
    return 0.0, 1.0


def apply(mode: Mode, blocks: Iterable[np.ndarray], rate: int, report: MasterReport) -> Iterator[np.ndarray]:
    """``blocks`` mastered per ``report.before`` (pass two); fills in the report's gain, limiter and result."""
    gain_db, ceiling = plan_gain(mode, report.before)
    report.gain_db = gain_db
    meter = Meter(rate)
    if mode is Mode.NONE:
        for block in blocks:
            meter.add(block)
            yield block
    else:
        gain = np.float32(10 ** (gain_db / 20))
        limiter = Limiter(rate, ceiling)
        for block in blocks:
            out = limiter.process(block * gain)
            meter.add(out)
            yield out
        out = limiter.flush()
        meter.add(out)
        yield out
        report.limiter_reduction_db = max(0.0, -20 * math.log10(limiter.min_gain))
    report.after = meter.result()
    if mode is Mode.ACX:
        report.checks = acx_checks(report.before, report.after)


def acx_checks(before: Measurement, after: Measurement) -> dict[str, bool]:
    low, high = ACX_RMS_RANGE_DB
    return {
        f"RMS {low:.0f}..{high:.0f} dB": low <= after.rms_db <= high,
        f"peak <= {ACX_PEAK_DB:.0f} dB": after.peak_db <= ACX_PEAK_DB,
        f"noise floor <= {ACX_NOISE_FLOOR_DB:.0f} dB": after.noise_floor_db <= ACX_NOISE_FLOOR_DB,
        "no clipping in the source": before.clipped_runs == 0,
    }
