"""Writing results: atomic, readable like any other file, nothing left behind on failure."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import soundfile as sf

from inference.audio import write_wav


def test_write_wav_round_trips_and_leaves_no_partial_file(tmp_path):
    out = tmp_path / "sub" / "out.wav"
    write_wav(out, np.linspace(-0.5, 0.5, 2400, dtype=np.float32), 24000)
    audio, rate = sf.read(out, dtype="float32")
    assert rate == 24000 and len(audio) == 2400
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.wav"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask  # a normal file, not a private temp file


def test_failed_write_keeps_the_old_file(tmp_path):
    out = tmp_path / "out.wav"
    write_wav(out, np.zeros(100, dtype=np.float32), 24000)
    before = out.read_bytes()
    with pytest.raises(sf.LibsndfileError):
        write_wav(out, np.zeros(100, dtype=np.float32), -1)  # an invalid rate fails inside soundfile
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.wav"]
