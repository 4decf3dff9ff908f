"""A tiny random VibeVoice checkpoint: the real classes, narrow and shallow, with the real frame rate.

The acoustic tokenizer and the semantic encoder keep the released downsampling ratios (3200 samples
per frame at 24 kHz, so 7.5 frames/s), because the processor counts audio placeholders with the
feature extractor's ``pad_to_multiple_of`` and the model with the tokenizer's hop length: the two
must agree. Everything else is a few channels wide.

A random language model never picks the audio token by argmax (the generation code restricts the
choice to audio-start, audio-token, audio-end and end-of-text, and any of them may win), so the
weights carry a bias feature: every input embedding, and the audio connector's output, has a
constant first coordinate that survives the random layers, and only the audio token's lm_head row
reads it. The saved checkpoint therefore keeps emitting audio frames through the unchanged
generation path until the frame budget ends.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import pre_tokenizers
from transformers import (
    GenerationConfig,
    Qwen2Tokenizer,
    VibeVoiceAcousticTokenizerFeatureExtractor,
    VibeVoiceConfig,
    VibeVoiceForConditionalGeneration,
    VibeVoiceProcessor,
)

from tests.tiny_models.subwords import english_bpe

# The chat template the released checkpoints ship (transformers' conversion script and processor tests).
CHAT_TEMPLATE = """{%- set system_prompt = system_prompt | default(" Transform the text provided by various \
speakers into speech output, utilizing the distinct voice of each respective speaker.\\n") -%}
{{ system_prompt -}}
{%- set audio_bos_token = audio_bos_token | default("<|vision_start|>") %}
{%- set audio_eos_token = audio_eos_token | default("<|vision_end|>") %}
{%- set audio_token = audio_token | default("<|vision_pad|>") %}
{%- set ns = namespace(speakers_with_audio="") %}
{%- for message in messages %}
    {%- set role = message['role'] %}
    {%- set content = message['content'] %}
    {%- set has_audio = content | selectattr('type', 'equalto', 'audio') | list | length > 0 %}
    {%- if has_audio and role not in ns.speakers_with_audio %}
        {%- set ns.speakers_with_audio = ns.speakers_with_audio + role + "," %}
    {%- endif %}
{%- endfor %}

{%- if ns.speakers_with_audio %}
{{ " Voice input:\\n" }}
{%- for speaker in ns.speakers_with_audio.rstrip(',').split(',') %}
{%- if speaker %}
 Speaker {{ speaker }}:{{ audio_bos_token }}{{ audio_token }}{{ audio_eos_token }}{{ "\\n" }}
{%- endif %}
{%- endfor %}
{%- endif %}
 Text input:{{ "\\n" }}

{%- for message in messages %}
    {%- set role = message['role'] %}
    {%- set text_items = message['content'] | selectattr('type', 'equalto', 'text') | list %}
    {%- for item in text_items %}
 Speaker {{ role }}: {{ item['text'] }}{{ "\\n" }}
    {%- endfor %}
{%- endfor %}
 Speech output:{{ "\\n" }}{{ audio_bos_token }}"""

# Qwen2.5's special tokens that VibeVoice uses (end of text doubles as padding; vision tokens mark audio).
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|vision_pad|>")
DOWNSAMPLING_RATIOS = (2, 2, 4, 5, 5, 8)  # the released tokenizers': 3200 samples per frame
BIAS_FEATURE = 1.0  # the constant first coordinate of every LM input
AUDIO_TOKEN_GAIN = 4.0  # how many times the feature the audio token's lm_head row reads of that coordinate


def build(out_dir: Path, seed: int = 0, subwords: bool = False) -> Path:
    """Write model, generation config and processor into ``out_dir`` (``subwords``: English merges in the
    tokenizer, as full-size checkpoints use; ``subwords.english_bpe``)."""
    tokenizer = _tokenizer(subwords)
    config = _config(tokenizer)
    torch.manual_seed(seed)
    model = VibeVoiceForConditionalGeneration(config).eval()
    add_audio_token_bias(model, config)
    model.generation_config = _generation_config(config)
    model.save_pretrained(out_dir)
    processor = VibeVoiceProcessor(
        feature_extractor=VibeVoiceAcousticTokenizerFeatureExtractor(pad_to_multiple_of=3200),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(out_dir)
    return out_dir


def _tokenizer(subwords: bool = False) -> Qwen2Tokenizer:
    """Qwen2's tokenizer class over a byte-level vocabulary, with no merges or with English ones: built
    offline, same pipeline."""
    if subwords:
        vocab, merges = english_bpe()
        vocab = dict(vocab)
    else:
        vocab, merges = {char: i for i, char in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}, ()
    for token in SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    return Qwen2Tokenizer(vocab=vocab, merges=list(merges), extra_special_tokens=list(SPECIAL_TOKENS[1:]))


def _config(tokenizer: Qwen2Tokenizer) -> VibeVoiceConfig:
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    tokenizer_shape = {"num_filters": 2, "kernel_size": 7, "downsampling_ratios": list(DOWNSAMPLING_RATIOS),
                       "depths": [1] * (len(DOWNSAMPLING_RATIOS) + 1)}
    return VibeVoiceConfig(
        text_config={
            "model_type": "qwen2", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": len(tokenizer),
            "max_position_embeddings": 2048, "rope_theta": 1e6, "rms_norm_eps": 1e-6,
            # Untied like the 7B: the bias feature must reach only the audio token's logit.
            "tie_word_embeddings": False,
        },
        # A wider init than the default 0.01, which leaves eight random convolutions producing ~1e-10 audio.
        audio_config={"model_type": "vibevoice_acoustic_tokenizer", "hidden_size": 8,
                      "initializer_range": 0.12, **tokenizer_shape},
        semantic_model_config={"model_type": "vibevoice_acoustic_tokenizer_encoder", "hidden_size": 16,
                               **tokenizer_shape},
        diffusion_head_config={"num_hidden_layers": 1, "intermediate_size": 96,
                               "frequency_embedding_size": 32},
        pad_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|endoftext|>"],
        audio_bos_token_id=ids["<|vision_start|>"],
        audio_eos_token_id=ids["<|vision_end|>"],
        audio_token_id=ids["<|vision_pad|>"],
    )


@torch.no_grad()
def add_audio_token_bias(model: VibeVoiceForConditionalGeneration, config: VibeVoiceConfig,
                         feature: float = BIAS_FEATURE) -> None:
    """Make argmax pick the audio token at every step (see the module docstring).

    ``feature`` must dwarf what the random layers and the two connectors add to the first coordinate:
    1.0 does for the tiny model, not at the released widths (``full_size.VIBEVOICE_BIAS_FEATURE``).

    With tied embeddings (VibeVoice-1.5B) the lm_head is the embedding table, whose first column now
    holds the bias feature for every token: the audio token's larger entry still wins, by the feature
    times the difference, which dwarfs the random part of each logit.
    """
    embed = model.model.language_model.embed_tokens.weight
    embed[:, 0] = feature
    model.model.multi_modal_projector.linear_2.bias[0] = feature
    head = model.lm_head.weight
    if head.data_ptr() != embed.data_ptr():
        head[:, 0] = 0.0
    head[config.audio_token_id, 0] = AUDIO_TOKEN_GAIN * feature


def _generation_config(config: VibeVoiceConfig) -> GenerationConfig:
    """What transformers' conversion script saves for the released checkpoints, with 4 diffusion steps."""
    return GenerationConfig(
        do_sample=False,
        guidance_scale=1.3,
        noise_scheduler_class="DPMSolverMultistepScheduler",
        noise_scheduler_config={"beta_schedule": "squaredcos_cap_v2", "prediction_type": "v_prediction"},
        num_diffusion_steps=4,
        pad_token_id=config.pad_token_id,
        eos_token_id=config.eos_token_id,
    )
