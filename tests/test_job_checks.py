"""What ``jobs.prepare`` tells the user before a job runs, and where it refuses a plan that cannot run here."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from inference import hardware as hw
from inference.audio import MAX_REFERENCE_SECONDS, read_reference
from inference.cli import main
from inference.jobs import prepare, usable_here
from inference.worker.protocol import SpeakJob
from tests.conftest import SAMPLE_VOICE


@pytest.fixture
def long_reference(tmp_path, reference_voice):
    """The sample recording repeated to 30 s: longer than what a voice prompt uses."""
    audio, rate = reference_voice
    path = tmp_path / "long.wav"
    sf.write(path, np.resize(audio, 30 * rate), rate)
    return path


def test_long_reference_is_trimmed_with_a_notice(tiny_checkpoint, long_reference):
    audio, rate = read_reference(long_reference)
    assert len(audio) == MAX_REFERENCE_SECONDS * rate
    prepared = prepare(SpeakJob("Hello.", long_reference, model=str(tiny_checkpoint("pocket_tts"))))
    assert prepared.notices == (f"Reference recording {long_reference} is 30 s long; only its first "
                                f"{MAX_REFERENCE_SECONDS:.0f} s are used (5-15 s of clear speech is enough).",)


def test_say_prints_the_notice_and_still_writes(capsys, tmp_path, tiny_checkpoint, long_reference):
    model = tiny_checkpoint("pocket_tts")
    out = tmp_path / "out.wav"
    capsys.readouterr()
    assert main(["say", "Hello.", "--voice", str(long_reference), "--model", str(model), "--out", str(out),
                 "--hardware", "cpu-16g"]) == 0
    err = capsys.readouterr().err
    assert "vesper: Reference recording" in err and "only its first 20 s are used" in err
    assert out.is_file()


@pytest.mark.parametrize(("family", "hint"), [("csm", True), ("pocket_tts", False), ("vibevoice", False)])
def test_transcript_hint_where_the_model_reads_the_transcript(tiny_checkpoint, family, hint):
    """CSM reads the reference's words; Pocket TTS and VibeVoice condition on its audio alone (their
    adapters never pass a transcript to the model), so only CSM gets the hint."""
    model = str(tiny_checkpoint(family))
    without = prepare(SpeakJob("Hello.", SAMPLE_VOICE, model=model)).notices
    assert any("--voice-text" in n for n in without) == hint
    assert prepare(SpeakJob("Hello.", SAMPLE_VOICE, "Some words.", model=model)).notices == ()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this PyTorch has CUDA")
def test_a_detected_gpu_this_pytorch_cannot_use_leaves_the_plan_on_the_cpu():
    machine = hw.Hardware("Linux", 4, 16 * hw.GiB, 8 * hw.GiB, hw.PRESETS["laptop-4060-8g"].gpus)
    assert usable_here(machine, None).gpus == ()
    assert usable_here(hw.PRESETS["cpu-16g"], "cpu-16g") is hw.PRESETS["cpu-16g"]
