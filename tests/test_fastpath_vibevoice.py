"""The VibeVoice fast decode path on the tiny checkpoint: the same audio as transformers' generate when
it draws the same noise, per-chunk noise that makes a chunk independent of its batch, rows that stop
on their own, and (CUDA) graph replays equal to eager steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inference.adapters.vibevoice import ADAPTER
from inference.fastpath import open_session, support
from inference.fastpath.sessions import VibeVoiceSession
from inference.fastpath.vibevoice import VibeVoiceFastDecoder

SAMPLES_PER_FRAME = 3200
TEXTS = ["Good morning.", "The weather is fine today, and the walk is long.", "Third."]


@pytest.fixture(scope="module")
def loaded(tiny_checkpoint):
    return ADAPTER.load(tiny_checkpoint("vibevoice"), torch.float32, torch.device("cpu"))


@pytest.fixture(scope="module")
def prompt(loaded, reference_voice):
    audio, rate = reference_voice
    return ADAPTER.build_voice_prompt(loaded, audio[:rate * 2], rate, None)


def _session(loaded, batch: int, **options) -> VibeVoiceSession:
    return VibeVoiceSession(ADAPTER, loaded, batch, 256, **options)


def test_same_audio_as_transformers_generate_with_its_noise(loaded, prompt):
    """Drawing the diffusion noise from torch's generator as generate does, the fast path computes
    generate's function: same prompt embedding, guidance pair, scheduler, codecs and feedback."""
    for seed in (5, 6):
        torch.manual_seed(seed)
        (expected,) = ADAPTER.generate(loaded, prompt, [TEXTS[1]], max_frames=6)
        (got,) = _session(loaded, 1, noise="torch").generate(prompt, [TEXTS[1]], [seed], max_frames=6)
        assert len(got) == len(expected) == 6 * SAMPLES_PER_FRAME
        np.testing.assert_allclose(got, expected, atol=1e-5)
        assert np.abs(expected).max() > 1e-3


def test_a_chunk_sounds_the_same_alone_or_in_a_batch(loaded, prompt):
    session = _session(loaded, 3)
    batch = session.generate(prompt, TEXTS, [1, 2, 3], max_frames=5)
    (alone,) = _session(loaded, 1).generate(prompt, [TEXTS[1]], [2], max_frames=5)
    np.testing.assert_allclose(batch[1], alone, atol=1e-5)
    again = session.generate(prompt, TEXTS, [1, 2, 3], max_frames=5)  # run to run: the very same samples
    assert all(np.array_equal(a, b) for a, b in zip(batch, again, strict=True))
    assert np.abs(batch[0][:len(batch[1])] - batch[1]).max() > 1e-3  # other seeds, other audio


def test_rows_keep_their_own_budgets_and_stream_in_order(loaded, prompt):
    session = _session(loaded, 3, check_every=3)
    pieces = list(session.stream(prompt, TEXTS, [1, 2, 3]))
    whole = session.generate(prompt, TEXTS, [1, 2, 3])
    for row, text in enumerate(TEXTS):
        own = [p for p in pieces if p.row == row]
        assert own[-1].final and not any(p.final for p in own[:-1])
        streamed = np.concatenate([p.audio for p in own])
        assert len(streamed) == ADAPTER.frames_for_text(text) * SAMPLES_PER_FRAME
        np.testing.assert_array_equal(streamed, whole[row])


def test_towers_stepped_outside_the_frame_give_the_same_audio(loaded, prompt):
    """Where an executor streams the towers' layers, the frame is decoded after the graphed draw, with the
    language model: the same computation in another order of launches."""
    (graphed,) = _session(loaded, 1, model_step=True).generate(prompt, [TEXTS[1]], [4], max_frames=5)
    stepped = _session(loaded, 1, model_step=True, codec_step=True)
    assert stepped.decoder.codec_step and "audio towers stepped" in stepped.kind
    (got,) = stepped.generate(prompt, [TEXTS[1]], [4], max_frames=5)
    np.testing.assert_array_equal(got, graphed)


def test_end_of_text_ends_the_chunk_as_in_generate(tiny_checkpoint, prompt):
    """A model that picks end-of-text first speaks no frame, in generate and in the fast path."""
    ended = ADAPTER.load(tiny_checkpoint("vibevoice"), torch.float32, torch.device("cpu"))
    config = ended.model.config
    with torch.no_grad():  # the bias feature now favours end-of-text over the audio token
        ended.model.lm_head.weight[config.eos_token_id, 0] = 2 * ended.model.lm_head.weight[config.audio_token_id, 0]
    torch.manual_seed(0)
    assert [len(a) for a in ADAPTER.generate(ended, prompt, TEXTS[:2], max_frames=4)] == [0, 0]
    assert [len(a) for a in _session(ended, 2).generate(prompt, TEXTS[:2], [0, 1], max_frames=4)] == [0, 0]


def test_support_names_the_guidance_path(loaded):
    assert support(ADAPTER, loaded).available
    session = open_session(ADAPTER, loaded, 2, 256)
    assert isinstance(session, VibeVoiceSession) and "guidance pair" in session.kind
    with pytest.raises(ValueError, match="CUDA graph"):
        VibeVoiceFastDecoder(loaded.model, 1, 64, use_graph=True, noise="torch")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_replay_matches_eager_steps(tiny_checkpoint, reference_voice):
    loaded = ADAPTER.load(tiny_checkpoint("vibevoice"), torch.float32, torch.device("cuda"))
    audio, rate = reference_voice
    prompt = ADAPTER.build_voice_prompt(loaded, audio[:rate * 2], rate, None)
    results = []
    for use_graph in (True, False):
        session = _session(loaded, 3, use_graph=use_graph)
        assert (session.warm_up() > 0) == use_graph
        results.append(session.generate(prompt, TEXTS, [1, 2, 3], max_frames=6))
    for graphed, eager in zip(*results, strict=True):
        assert len(graphed) == 6 * SAMPLES_PER_FRAME
        np.testing.assert_allclose(graphed, eager, atol=1e-5)
