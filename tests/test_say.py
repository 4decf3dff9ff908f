"""End to end: ``say`` on each family's tiny checkpoint, through the real CLI and loading path."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from inference import registry
from inference.audio import write_wav
from inference.cli import main
from inference.engine import Engine, chunk_seed
from inference.hardware import PRESETS
from inference.models import describe
from inference.planner import make_plan
from tests.conftest import SAMPLE_VOICE

FAMILIES = list(registry.FAMILY_MODULES)
TEXT = "Hello there."


def _say(out, model, seed: int, transcript: str) -> None:
    assert main(["say", TEXT, "--voice", str(SAMPLE_VOICE), "--voice-text", transcript, "--model", str(model),
                 "--seed", str(seed), "--out", str(out), "--hardware", "cpu-16g"]) == 0


@pytest.mark.parametrize("family", FAMILIES)
def test_say_writes_audio_at_the_model_rate_and_is_reproducible(family, tiny_checkpoint, tmp_path,
                                                                reference_transcript):
    model = tiny_checkpoint(family)
    first, again = tmp_path / "a.wav", tmp_path / "b.wav"
    _say(first, model, 7, reference_transcript)
    _say(again, model, 7, reference_transcript)

    audio, rate = sf.read(first, dtype="int16")
    assert rate == registry.adapter_for_family(family).sample_rate
    assert len(audio) > 0 and audio.ndim == 1
    assert np.array_equal(audio, sf.read(again, dtype="int16")[0]), "same seed must give identical audio"


@pytest.mark.parametrize("family", FAMILIES)
def test_say_equals_the_adapters_own_generation(family, tiny_checkpoint, tmp_path, reference_voice,
                                                reference_transcript):
    """What the CLI writes is exactly what the engine decodes: the adapter's plain generate (tied to plain
    transformers by the family tests), or Pocket TTS's CPU tier (tied to generate by test_fastpath_pocket)."""
    model = tiny_checkpoint(family)
    out = tmp_path / "say.wav"
    _say(out, model, 3, reference_transcript)

    ref = describe(str(model))
    engine = Engine.load(ref, make_plan(ref, PRESETS["cpu-16g"]))
    assert (engine.fast is not None) == (family == "pocket_tts")
    prompt = engine.voice_prompt(*reference_voice, reference_transcript)
    if engine.fast is not None:
        (direct,) = engine.fast.generate(prompt, [TEXT], [chunk_seed(3, 0)])
    else:
        torch.manual_seed(chunk_seed(3, 0))
        with torch.inference_mode():
            direct = ref.adapter.generate(engine.loaded, prompt, [TEXT])[0]
    write_wav(tmp_path / "direct.wav", direct, ref.adapter.sample_rate)
    assert out.read_bytes() == (tmp_path / "direct.wav").read_bytes()
