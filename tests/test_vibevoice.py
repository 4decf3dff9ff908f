"""VibeVoice adapter: real-size architecture on the meta device, and cloning with a tiny checkpoint on CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import VibeVoiceConfig, VibeVoiceForConditionalGeneration, VibeVoiceProcessor

from inference.adapters.base import Role
from inference.adapters.vibevoice import ADAPTER
from inference.planning.measure import measure
from inference.registry import specs

SCALARS = {"model.latent_scaling_factor", "model.latent_bias_factor"}  # parameters of no submodule
SAMPLES_PER_FRAME = 3200


@pytest.fixture(scope="module")
def loaded(tiny_checkpoint):
    return ADAPTER.load(tiny_checkpoint("vibevoice"), torch.float32, torch.device("cpu"))


@pytest.fixture(scope="module")
def prompt(loaded, reference_voice, reference_transcript):
    audio, rate = reference_voice
    return ADAPTER.build_voice_prompt(loaded, audio, rate, reference_transcript)


def _spec(name: str):
    return specs()[name]


def _millions(module: torch.nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


@pytest.mark.parametrize(("name", "total", "backbone", "diffusion_head"), [
    ("vibevoice-1.5b", 2.704, 1310.3, 123.3),
    ("vibevoice-7b", 9.343, 6525.6, 669.3),
])
def test_specs_have_the_released_sizes(name, total, backbone, diffusion_head):
    spec = _spec(name)
    config = spec.config()
    model = ADAPTER.meta_model(config)
    assert sum(p.numel() for p in model.parameters()) / 1e9 == pytest.approx(total, abs=0.001)
    assert len(model.model.language_model.layers) == 28
    assert _millions(model.model.audio_tower) == pytest.approx(687.4, abs=0.1)
    assert _millions(model.model.semantic_tokenizer_encoder) == pytest.approx(344.6, abs=0.1)
    assert _millions(model.model.diffusion_head) == pytest.approx(diffusion_head, abs=0.1)
    size = measure(ADAPTER, config).at("bfloat16")
    (backbone_size,) = size.by_role(Role.BACKBONE)
    assert backbone_size.nbytes / 2 / 1e6 == pytest.approx(backbone, abs=0.1)
    assert len(backbone_size.layer_nbytes) == 28
    text = config.text_config
    head_dim = text.hidden_size // text.num_attention_heads  # 128 in both
    assert size.kv_bytes_per_token == 2 * 28 * text.num_key_value_heads * head_dim * 2  # K and V, bf16


@pytest.mark.parametrize("name", ["vibevoice-1.5b", "vibevoice-7b"])
def test_components_cover_every_parameter_once(name):
    config = _spec(name).config()
    model = ADAPTER.meta_model(config)
    owners: dict[int, str] = {}
    for component in ADAPTER.components(config):
        for path in component.module_paths:
            for param in model.get_submodule(path).parameters():
                assert id(param) not in owners, f"{path} counted twice"
                owners[id(param)] = component.name
    missing = {n for n, p in model.named_parameters() if id(p) not in owners}
    assert missing == SCALARS


def test_modules_read_outside_forward_are_pinned_and_the_voice_encoder_is_prompt_only():
    components = {c.name: c for c in ADAPTER.components(_spec("vibevoice-1.5b").config())}
    pinned = {name for name, c in components.items() if c.pinned_to_compute}
    assert {"diffusion_head", "acoustic_decoder", "semantic_encoder", "connectors"} <= pinned
    assert [name for name, c in components.items() if c.prompt_only] == ["acoustic_encoder"]
    assert components["acoustic_encoder"].module_paths == ("model.audio_tower.encoder",)


def test_the_voice_prompt_keeps_the_references_latents_on_the_compute_device(loaded, prompt):
    """The acoustic encoder runs here, once per voice; generate reads its latents and never the encoder."""
    latents = prompt.tensors["latents"]
    frames = -(-len(prompt.tensors["audio"]) // SAMPLES_PER_FRAME)
    assert latents.shape == (1, frames, loaded.model.config.audio_config.hidden_size)
    assert latents.device == loaded.device and latents.dtype == loaded.dtype
    encoder = loaded.model.model.audio_tower.encoder
    calls = []
    handle = encoder.register_forward_hook(lambda *args: calls.append(1))
    try:
        torch.manual_seed(0)
        ADAPTER.generate(loaded, prompt, ["No encoder here."], max_frames=2)
    finally:
        handle.remove()
    assert calls == []


def test_a_long_reference_is_encoded_in_pieces_to_the_same_latents(loaded, reference_voice):
    """Past ``encode_piece_seconds`` the causal encoder takes the reference a piece at a time through its
    padding cache, which bounds its activations: the latents are the whole recording's, to float rounding."""
    audio, rate = reference_voice
    long = np.tile(audio, int(np.ceil(17 * rate / len(audio))))[: 17 * rate]
    prompt = ADAPTER.build_voice_prompt(loaded, long, rate, None)
    assert ADAPTER.facts.encode_piece_seconds < 17
    values = loaded.processor.feature_extractor(long, sampling_rate=rate)["input_values"]
    with torch.inference_mode():
        whole = loaded.model.model.audio_tower.encode(values, sample=False).latents
    assert prompt.tensors["latents"].shape == whole.shape
    torch.testing.assert_close(prompt.tensors["latents"], whole, rtol=0, atol=1e-5)


def test_clones_a_voice_at_24_khz(loaded, prompt):
    assert (ADAPTER.sample_rate, ADAPTER.frame_rate) == (24_000, 7.5)
    torch.manual_seed(0)
    (audio,) = ADAPTER.generate(loaded, prompt, ["Hello there, this is a test."], max_frames=5)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) == 5 * SAMPLES_PER_FRAME  # the tiny model speaks until the budget ends
    assert np.isfinite(audio).all() and np.abs(audio).max() > 0


@pytest.mark.slow
def test_default_budget_follows_the_text(loaded, prompt):
    text = "Short."
    torch.manual_seed(0)
    (audio,) = ADAPTER.generate(loaded, prompt, [text])
    assert len(audio) == ADAPTER.frames_for_text(text) * SAMPLES_PER_FRAME


def test_voice_prompt_is_resampled_to_24_khz(loaded, reference_voice):
    audio, rate = reference_voice
    at_16k = audio[::3][: 16_000]  # any 16 kHz signal will do
    prompt = ADAPTER.build_voice_prompt(loaded, at_16k, 16_000, None)
    assert prompt.tensors["audio"].shape == (24_000,)
    assert prompt.family == "vibevoice"


@pytest.mark.slow
def test_same_seed_same_audio(loaded, prompt):
    def run(seed: int) -> list[np.ndarray]:
        torch.manual_seed(seed)
        return ADAPTER.generate(loaded, prompt, ["One sentence.", "And a second, longer one."], max_frames=4)

    first, again, other = run(3), run(3), run(4)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0], other[0])


@pytest.mark.slow
@pytest.mark.parametrize("texts", [["Good morning."], ["Good morning.", "The weather is fine today."]])
def test_matches_plain_transformers(tiny_checkpoint, loaded, prompt, reference_voice, texts):
    """The adapter is transformers' documented cloning call with the reference encoded once per voice:
    same seed, same samples. transformers encodes the reference again for every row of a batch, and a
    convolution over a batch of rows rounds differently from one over one row (by 1e-7 on the CPU): a
    batch's samples agree to float rounding, one chunk's bit for bit."""
    path = tiny_checkpoint("vibevoice")
    audio, rate = reference_voice
    assert rate == 24_000
    processor = VibeVoiceProcessor.from_pretrained(path)
    model = VibeVoiceForConditionalGeneration.from_pretrained(path, use_safetensors=True).eval()
    chats = [[{"role": "0", "content": [{"type": "text", "text": t}, {"type": "audio", "audio": audio}]}]
             for t in texts]
    inputs = processor.apply_chat_template(chats, tokenize=True, return_dict=True, return_tensors="pt",
                                           processor_kwargs={"padding": True, "padding_side": "left"})
    torch.manual_seed(11)
    with torch.inference_mode():
        expected = [a.numpy().reshape(-1) for a in model.generate(**inputs, max_new_tokens=6)]

    torch.manual_seed(11)
    got = ADAPTER.generate(loaded, prompt, texts, max_frames=6)
    assert len(got) == len(expected) == len(texts)
    for g, e in zip(got, expected, strict=True):
        if len(texts) == 1:
            np.testing.assert_array_equal(g, e)
        else:
            np.testing.assert_allclose(g, e, rtol=0, atol=1e-6)


def test_loads_through_a_device_map_of_its_components(tiny_checkpoint, prompt):
    """The module paths are valid accelerate device-map keys: the planner builds offload maps from them."""
    path = tiny_checkpoint("vibevoice")
    config = VibeVoiceConfig.from_pretrained(path)
    device_map = {p: "cpu" for c in ADAPTER.components(config) for p in c.module_paths}
    device_map.update(dict.fromkeys(SCALARS, "cpu"))
    mapped = ADAPTER.load(path, torch.float32, torch.device("cpu"), device_map)
    torch.manual_seed(0)
    (audio,) = ADAPTER.generate(mapped, prompt, ["Mapped."], max_frames=2)
    assert len(audio) == 2 * SAMPLES_PER_FRAME
