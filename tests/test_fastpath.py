"""The fast decode path on the tiny CSM checkpoint (CPU): same tokens as transformers' generate under
greedy decoding, reproducible sampling, chunks stopping on their own, exact streamed Mimi decoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inference.adapters.csm import ADAPTER
from inference.fastpath import capacity_for, open_session, support
from inference.fastpath.codec import MimiStream
from inference.fastpath.csm import CsmFastDecoder
from inference.fastpath.sampling import Sampling, gumbel, pick, uniform

GREEDY = (Sampling(False), Sampling(False))
TEXTS = ["Hi.", "A second, somewhat longer chunk of text.", "Third one, medium."]
FRAMES = 40
EOS_SCALES = (4.0, 4.5, 5.0, 5.5, 6.0, 7.0, 8.0)


def _load(path, eos_scale: float = 1.0):
    loaded = ADAPTER.load(path, torch.float32, torch.device("cpu"))
    if eos_scale != 1.0:
        with torch.no_grad():  # make the end-of-audio code (0) likely, so rows stop on their own
            loaded.model.lm_head.weight[0] *= eos_scale
            loaded.model.depth_decoder.codebooks_head.weight[:, :, 0] *= eos_scale
    return loaded


def _prompt(loaded, reference_voice, reference_transcript):
    audio, rate = reference_voice
    return ADAPTER.build_voice_prompt(loaded, audio[:rate], rate, reference_transcript[:20])


@pytest.fixture(scope="module")
def eos_scale(tiny_checkpoint, reference_voice, reference_transcript) -> float:
    """A scale of the end-of-audio code's head rows under which greedy rows end at different frames.

    A random model never ends on its own; scaling code 0's rows makes it win sometimes. Which scale
    splits the rows depends on the random weights, so it is searched rather than hard-coded.
    """
    for scale in EOS_SCALES:
        loaded = _load(tiny_checkpoint("csm"), scale)
        embeds, mask = _inputs(loaded, _prompt(loaded, reference_voice, reference_transcript), TEXTS)
        ends = _eos_frames(_hf_greedy(loaded, embeds, mask, FRAMES))
        if len(set(ends)) > 1 and any(end is not None for end in ends):
            return scale
    pytest.fail("no scale of the end-of-audio code makes the tiny model's rows end apart")


@pytest.fixture(scope="module")
def loaded(tiny_checkpoint, eos_scale):
    return _load(tiny_checkpoint("csm"), eos_scale)


@pytest.fixture(scope="module")
def prompt(loaded, reference_voice, reference_transcript):
    return _prompt(loaded, reference_voice, reference_transcript)


def _inputs(loaded, prompt, texts):
    return ADAPTER.prompt_inputs(loaded, prompt, texts)


def _hf_greedy(loaded, embeds, mask, frames: int) -> torch.Tensor:
    with torch.inference_mode():
        return loaded.model.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=frames,
                                     do_sample=False, depth_decoder_do_sample=False)


def _eos_frames(codes: torch.Tensor) -> list[int | None]:
    ends = [(row[:, :-1] == 0).all(-1).nonzero() for row in codes]
    return [int(e[0, 0]) if e.numel() else None for e in ends]


def test_uniform_noise_is_a_pure_function_of_seed_frame_and_stream():
    u = uniform(torch.tensor([3, 4, 3]), torch.tensor([5]), 2, 1000)
    assert u.shape == (3, 2, 1000) and (u > 0).all() and (u < 1).all()
    assert torch.equal(u[0], u[2]) and not torch.equal(u[0], u[1])
    assert not torch.equal(u[0, 0], u[0, 1])  # codebooks of one frame draw apart
    assert torch.equal(u[1:2], uniform(torch.tensor([4]), torch.tensor([5]), 2, 1000))  # batch-independent
    assert not torch.equal(u[:1], uniform(torch.tensor([3]), torch.tensor([6]), 2, 1000))
    assert abs(u.mean().item() - 0.5) < 0.02


def test_sampling_stays_in_top_k_and_follows_the_distribution():
    logits = torch.tensor([[4.0, 3.0, 2.0, -1.0, -2.0]]).repeat(4000, 1)
    noise = gumbel(torch.arange(4000), torch.tensor([0]), 1, 3)[:, 0]
    picked = pick(logits, Sampling(True, 1.0, 3), noise)
    assert set(picked.tolist()) == {0, 1, 2}
    expected = torch.softmax(logits[0, :3], -1)
    observed = torch.bincount(picked, minlength=3)[:3].float() / len(picked)
    assert torch.allclose(observed, expected, atol=0.03)
    assert torch.equal(pick(logits[:2], Sampling(False), None), torch.tensor([0, 0]))


@pytest.mark.slow
def test_greedy_tokens_match_transformers_generate_per_row(loaded, prompt):
    embeds, mask = _inputs(loaded, prompt, TEXTS)
    reference = _hf_greedy(loaded, embeds, mask, FRAMES)
    ends = _eos_frames(reference)
    assert len(set(ends)) > 1  # the rows stop at different frames (or not at all)
    decoder = CsmFastDecoder(loaded.model, batch_size=4, capacity=64, sampling=GREEDY, check_every=4)
    with torch.inference_mode():
        rows = decoder.generate(embeds, mask, seeds=[0, 1, 2], max_frames=[FRAMES] * 3, include_eos=True)
    for row, end, codes in zip(reference, ends, rows, strict=True):
        assert codes.shape[0] == (FRAMES if end is None else end + 1)
        assert torch.equal(codes, row[: codes.shape[0]])
    assert decoder.capacity >= embeds.shape[1] + FRAMES  # grew from the too-small request


def test_each_row_keeps_its_own_frame_budget(loaded, prompt):
    embeds, mask = _inputs(loaded, prompt, TEXTS[1:])
    decoder = CsmFastDecoder(loaded.model, 2, embeds.shape[1] + 16, sampling=GREEDY)
    with torch.inference_mode():
        short, long = decoder.generate(embeds, mask, seeds=[0, 0], max_frames=[3, 16])
        alone = decoder.generate(embeds[1:], mask[1:], seeds=[0], max_frames=[16])[0]
    assert short.shape[0] == 3
    assert torch.equal(long, alone)  # a row decodes the same alone and in a batch


def test_sampling_is_reproducible_and_independent_of_the_batch(loaded, prompt):
    embeds, mask = _inputs(loaded, prompt, TEXTS[1:])
    # The released checkpoint's sampling, given explicitly: an earlier generate(depth_decoder_do_sample=False)
    # on this module's model rewrote the depth decoder's generation config in place.
    top_k = Sampling(True, 0.9, 50)
    decoder = CsmFastDecoder(loaded.model, 2, embeds.shape[1] + 12, (top_k, top_k))
    with torch.inference_mode():
        first = decoder.generate(embeds, mask, seeds=[11, 12], max_frames=[12, 12], include_eos=True)
        again = decoder.generate(embeds, mask, seeds=[11, 12], max_frames=[12, 12], include_eos=True)
        other = decoder.generate(embeds, mask, seeds=[13, 12], max_frames=[12, 12], include_eos=True)
        alone = decoder.generate(embeds[1:], mask[1:], seeds=[12], max_frames=[12], include_eos=True)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0][: len(other[0])], other[0][: len(first[0])])
    assert torch.equal(first[1], other[1]) and torch.equal(first[1], alone[0])


@pytest.mark.parametrize("pieces", [[150], [2, 8, 8, 20, 112], [1] * 5 + [145]])
def test_streamed_mimi_decoding_equals_a_full_decode(loaded, pieces):
    codec = loaded.model.codec_model
    codes = torch.randint(0, codec.config.codebook_size, (2, sum(pieces), codec.config.num_quantizers),
                          generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        full = codec.decode(codes.transpose(1, 2)).audio_values[:, 0]
        stream = MimiStream(codec)
        parts, start = [], 0
        for n in pieces:  # 150 frames: past Mimi's 250-step attention window
            parts.append(stream.push(codes[:, start:start + n]))
            start += n
    streamed = torch.cat(parts, dim=-1)
    assert streamed.shape == full.shape == (2, sum(pieces) * stream.samples_per_frame)
    assert torch.allclose(streamed, full, atol=1e-5, rtol=1e-4)


def test_session_streams_the_adapters_audio(tiny_checkpoint, eos_scale, reference_voice,
                                           reference_transcript):
    loaded = _load(tiny_checkpoint("csm"), eos_scale)
    for config in (loaded.model.generation_config, loaded.model.depth_decoder.generation_config):
        config.do_sample = False
    prompt = _prompt(loaded, reference_voice, reference_transcript)
    expected = [ADAPTER.generate(loaded, prompt, [text], max_frames=FRAMES)[0] for text in TEXTS]
    session = open_session(ADAPTER, loaded, batch_size=4, capacity=128)
    assert session is not None and "eager" in session.kind
    pieces = list(session.stream(prompt, TEXTS, seeds=[0, 1, 2], max_frames=FRAMES))
    first = pieces[0]
    assert len(first.audio) == session.first_block * 1920 and not first.final  # audio after 2 frames
    for row, wave in enumerate(session.generate(prompt, TEXTS, seeds=[0, 1, 2], max_frames=FRAMES)):
        assert [p.final for p in pieces if p.row == row][-1]
        streamed = np.concatenate([p.audio for p in pieces if p.row == row])
        assert len(wave) == len(expected[row]) == len(streamed)
        np.testing.assert_allclose(wave, expected[row], atol=1e-4)
        np.testing.assert_array_equal(streamed, wave)


def test_support_and_capacity_follow_the_plan():
    from inference.hardware import PRESETS
    from inference.models import describe
    from inference.planner import candidates

    ref = describe("csm-1b")
    plans = {p.level: p for p in reversed(candidates(ref, PRESETS["laptop-4060-8g"]))}
    assert support(ADAPTER).available and support(ADAPTER, plan=plans["resident"]).available
    # Mimi decoding on the CPU keeps the fast path (test_fastpath_offload: the other levels)
    assert support(ADAPTER, plan=plans["codec-cpu"]).available
    assert capacity_for(ref, 300) > ADAPTER.frames_for_text("x" * 300)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_replay_matches_eager_steps(tiny_checkpoint, reference_voice, reference_transcript):
    loaded = ADAPTER.load(tiny_checkpoint("csm"), torch.float32, torch.device("cuda"))
    embeds, mask = _inputs(loaded, _prompt(loaded, reference_voice, reference_transcript), TEXTS)
    results = []
    for use_graph in (True, False):
        for sampling in (GREEDY, None):
            decoder = CsmFastDecoder(loaded.model, 4, embeds.shape[1] + 24, sampling, use_graph=use_graph)
            with torch.inference_mode():
                assert decoder.warm_up() > 0 or not use_graph
                assert (decoder.runner.graph is not None) == use_graph
                results.append(decoder.generate(embeds, mask, [1, 2, 3], [24, 20, 24], include_eos=True))
    graph_greedy, graph_sampled, eager_greedy, eager_sampled = results
    for a, b in zip(graph_greedy + graph_sampled, eager_greedy + eager_sampled, strict=True):
        assert torch.equal(a, b)
    reference = _hf_greedy(loaded, embeds, mask, 24)
    for row, codes in zip(reference, graph_greedy, strict=True):
        assert torch.equal(codes, row[: codes.shape[0]])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_codec_on_the_cpu_keeps_the_graphed_frames(tiny_checkpoint, reference_voice, reference_transcript):
    """The codec-cpu plan, placed by its executor: frames come from the GPU graph, Mimi decodes them on the CPU."""
    from inference.executors import get as executor
    from inference.hardware import PRESETS
    from inference.models import describe
    from inference.planner import candidates

    path = tiny_checkpoint("csm")
    ref = describe(str(path))
    plans = {p.level: p for p in reversed(candidates(ref, PRESETS["laptop-4060-8g"]))}
    audio = {}
    for level in ("codec-cpu", "resident"):
        loaded = executor("resident").load(ref, plans[level], path).loaded
        assert (loaded.model.codec_model.device.type == "cpu") == (level == "codec-cpu")
        assert support(ADAPTER, loaded, plans[level]).available
        prompt = audio.setdefault("prompt", _prompt(loaded, reference_voice, reference_transcript))
        session = open_session(ADAPTER, loaded, 2, 256)
        audio[level] = session.generate(prompt, TEXTS[:2], [1, 2], max_frames=12)
    for cpu, gpu in zip(audio["codec-cpu"], audio["resident"], strict=True):  # same codes, other arithmetic
        assert len(gpu) == len(cpu) > 0
        assert np.corrcoef(gpu, cpu)[0, 1] > 0.99
