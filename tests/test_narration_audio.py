"""Assembly, mastering and export on projects whose chunk files are written by the test (no model).

Everything here runs the real code path of ``narrate`` from a project onwards: the runner finds every
chunk finished, so it never needs a worker.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pyloudnorm
import pytest
import soundfile as sf

from inference.errors import BadInputError
from inference.narration import mastering
from inference.narration.assembly import AssemblySettings, fade, spacing, trim
from inference.narration.book import Narration, NarrationResult, narrate
from inference.narration.export import FORMATS
from inference.narration.mastering import Limiter, Meter, Mode
from inference.narration.runner import Runner
from inference.worker.client import WorkerClient
from tests.conftest import REPO
from tests.narration_books import NARRATOR, book, synthetic_project, tone

RATE = 24000
BOOK = book({"Opening": [["First one.", "Second one."], ["pause:1.5", "Third one."]],
             "Middle": [["Fourth one."]], "End": [["Fifth one.", "Sixth one."]]})


def _narrate(tmp_path: Path, script=BOOK, out: str | None = "book.flac", master: Mode = Mode.NONE,
             level: float = 0.1, **options) -> NarrationResult:
    """Narrate a synthetic project: every chunk is finished, so the (unstarted) worker is never asked."""
    project_root = tmp_path / "project"
    if not project_root.exists():
        synthetic_project(project_root, script, RATE, level=level)
    narration = Narration("book.md", script, {None: NARRATOR}, project_root, "synthetic",
                          out=tmp_path / out if out else None, master=master, **options)
    return narrate(narration, Runner(WorkerClient()))


def test_trim_and_fade():
    audio = tone(RATE, 1.0, 0.5, 300, pad=0.5)
    trimmed = trim(audio, RATE, -50.0, 0.02)
    assert abs(len(trimmed) / RATE - 1.04) < 0.011
    faded = fade(trimmed, RATE, 0.008)
    assert abs(faded[0]) < 1e-6 and abs(faded[-1]) < 1e-6  # starts and ends at rest: no click
    assert np.abs(np.diff(faded[:200])).max() < 0.05


def test_timeline_matches_the_audio(tmp_path):
    result = _narrate(tmp_path, srt=tmp_path / "book.srt", vtt=tmp_path / "book.vtt")
    audio, rate = sf.read(tmp_path / "book.flac", dtype="float32")
    timeline = result.timeline
    assert len(timeline.cues) == 6 and abs(len(audio) - timeline.total_samples) <= 1
    for cue in timeline.cues:  # every cue's edges are where speech starts and stops in the file
        start, end = int(cue.start * rate), int(cue.end * rate)
        assert np.abs(audio[start - int(0.02 * rate):start]).max() < 1e-3
        assert np.abs(audio[end:end + int(0.02 * rate)]).max() < 1e-3
        assert np.abs(audio[start + int(0.03 * rate):start + int(0.06 * rate)]).max() > 0.05
    gaps = [b.start - a.end for a, b in zip(timeline.cues, timeline.cues[1:], strict=False)]
    settings = AssemblySettings()
    expected = [settings.sentence_pause, settings.paragraph_pause + 1.5, settings.chapter_pause,
                settings.chapter_pause, settings.sentence_pause]
    assert gaps == pytest.approx(expected, abs=1e-3)
    assert spacing(BOOK, settings) == pytest.approx([settings.edge_silence, *expected])  # what live playback uses
    assert [c.title for c in timeline.chapters] == ["Opening", "Middle", "End"]
    assert timeline.chapters[1].start == pytest.approx(timeline.cues[3].start, abs=1e-3)
    srt = (tmp_path / "book.srt").read_text()
    times = re.findall(r"(\d\d):(\d\d):(\d\d),(\d\d\d) --> (\d\d):(\d\d):(\d\d),(\d\d\d)", srt)
    assert len(times) == 6
    for cue, fields in zip(timeline.cues, times, strict=True):
        h, m, s, ms, h2, m2, s2, ms2 = map(int, fields)
        assert abs(h * 3600 + m * 60 + s + ms / 1000 - cue.start) < 0.02
        assert abs(h2 * 3600 + m2 * 60 + s2 + ms2 / 1000 - cue.end) < 0.02
    assert "Fourth one." in srt
    vtt = (tmp_path / "book.vtt").read_text()
    assert vtt.startswith("WEBVTT\n") and vtt.count(" --> ") == 6
    cue_sheet = (tmp_path / "book.cue").read_text()
    assert cue_sheet.count("TRACK") == 3 and 'TITLE "Middle"' in cue_sheet


@pytest.mark.parametrize("fmt", ["m4b", "mp3", "opus"])
def test_chapters_and_tags_read_back(tmp_path, fmt):
    result = _narrate(tmp_path, out=f"book.{fmt}")
    with av.open(str(tmp_path / f"book.{fmt}")) as container:
        chapters = container.chapters()
        duration = container.duration / 1e6
        tags = {k.lower(): v for k, v in container.metadata.items()}
        if fmt == "opus":
            tags.update({k.lower(): v for k, v in container.streams.audio[0].metadata.items()})
    assert [c["metadata"]["title"] for c in chapters] == ["Opening", "Middle", "End"]
    for mark, chapter in zip(result.timeline.chapters, chapters, strict=True):
        assert float(chapter["start"] * chapter["time_base"]) == pytest.approx(mark.start, abs=0.01)
    assert duration == pytest.approx(result.timeline.seconds, abs=0.1)
    assert tags.get("title") == "A Book" and tags.get("artist") == "An Author"


def test_cover_in_m4b(tmp_path):
    from mutagen.mp4 import MP4

    from inference.narration.export import BookInfo

    cover = tmp_path / "cover.png"
    cover.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    _narrate(tmp_path, out="book.m4b", info=BookInfo("T", "A", cover))
    assert bytes(MP4(tmp_path / "book.m4b")["covr"][0]).startswith(b"\x89PNG")


def test_meter_matches_pyloudnorm():
    rng = np.random.default_rng(3)
    signal = np.concatenate([rng.standard_normal(RATE * 3) * 0.2, np.zeros(RATE), rng.standard_normal(RATE * 4) * 0.02])
    signal = signal.astype(np.float32)
    meter = Meter(RATE)
    for start in range(0, len(signal), 7777):  # blocks that do not line up with the 100 ms gating steps
        meter.add(signal[start:start + 7777])
    assert meter.result().integrated_lufs == pytest.approx(
        pyloudnorm.Meter(RATE).integrated_loudness(signal.astype(np.float64)), abs=0.01)


def test_limiter_holds_the_ceiling_without_clipping():
    signal = tone(RATE, 2.0, 0.3, 220, pad=0.0)  # under the ceiling...
    signal[RATE:RATE + 50] = 1.4  # ...but for one peak far over it
    limiter = Limiter(RATE, 0.5)
    out = np.concatenate([limiter.process(signal[i:i + 5000]) for i in range(0, len(signal), 5000)]
                         + [limiter.flush()])
    assert len(out) == len(signal)
    assert np.abs(out).max() <= 0.5 + 1e-6
    far = np.r_[: RATE // 2, RATE + RATE // 2: 2 * RATE]
    assert np.allclose(out[far], signal[far], atol=1e-6)  # only the peak's surroundings are turned down


def test_podcast_master_measures_minus_16_lufs(tmp_path):
    result = _narrate(tmp_path, out="book.flac", master=Mode.PODCAST, level=0.02)
    audio, rate = sf.read(tmp_path / "book.flac")
    assert pyloudnorm.Meter(rate).integrated_loudness(audio) == pytest.approx(-16.0, abs=1.0)
    assert result.report.after.true_peak_db <= -1.5 + 0.1
    assert result.report.gain_db > 10


def test_podcast_master_on_m4b(tmp_path):
    _narrate(tmp_path, out="book.m4b", master=Mode.PODCAST, level=0.5)
    with av.open(str(tmp_path / "book.m4b")) as container:
        audio = np.concatenate([f.to_ndarray().mean(axis=0) for f in container.decode(audio=0)])
        rate = container.streams.audio[0].rate
    assert pyloudnorm.Meter(rate).integrated_loudness(audio.astype(np.float64)) == pytest.approx(-16.0, abs=1.0)


def test_acx_passes_a_compliant_book(tmp_path):
    result = _narrate(tmp_path, out="book.wav", master=Mode.ACX, level=0.1)
    assert result.report.passed is True, result.report.lines()
    assert -23 <= result.report.after.rms_db <= -18 and result.report.after.peak_db <= -3


def test_acx_fails_a_clipped_book(tmp_path):
    result = _narrate(tmp_path, out="book.wav", master=Mode.ACX, level=1.6)  # written clipped at full scale
    assert result.report.passed is False
    assert result.report.checks["no clipping in the source"] is False
    assert "ACX: fails" in result.report.lines()


def test_acx_fails_a_noisy_room(tmp_path):
    result = _narrate(tmp_path, out="book.wav", master=Mode.ACX, assembly=AssemblySettings(room_tone_db=-40))
    assert result.report.checks["noise floor <= -60 dB"] is False


def test_existing_output_needs_force(tmp_path):
    (tmp_path / "book.flac").write_bytes(b"old")
    with pytest.raises(BadInputError, match="--force"):
        _narrate(tmp_path)
    assert (tmp_path / "book.flac").read_bytes() == b"old"
    _narrate(tmp_path, force=True)
    assert sf.info(tmp_path / "book.flac").frames > 0


def test_formats_written_atomically(tmp_path):
    for fmt in FORMATS:
        _narrate(tmp_path, out=f"book.{fmt}")
        assert (tmp_path / f"book.{fmt}").stat().st_size > 1000
    assert not list(tmp_path.glob(".*partial"))


def test_master_modes_parse():
    assert mastering.parse_mode("acx") is Mode.ACX
    with pytest.raises(BadInputError, match="podcast, acx or none"):
        mastering.parse_mode("loud")


LONG_BOOK = """
import sys, time
from pathlib import Path
import numpy as np, soundfile as sf
from inference.narration.book import Narration, narrate
from inference.narration.mastering import Mode
from inference.narration.runner import Runner
from inference.worker.client import WorkerClient
from tests.narration_books import NARRATOR, book, synthetic_project

root = Path(sys.argv[1])
rate, chunks, seconds = 24000, int(sys.argv[2]), float(sys.argv[3])
script = book({f"Chapter {c}": [[f"Sentence {c}-{i}." for i in range(chunks // 20)]] for c in range(20)})
project, planned = synthetic_project(root / "project", script, rate, seconds=seconds, level=0.05)
def peak_rss():
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) * 1024

Path("/proc/self/clear_refs").write_text("5")  # the peak so far (imports, writing the chunks) is forgotten
before = peak_rss()
started = time.perf_counter()
narration = Narration("long.md", script, {None: NARRATOR}, root / "project", "synthetic", out=root / "long.flac",
                      master=Mode.PODCAST)
result = narrate(narration, Runner(WorkerClient()))
peak = peak_rss()
print(result.timeline.seconds, peak - before, time.perf_counter() - started, sf.info(root / "long.flac").duration)
"""


@pytest.mark.slow
def test_long_book_streams_in_bounded_memory(tmp_path):
    """2000 chunk files, 44 min of audio (250 MB as float32) assembled, mastered, encoded: RSS stays flat."""
    out = subprocess.run([sys.executable, "-c", LONG_BOOK, str(tmp_path), "2000", "1.0"], cwd=REPO,
                         capture_output=True, text=True, check=True)
    seconds, growth, wall, duration = map(float, out.stdout.split())
    assert seconds > 2400 and duration == pytest.approx(seconds, abs=0.01)
    assert growth < 60 * 2**20, f"peak RSS grew by {growth / 2**20:.0f} MiB for {seconds / 3600:.1f} h of audio"
    print(f"{seconds / 3600:.2f} h of audio: peak RSS +{growth / 2**20:.0f} MiB, {wall:.0f} s")
