"""Pocket TTS adapter on a tiny random checkpoint of the real classes (CPU)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import PocketTTSAudioTokenizerModel, PocketTTSForConditionalGeneration, PocketTTSProcessor

from inference.adapters.base import LoadedModel, VoicePrompt
from inference.adapters.pocket_tts import ADAPTER, CODEC, _pin_loose_tensors
from inference.audio import resample
from inference.planning.measure import measure
from inference.registry import specs

TEXTS = ["Hello there.", "A longer sentence, with many more words in it than the first one."]
LOOSE_TENSORS = {"model.bos_latent", "latent_mean", "latent_std", "latent_stats_num_updates"}


@pytest.fixture(scope="module")
def folder(tiny_checkpoint) -> Path:
    return tiny_checkpoint("pocket_tts")


@pytest.fixture(scope="module")
def loaded(folder) -> LoadedModel:
    return ADAPTER.load(folder, torch.float32, torch.device("cpu"))


@pytest.fixture(scope="module")
def voice(loaded, reference_voice) -> VoicePrompt:
    audio, rate = reference_voice
    return ADAPTER.build_voice_prompt(loaded, audio, rate, None)


def _generate(loaded: LoadedModel, voice: VoicePrompt, seed: int, **kwargs) -> list[np.ndarray]:
    torch.manual_seed(seed)
    return ADAPTER.generate(loaded, voice, TEXTS, **kwargs)


def test_generates_audio_at_24khz(loaded, voice):
    frame_size = loaded.processor.audio_tokenizer.config.frame_size
    assert ADAPTER.sample_rate == loaded.processor.feature_extractor.sampling_rate == 24000
    assert ADAPTER.sample_rate / frame_size == ADAPTER.frame_rate == 12.5
    waveforms = _generate(loaded, voice, seed=0)
    assert len(waveforms) == len(TEXTS)
    for waveform in waveforms:
        assert waveform.dtype == np.float32 and waveform.ndim == 1
        assert len(waveform) > 0 and len(waveform) % frame_size == 0
        assert np.isfinite(waveform).all()


def test_voice_prompt_holds_codec_latents(loaded, voice, reference_voice):
    audio, rate = reference_voice
    latents = voice.tensors["audio_prompt_latents"]
    assert latents.dtype == torch.float32 and latents.shape[1] == loaded.model.config.latent_dim
    # the feature extractor trims trailing silence and appends a 80 ms pause: about the recording's frames
    assert abs(latents.shape[0] - len(audio) / rate * ADAPTER.frame_rate) < 6
    assert set(voice.tensors) == {"audio_prompt_latents"}  # the latents are the whole voice


def test_voice_prompt_resamples_other_rates(loaded, voice, reference_voice):
    audio, rate = reference_voice
    at_16k = ADAPTER.build_voice_prompt(loaded, resample(audio, rate, 16000), 16000, None)
    frames = at_16k.tensors["audio_prompt_latents"].shape[0]
    assert abs(frames - voice.tensors["audio_prompt_latents"].shape[0]) <= 1


def test_same_seed_same_audio(loaded, voice):
    first, again, other = (_generate(loaded, voice, seed) for seed in (7, 7, 8))
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_max_frames_caps_generation(loaded, voice):
    frame_size = loaded.processor.audio_tokenizer.config.frame_size
    assert all(len(w) <= 3 * frame_size for w in _generate(loaded, voice, seed=0, max_frames=3))


@pytest.mark.slow
def test_matches_plain_transformers(folder, loaded, voice, reference_voice):
    """The reference encodes the voice inside the processor call, as transformers' own usage does."""
    audio, rate = reference_voice
    model = PocketTTSForConditionalGeneration.from_pretrained(folder, use_safetensors=True).eval()
    processor = PocketTTSProcessor.from_pretrained(folder)
    processor.audio_tokenizer = PocketTTSAudioTokenizerModel.from_pretrained(folder / CODEC,
                                                                             use_safetensors=True).eval()
    conversations = [[{"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": text}]}]
                     for text in TEXTS]
    inputs = processor(text=processor.apply_chat_template(conversations), audio=[audio] * len(TEXTS),
                       sampling_rate=rate, return_tensors="pt", padding=True)
    torch.manual_seed(3)
    with torch.inference_mode():
        output = model.generate(**inputs)
    expected = processor.decode(output.audio_latents, output.audio_latents_mask)
    actual = _generate(loaded, voice, seed=3)
    assert [len(w) for w in actual] == [len(w) for w in expected]
    for ours, theirs in zip(actual, expected, strict=True):
        np.testing.assert_array_equal(ours, theirs.numpy())


def test_loads_codec_named_by_processor_config(folder, loaded, voice, tmp_path):
    """The released layout: no codec folder, the processor config names the codec's repo (a folder here)."""
    released = tmp_path / "released"
    shutil.copytree(folder, released, ignore=shutil.ignore_patterns(CODEC))
    config_file = released / "processor_config.json"
    config = json.loads(config_file.read_text())
    config[CODEC] = {"audio_tokenizer_class": "PocketTTSAudioTokenizerModel",
                     "audio_tokenizer_name_or_path": str(folder / CODEC)}
    config_file.write_text(json.dumps(config))
    from_reference = ADAPTER.load(released, torch.float32, torch.device("cpu"))
    assert from_reference.model.get_submodule(CODEC) is from_reference.processor.audio_tokenizer
    ours, theirs = _generate(from_reference, voice, seed=5), _generate(loaded, voice, seed=5)
    assert all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))


def test_components_cover_every_tensor_once(loaded):
    components = ADAPTER.components(loaded.model.config)
    paths = [path for component in components for path in component.module_paths]
    model = loaded.model
    names = [name for name, _ in [*model.named_parameters(), *model.named_buffers(remove_duplicate=False)]]
    for name in names:
        owners = [path for path in paths if name.startswith(f"{path}.")]
        assert len(owners) == (0 if name in LOOSE_TENSORS else 1), name
    backbone = next(c for c in components if c.layers_path)
    assert len(model.get_submodule(backbone.layers_path)) == model.config.num_hidden_layers
    meta = ADAPTER.meta_model(model.config)
    assert all(meta.get_submodule(path) is not None for path in paths)


def test_device_map_keeps_loose_tensors_on_compute_device(loaded, folder):
    paths = [p for c in ADAPTER.components(loaded.model.config) for p in c.module_paths if p != CODEC]
    device_map = dict.fromkeys(paths, "cpu")
    completed = _pin_loose_tensors(loaded.model.config, device_map, torch.device("cuda:0"))
    added = {key: value for key, value in completed.items() if key not in device_map}
    assert added == dict.fromkeys(LOOSE_TENSORS, "cuda:0")
    mapped = ADAPTER.load(folder, torch.float32, torch.device("cpu"), {**device_map, CODEC: "cpu"})
    assert len(_generate(mapped, ADAPTER.build_voice_prompt(mapped, np.zeros(24000, np.float32) + 0.1, 24000,
                                                             None), seed=0)) == len(TEXTS)


def test_half_precision_model_keeps_a_float32_codec_on_cpu(folder, voice):
    half = ADAPTER.load(folder, torch.bfloat16, torch.device("cpu"))
    assert half.model.dtype == torch.bfloat16 and half.processor.audio_tokenizer.dtype == torch.float32
    torch.manual_seed(0)
    (waveform,) = ADAPTER.generate(half, voice, TEXTS[:1])
    assert waveform.dtype == np.float32 and len(waveform) > 0 and np.isfinite(waveform).all()


def test_registered_spec_is_the_released_size():
    spec = specs()["pocket-tts"]
    assert (spec.name, spec.hub_id, spec.family) == ("pocket-tts", "eustlb/pocket-tts", ADAPTER.family)
    size = measure(ADAPTER, spec.config()).at("bfloat16")
    params = {c.component.name: c.nbytes // 2 for c in size.components}
    assert sum(params.values()) - params["codec"] == pytest.approx(89.45e6, rel=0.01)
    assert params["codec"] == pytest.approx(20.05e6, rel=0.01)
    assert len(next(c for c in size.components if c.layer_nbytes).layer_nbytes) == 6
    # K and V of 6 layers x 16 heads x 64 dims in bf16: 0.31 MB per second of audio at 12.5 frames/s
    assert size.kv_bytes_per_token == 2 * 6 * 16 * 64 * 2
