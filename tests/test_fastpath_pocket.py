"""Pocket TTS's fast path (the CPU tier) on the tiny checkpoint: the same latents as transformers'
generate without sampling, each chunk ending by the model's own end-of-speech rule, streamed audio
equal to the adapter's, reproducible sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inference.adapters.pocket_tts import ADAPTER
from inference.fastpath import open_session, support
from inference.fastpath.pocket import PocketFastDecoder

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


def test_cpu_plan_on_an_int8_cpu_opens_the_int8_session_and_its_audio_stays_close(tiny_checkpoint, reference_voice):
    from dataclasses import replace

    from inference.engine import Engine
    from inference.hardware import PRESETS
    from inference.models import describe
    from inference.planner import make_plan

    ref = describe(str(tiny_checkpoint("pocket_tts")))
    plans = {flag: make_plan(ref, replace(PRESETS["cpu-16g"], cpu_int8=flag)) for flag in (True, False)}
    assert plans[True].cpu_projections == "int8" and plans[False].cpu_projections == ""
    audio = {}
    for flag, plan in plans.items():
        engine = Engine.load(ref, plan)
        assert ("int8" in engine.fast.kind) == flag
        voice = engine.voice_prompt(*reference_voice, None)
        audio[flag] = engine.synthesize_batch(voice, TEXTS[:1], [5])[0]
    assert audio[True].shape == audio[False].shape
    error = np.linalg.norm(audio[True] - audio[False]) / np.linalg.norm(audio[False])
    assert error < 0.2
