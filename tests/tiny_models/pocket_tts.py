"""A tiny random Pocket TTS checkpoint: the real classes, narrow and shallow, with the real frame rate.

The codec keeps the released strides (ratios 6, 5, 4 and a latent stride of 16: 1920 samples per frame
at 24 kHz, 12.5 frames/s), because the feature extractor pads voices to its frame size and the processor
decodes ``frame_size`` samples per frame: both must match the codec. Everything else is a few channels
wide. The codec is saved in an ``audio_tokenizer/`` subfolder (the bundled layout the adapter accepts)
and the processor without it, so its config names no hub repo to fetch.

A random backbone's end-of-speech logit hovers near 0, above the released threshold of -4, so generation
already stops right after ``min_frames_before_eos``; a positive bias on the end-of-speech head makes that
certain, and every text yields about ten frames.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    GenerationConfig,
    PocketTTSAudioTokenizerConfig,
    PocketTTSAudioTokenizerModel,
    PocketTTSConfig,
    PocketTTSFeatureExtractor,
    PocketTTSForConditionalGeneration,
    PocketTTSProcessor,
    TokenizersBackend,
)

from inference.adapters.pocket_tts import CODEC

# The processor's placeholders, read from these tokenizer attributes; the prompt layout it documents is
# `audio_prompt_bos_token audio_prompt_token text audio_bos_token`.
AUDIO_TOKENS = {
    "audio_prompt_bos_token": "<|audio_prompt_bos|>",
    "audio_prompt_token": "<|audio_prompt|>",
    "audio_latent_token": "<|audio_latent|>",
    "audio_bos_token": "<|audio_bos|>",
}
PAD_TOKEN = "<pad>"
# The voice where its audio item stands, the text as is, and the first audio position closing the prompt.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'audio' -%}{{ audio_prompt_bos_token }}{{ audio_prompt_token }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endfor -%}{{ audio_bos_token }}"
)
LATENT_DIM = 8
EOS_BIAS = 4.0
# The released checkpoints' generation settings (transformers' defaults for Pocket TTS, kyutai's runtime).
GENERATION = {"do_sample": True, "temperature": 0.7, "return_dict_in_generate": True, "num_flow_steps": 1,
              "eos_threshold": -4.0, "min_frames_before_eos": 6}


def build(out_dir: Path, seed: int = 0, hidden_size: int = 32) -> Path:
    """Write model, generation config, processor and codec into ``out_dir``.

    A larger ``hidden_size`` makes weights big enough to be downloaded in several pieces (download tests).
    """
    tokenizer = _tokenizer()
    codec_config = _codec_config()
    torch.manual_seed(seed)
    model = PocketTTSForConditionalGeneration(_config(tokenizer, hidden_size)).eval()
    with torch.no_grad():
        model.eos_head.bias.fill_(EOS_BIAS)
    model.generation_config = GenerationConfig(**GENERATION)
    codec = PocketTTSAudioTokenizerModel(codec_config).eval()
    features = PocketTTSFeatureExtractor(sampling_rate=codec_config.sampling_rate,
                                         frame_size=codec_config.frame_size,
                                         pad_to_multiple_of=codec_config.frame_size)
    processor = PocketTTSProcessor(feature_extractor=features, tokenizer=tokenizer,
                                   chat_template=CHAT_TEMPLATE)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    codec.save_pretrained(out_dir / CODEC)
    return out_dir


def _tokenizer() -> TokenizersBackend:
    """Byte-level BPE without merges (one token per byte), then padding and the audio placeholders.

    Left padding: every prompt must end on the first audio position, from which the first frame comes.
    """
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    backend = Tokenizer(models.BPE(vocab={char: i for i, char in enumerate(alphabet)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    return TokenizersBackend(tokenizer_object=backend, pad_token=PAD_TOKEN, extra_special_tokens=AUDIO_TOKENS,
                             padding_side="left")


def _config(tokenizer: TokenizersBackend, hidden_size: int) -> PocketTTSConfig:
    placeholder_ids = {f"{name}_id": tokenizer.convert_tokens_to_ids(token)
                       for name, token in AUDIO_TOKENS.items()}
    return PocketTTSConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=2 * hidden_size, latent_dim=LATENT_DIM, pad_token_id=tokenizer.pad_token_id,
        max_position_embeddings=2048,
        flow_head_config={"hidden_size": 32, "num_hidden_layers": 2, "latent_dim": LATENT_DIM,
                          "condition_dim": hidden_size, "frequency_embedding_size": 16},
        **placeholder_ids,
    )


def _codec_config() -> PocketTTSAudioTokenizerConfig:
    return PocketTTSAudioTokenizerConfig(
        hidden_size=32, num_filters=4, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
        intermediate_size=64, upsample_groups=32, latent_dim=LATENT_DIM,
    )
