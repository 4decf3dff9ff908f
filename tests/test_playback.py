"""Playback through real sounddevice/PortAudio into an ALSA virtual speaker (the ALSA file plugin)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from inference.worker.protocol import CHUNK_GAP_SECONDS
from tests.conftest import REPO

ALSA_CONF = """</usr/share/alsa/alsa.conf>
pcm.!default {{
  type asym
  playback.pcm {{ type file slave.pcm "null" file "{played}" format "raw" }}
  capture.pcm {{ type file slave.pcm "null" file "/dev/null" infile "{mic}" format "raw" }}
}}
"""


def _portaudio_available() -> bool:
    try:
        import sounddevice  # noqa: F401
    except (ImportError, OSError):  # not installed, or the PortAudio library is missing
        return False
    return Path("/usr/share/alsa/alsa.conf").exists()


PLAYER_SCRIPT = """
import numpy as np
from inference.playback import LivePlayer

first, second = np.load(r"{first}"), np.load(r"{second}")
player = LivePlayer(prebuffer=5.0)  # longer than the narration: the null speaker cannot underrun it
third = len(first) // 3
player.piece(0, 0, first[:third], 24000)          # chunk 0 streams in pieces ...
player.piece(0, third, first[third:2 * third], 24000)
player.piece(0, 0, first[:2 * third], 24000)      # ... a retry streams it again from its start
player.chunk(0, first, 24000)                     # ChunkReady: only the part not yet queued
player.chunk(1, second, 24000)                    # chunk 1 arrives whole (plain generate)
player.finish()
"""


@pytest.mark.skipif(not _portaudio_available(), reason="needs libportaudio2 and ALSA (.ci/run installs them)")
def test_live_player_plays_a_narration_as_it_arrives(tmp_path):
    """Real sounddevice/PortAudio into the ALSA file plugin: what reaches the speaker is the narration
    with the saved file's pause between chunks, nothing repeated by the retry."""
    played, mic = tmp_path / "played.raw", tmp_path / "mic.raw"
    mic.write_bytes(b"\0" * 4800)
    conf = tmp_path / "asound.conf"
    conf.write_text(ALSA_CONF.format(played=played, mic=mic))
    t = np.arange(12000) / 24000
    first = (0.5 * np.sin(2 * np.pi * 440 * t) + 0.1).astype(np.float32)  # offset: no sample is exactly 0
    second = (0.3 * np.sin(2 * np.pi * 660 * t) - 0.1).astype(np.float32)
    np.save(tmp_path / "first.npy", first)
    np.save(tmp_path / "second.npy", second)
    code = PLAYER_SCRIPT.format(first=tmp_path / "first.npy", second=tmp_path / "second.npy")
    env = dict(os.environ, ALSA_CONFIG_PATH=str(conf))
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True, timeout=60)

    raw = played.read_bytes()
    out = np.frombuffer(raw[: len(raw) // 4 * 4], dtype="<f4")  # PortAudio opens the device as float32 mono
    expected = np.concatenate([first, np.zeros(int(CHUNK_GAP_SECONDS * 24000), np.float32), second])
    start = int(np.flatnonzero(out)[0])
    np.testing.assert_array_equal(out[start:start + len(expected)], expected)
    assert not out[start + len(expected):].any()  # then silence: nothing played twice


def test_live_player_waits_for_a_fresh_prebuffer_after_an_underrun():
    """The device callback alone (no device): silence until the prebuffer is queued, the samples in order,
    and after running dry silence again until another prebuffer's worth has arrived."""
    from inference.playback import LivePlayer

    player = LivePlayer(prebuffer=0.5)
    player._prebuffer_samples = 4  # as _open sets it for a rate of 8 samples per second
    out = np.ones((3, 1), dtype=np.float32)

    def fill() -> list[float]:
        player._fill(out, 3, None, None)
        return out[:, 0].tolist()

    player._push(np.array([1, 2, 3], np.float32))
    assert fill() == [0, 0, 0]  # 3 < 4 queued: still buffering
    player._push(np.array([4, 5], np.float32))
    assert fill() == [1, 2, 3]
    assert fill() == [4, 5, 0]  # ran dry: the gap is silence ...
    player._push(np.array([6, 7, 8], np.float32))
    assert fill() == [0, 0, 0]  # ... and it waits for a full prebuffer again
    player._push(np.array([9], np.float32))
    assert fill() == [6, 7, 8]
    player._ending = True
    assert fill() == [9, 0, 0] and player._drained.is_set()


@pytest.mark.skipif(not _portaudio_available(), reason="needs libportaudio2 and ALSA (.ci/run installs them)")
def test_say_play_sounds_like_the_saved_file(tmp_path, tiny_checkpoint):
    """`vesper say --play` end to end (worker process, Pocket TTS's streaming CPU tier, the live player):
    the speaker hears the narration the WAV holds."""
    import soundfile as sf

    from tests.conftest import SAMPLE_VOICE

    played, mic, out = tmp_path / "played.raw", tmp_path / "mic.raw", tmp_path / "say.wav"
    mic.write_bytes(b"\\0" * 4800)
    conf = tmp_path / "asound.conf"
    conf.write_text(ALSA_CONF.format(played=played, mic=mic))
    code = "import sys; from inference.cli import main; sys.exit(main(sys.argv[1:]))"
    args = ["say", "A first sentence to hear. And a second one, heard as it is made.", "--voice",
            str(SAMPLE_VOICE), "--model", str(tiny_checkpoint("pocket_tts")), "--hardware", "cpu-16g",
            "--out", str(out), "--play"]
    env = dict(os.environ, ALSA_CONFIG_PATH=str(conf))
    subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, env=env, check=True, timeout=300)

    saved, _ = sf.read(out, dtype="float32")
    raw = played.read_bytes()
    heard = np.frombuffer(raw[: len(raw) // 4 * 4], dtype="<f4")
    start = int(np.flatnonzero(np.abs(heard) > 1e-3)[0])
    first = int(np.flatnonzero(np.abs(saved) > 1e-3)[0])
    heard = heard[start - first:]
    assert len(heard) >= len(saved)
    np.testing.assert_allclose(heard[:len(saved)], saved, atol=2 / 32768)  # the file is 16-bit PCM
