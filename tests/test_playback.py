"""Playback through real sounddevice/PortAudio into an ALSA virtual speaker (the ALSA file plugin)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

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


@pytest.mark.skipif(not _portaudio_available(), reason="needs libportaudio2 and ALSA (.ci/run installs them)")
def test_play_writes_the_samples_to_the_default_device(tmp_path):
    played, mic = tmp_path / "played.raw", tmp_path / "mic.raw"
    mic.write_bytes(b"\0" * 4800)
    conf = tmp_path / "asound.conf"
    conf.write_text(ALSA_CONF.format(played=played, mic=mic))
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(12000) / 24000)).astype(np.float32)
    np.save(tmp_path / "tone.npy", tone)
    code = ("import numpy as np, sys; from inference.playback import play; "
            f"play(np.load(r'{tmp_path / 'tone.npy'}'), 24000)")
    env = dict(os.environ, ALSA_CONFIG_PATH=str(conf))
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True, timeout=60)

    raw = played.read_bytes()
    out = np.frombuffer(raw[: len(raw) // 4 * 4], dtype="<f4")  # PortAudio opens the device as float32 mono
    expected = tone[1:]  # sin(0) is 0: the first audible sample is the second one
    start = int(np.flatnonzero(out)[0])
    np.testing.assert_array_equal(out[start:start + len(expected)], expected)
