"""Pocket TTS's fast path (the CPU tier) on the tiny checkpoint: the same latents as transformers'
generate without sampling, each chunk ending by the model's own end-of-speech rule, streamed audio
equal to the adapter's, reproducible sampling."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest
import torch

from inference.adapters.base import VoicePrompt
from inference.adapters.pocket_tts import ADAPTER
from inference.engine import Engine
from inference.fastpath import open_session, support
from inference.fastpath.pocket import PocketFastDecoder
from inference.hardware import PRESETS
from inference.models import describe
from inference.planner import make_plan
from tests.audio_difference import difference

TEXTS = ["Hi there.", "A longer one here, with more words.", "Third."]
FRAMES = 30


@pytest.fixture(scope="module")
def loaded(tiny_checkpoint):
    loaded = ADAPTER.load(tiny_checkpoint("pocket_tts"), torch.float32, torch.device("cpu"))
    loaded.model.generation_config.do_sample = False  # the flow starts from zero noise: deterministic
    return loaded


@pytest.fixture(scope="module")
def prompt(loaded, reference_voice):
    audio, rate = reference_voice
    return ADAPTER.build_voice_prompt(loaded, audio, rate, None)


def _inputs(loaded, prompt, texts):
    session = open_session(ADAPTER, loaded, batch_size=len(texts), capacity=64)
    return session, ADAPTER.prompt_inputs(loaded, prompt, texts)


def test_latents_and_ends_match_transformers_generate(loaded, prompt):
    _, inputs = _inputs(loaded, prompt, TEXTS)
    with torch.inference_mode():
        reference = loaded.model.generate(**inputs, return_dict_in_generate=True, max_new_tokens=FRAMES)
        rows = PocketFastDecoder(loaded.model, 4, 32).generate(inputs, [0, 1, 2], FRAMES)  # grows the cache
    counts = reference.audio_latents_mask.sum(-1).tolist()
    assert min(counts) < FRAMES  # the tiny model ends its chunks by itself
    for row, latents in enumerate(rows):
        assert latents.shape[0] == counts[row]
        want = reference.audio_latents[row, :counts[row]]
        torch.testing.assert_close(loaded.model.denormalize_latents(latents), want, atol=1e-5, rtol=1e-4)


def test_session_streams_the_adapters_audio(loaded, prompt):
    expected = ADAPTER.generate(loaded, prompt, TEXTS, max_frames=FRAMES)
    session, _ = _inputs(loaded, prompt, TEXTS)
    assert support(ADAPTER, loaded).available and "pocket" in session.kind
    pieces = list(session.stream(prompt, TEXTS, seeds=[0, 1, 2], max_frames=FRAMES))
    assert len(pieces[0].audio) == 2 * 1920 and not pieces[0].final  # audio after two frames
    for row, want in enumerate(expected):
        got = np.concatenate([p.audio for p in pieces if p.row == row])
        assert [p.final for p in pieces if p.row == row][-1]
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_sampling_is_reproducible_per_seed(loaded, prompt):
    _, inputs = _inputs(loaded, prompt, TEXTS[:2])
    decoder = PocketFastDecoder(loaded.model, 2, 64)
    decoder.noise_scale = 0.7 ** 0.5  # the released temperature
    with torch.inference_mode():
        first, again, other = (decoder.generate(inputs, seeds, FRAMES) for seeds in ([1, 2], [1, 2], [3, 2]))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0][:4], other[0][:4]) and torch.equal(first[1], other[1])


def test_bf16_weight_storage_stays_close(loaded, prompt):
    _, inputs = _inputs(loaded, prompt, TEXTS[:1])
    with torch.inference_mode():
        exact = PocketFastDecoder(loaded.model, 1, 64).generate(inputs, [0], 8)[0]
        halved = PocketFastDecoder(loaded.model, 1, 64, weight_dtype=torch.bfloat16)
        halved = halved.generate(inputs, [0], 8)[0]
    assert halved.dtype == exact.dtype and halved.shape == exact.shape
    assert (halved - exact).norm() / exact.norm() < 0.05


def _sampling_decoder(loaded, weights):
    decoder = PocketFastDecoder(loaded.model, 1, 64, weight_dtype=weights)
    decoder.noise_scale = 0.7 ** 0.5  # the released temperature: the noise path the app runs
    return decoder


def test_int8_projections_stay_close_to_fp32_and_are_deterministic(loaded, prompt):
    """int8 backbone and flow head (the CPU tier's setting): latents within 10% relative error of fp32's
    (the real-size model measures 36 dB SNR, benchmarks/results/cpu-tier-*), and the same seed gives the
    same latents twice."""
    _, inputs = _inputs(loaded, prompt, TEXTS[:1])
    with torch.inference_mode():
        exact = _sampling_decoder(loaded, None).generate(inputs, [3], 8)[0]
        int8 = _sampling_decoder(loaded, torch.qint8)
        first, again = (int8.generate(inputs, [3], 8)[0].clone() for _ in range(2))
    assert first.dtype == exact.dtype and first.shape == exact.shape
    assert (first - exact).norm() / exact.norm() < 0.1
    assert torch.equal(first, again)
    assert loaded.model.flow_head.layers[0].fc1.__class__ is torch.nn.Linear  # the model itself is untouched


def test_the_next_chunk_in_the_same_voice_reuses_its_keys_and_decodes_as_a_fresh_decoder_would(loaded, prompt):
    """The voice's keys and values are kept from the first chunk and copied for the next (only its text is
    prefilled); the latents are those of a decoder that never saw the first chunk, bit for bit (int8 too: the
    voice is always prefilled alone). Another voice, or a padded batch, prefills everything."""
    text = ADAPTER.prompt_inputs(loaded, prompt, TEXTS[1:2])
    with torch.inference_mode():
        warm = _sampling_decoder(loaded, torch.qint8)
        warm.generate(ADAPTER.prompt_inputs(loaded, prompt, TEXTS[:1]), [1], 8)
        assert warm.reused == 0
        again = warm.generate(text, [2], 8)[0].clone()
        assert warm.reused == int((text["input_ids"][0] == loaded.model.config.audio_prompt_token_id).nonzero()[-1]) + 1
        fresh = _sampling_decoder(loaded, torch.qint8).generate(text, [2], 8)[0]
        assert torch.equal(again, fresh)
        other = VoicePrompt(prompt.family, {"audio_prompt_latents": prompt.tensors["audio_prompt_latents"] * 0.5})
        warm.generate(ADAPTER.prompt_inputs(loaded, other, TEXTS[1:2]), [2], 8)
        assert warm.reused == 0
        padded = ADAPTER.prompt_inputs(loaded, other, TEXTS[:2])
        assert not padded["attention_mask"].all()
        warm.generate(padded, [1, 2], 8)
        assert warm.reused == 0


def _cpu_tier_audio(ref, voice, bf16: bool, int8: bool):
    """The plan for a CPU with these flags, through Engine.load, and one chunk of its audio."""
    engine = Engine.load(ref, make_plan(ref, replace(PRESETS["cpu-16g"], cpu_bf16=bf16, cpu_int8=int8)))
    prompt = engine.voice_prompt(*voice, None)
    return engine, engine.synthesize_batch(prompt, TEXTS[1:2], [5])[0]


@pytest.fixture(scope="module")
def fp32_tier(tiny_checkpoint, reference_voice):
    ref = describe(str(tiny_checkpoint("pocket_tts")))
    return ref, _cpu_tier_audio(ref, reference_voice, False, False)[1]


@pytest.mark.parametrize(("bf16", "int8"), [(False, True), (True, False), (True, True)],
                         ids=["int8", "bf16", "bf16+int8"])
def test_cpu_tier_plans_open_their_sessions_and_their_audio_stays_close_to_fp32(fp32_tier, reference_voice,
                                                                                bf16, int8):
    """Each CPU's plan (int8 projections where it has int8 dot products, a bf16 model and codec where it computes
    bf16 natively) opens the session it names, and its audio stays above 25 dB SNR and below 3% mel difference
    against the fp32 plan's for the same seed (this tiny model measures 40-52 dB and 0.2-0.8%; the real-size
    one about 33 dB and 1.7%: benchmarks/results/cpu-tier-*)."""
    ref, exact = fp32_tier
    engine, audio = _cpu_tier_audio(ref, reference_voice, bf16, int8)
    assert engine.plan.cpu_projections == ("int8" if int8 else "")
    assert engine.plan.cpu_codec_dtype == ("bfloat16" if bf16 else "")
    assert ("int8 projections" in engine.fast.kind) == int8 and ("codec in bfloat16" in engine.fast.kind) == bf16
    assert audio.dtype == np.float32 and audio.shape == exact.shape
    gap = difference(exact, audio, engine.sample_rate)
    assert gap["snr_db"] > 25 and gap["mel_relative"] < 0.03, gap
    codec = engine.loaded.processor.audio_tokenizer  # voices are encoded, plain generate decodes, in fp32
    assert next(codec.parameters()).dtype == torch.float32


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is a Linux call")
def test_the_cpu_tier_runs_no_more_threads_than_the_process_may_use():
    from inference.engine import _physical_cores

    allowed = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(allowed)})
        assert _physical_cores() == 1
    finally:
        os.sched_setaffinity(0, allowed)
    assert 1 <= _physical_cores() <= len(allowed)
