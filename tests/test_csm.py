"""The CSM adapter on a tiny random checkpoint, against plain transformers; the real config on meta."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inference.adapters.csm import ADAPTER
from inference.audio import resample
from inference.registry import specs

TEXTS = ["Hello there.", "A second, somewhat longer chunk of text."]
FRAMES = 6  # a random model never emits the end-of-audio frame: cap generation
SAMPLES_PER_FRAME = 1920  # 24 kHz / 12.5 Hz


@pytest.fixture(scope="module")
def loaded(tiny_checkpoint):
    return ADAPTER.load(tiny_checkpoint("csm"), torch.float32, torch.device("cpu"))


@pytest.fixture(scope="module")
def prompt(loaded, reference_voice, reference_transcript):
    audio, rate = reference_voice
    return ADAPTER.build_voice_prompt(loaded, audio, rate, reference_transcript)


def _generate(loaded, prompt, seed: int, texts=TEXTS) -> list[np.ndarray]:
    torch.manual_seed(seed)
    return ADAPTER.generate(loaded, prompt, texts, max_frames=FRAMES)


def test_generates_24khz_audio_per_chunk(loaded, prompt):
    waves = _generate(loaded, prompt, seed=0)
    assert ADAPTER.sample_rate == 24000 and ADAPTER.frame_rate == 12.5
    assert len(waves) == len(TEXTS)
    for wave in waves:
        assert wave.dtype == np.float32 and wave.ndim == 1
        assert len(wave) == FRAMES * SAMPLES_PER_FRAME
        assert np.isfinite(wave).all() and np.abs(wave).max() > 0


def test_voice_prompt_holds_one_code_frame_per_80_ms(loaded, prompt, reference_voice, reference_transcript):
    audio, rate = reference_voice
    codes = prompt.tensors["codes"]
    expected = loaded.processor._get_encoded_length(len(audio),
                                                    **loaded.processor.audio_kwargs["encoded_length_kwargs"])
    assert codes.shape == (expected, loaded.model.config.num_codebooks)
    assert prompt.transcript == reference_transcript
    # Any input rate works: a 16 kHz copy is resampled back to 24 kHz and gives as many frames.
    low = ADAPTER.build_voice_prompt(loaded, resample(audio, rate, 16000), 16000, reference_transcript)
    assert low.tensors["codes"].shape == codes.shape


@pytest.mark.slow
def test_same_seed_same_audio(loaded, prompt):
    first, again, other = (_generate(loaded, prompt, seed) for seed in (7, 7, 8))
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


@pytest.mark.slow
def test_matches_plain_transformers(loaded, prompt, reference_voice, reference_transcript):
    """The adapter's cached-codes path gives exactly what the documented transformers call gives."""
    audio, _ = reference_voice
    context = [{"type": "text", "text": reference_transcript}, {"type": "audio", "audio": audio}]
    conversations = [[{"role": "0", "content": context},
                      {"role": "0", "content": [{"type": "text", "text": text}]}] for text in TEXTS]
    inputs = loaded.processor.apply_chat_template(conversations, tokenize=True, return_dict=True)
    torch.manual_seed(3)
    with torch.inference_mode():
        expected = loaded.model.generate(**inputs, output_audio=True, max_new_tokens=FRAMES)
    waves = _generate(loaded, prompt, seed=3)
    for wave, reference in zip(waves, expected, strict=True):
        np.testing.assert_array_equal(wave, reference.numpy())


def test_without_transcript_uses_an_empty_context_text(loaded, reference_voice):
    audio, rate = reference_voice
    bare = ADAPTER.build_voice_prompt(loaded, audio, rate, None)
    assert bare.transcript == ""
    waves = _generate(loaded, bare, seed=0, texts=["Just the voice."])
    assert len(waves[0]) == FRAMES * SAMPLES_PER_FRAME


def test_special_tokens_in_text_are_dropped_not_parsed(loaded, prompt):
    waves = _generate(loaded, prompt, seed=0, texts=["Say <|AUDIO|> and <|end_of_text|> aloud."])
    assert len(waves[0]) == FRAMES * SAMPLES_PER_FRAME


def test_decoding_stops_at_the_end_of_audio_frame(loaded):
    """Generation ends a sequence when every codebook but the last is the end code; decoding cuts there."""
    config = loaded.model.config
    frames = torch.randint(1, config.vocab_size, (5, config.num_codebooks))
    frames[3, :-1] = config.codebook_eos_token_id
    with torch.inference_mode():
        wave = ADAPTER._decode(loaded, frames)
    assert len(wave) == 3 * SAMPLES_PER_FRAME


def test_real_config_is_csm_1b_on_meta():
    spec = specs()["csm-1b"]
    assert (spec.name, spec.hub_id, spec.family) == ("csm-1b", "sesame/csm-1b", "csm")
    config = spec.config()
    model = ADAPTER.meta_model(config)
    params = {id(p): p.numel() for p in model.parameters()}
    assert sum(params.values()) == pytest.approx(1.632e9, rel=0.005)
    counts = {}
    for component in ADAPTER.components(config):
        ids = {id(p) for path in component.module_paths for p in model.get_submodule(path).parameters()}
        counts[component.name] = sum(params[i] for i in ids)
    # Each parameter belongs to exactly one component (the tied audio embedding to the backbone).
    assert sum(counts.values()) == sum(params.values())
    assert counts["text_embeddings"] == pytest.approx(262.7e6, rel=0.01)
    assert counts["backbone"] == pytest.approx(1107.6e6, rel=0.01)  # 16 x 60.8M layers + 134M audio embedding
    assert counts["depth_decoder"] == pytest.approx(182.6e6, rel=0.01)
    assert counts["codec"] == pytest.approx(79.3e6, rel=0.01)
    backbone = model.get_submodule("backbone_model.layers")
    assert len(backbone) == 16 and config.hidden_size == 2048
    depth = config.depth_decoder_config
    assert (depth.num_hidden_layers, depth.hidden_size) == (4, 1024)
    assert (config.num_codebooks, config.vocab_size, config.codec_config.num_quantizers) == (32, 2051, 32)
