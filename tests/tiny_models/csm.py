"""A tiny random Sesame CSM checkpoint: real CsmForConditionalGeneration, Mimi codec and CsmProcessor.

Shapes are cut down everywhere except where the processor depends on them: CsmProcessor hard-codes
Mimi's 24 kHz input and its convolution strides (1920 samples per 12.5 Hz frame) to count the audio
tokens of a context turn, so the tiny Mimi keeps the real kernel sizes and strides and only gets
narrow. The audio vocabulary equals Mimi's codebook size, so whatever code the random backbone or
depth decoder samples can be decoded.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import (
    CsmConfig,
    CsmForConditionalGeneration,
    CsmProcessor,
    EncodecFeatureExtractor,
    MimiConfig,
    PreTrainedTokenizerFast,
)
from transformers.models.mimi.modeling_mimi import MimiEuclideanCodebook

from tests.tiny_models.subwords import english_bpe

BOS, EOS, AUDIO, AUDIO_EOS = "<|begin_of_text|>", "<|end_of_text|>", "<|AUDIO|>", "<|audio_eos|>"
NUM_CODEBOOKS = 4
CODEBOOK_SIZE = 64

# Renders exactly what sesame/csm-1b's template renders: one turn per message, "[speaker]text" between
# bos and eos, then the audio placeholder for turns that carry audio; only the last turn may lack audio.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- set types = message['content'] | map(attribute='type') | list -%}"
    "{%- if not message['role'] is string or not message['role'].isdigit() -%}"
    "{{- raise_exception('The role must be a stringified integer speaker id, e.g. \"0\"') -}}"
    "{%- endif -%}"
    "{%- if not loop.last and (types | select('equalto', 'audio') | list | length) != 1 -%}"
    "{{- raise_exception('Each message except the last must contain one text and one audio item') -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- for message in messages -%}"
    "{{- bos_token + '[' + message['role'] + ']' + message['content'][0]['text'] + eos_token -}}"
    "{%- if message['content'] | length > 1 -%}{{- '<|AUDIO|><|audio_eos|>' -}}{%- endif -%}"
    "{%- endfor -%}"
)


def tiny_config(text_vocab_size: int, special_ids: dict[str, int]) -> CsmConfig:
    """Two narrow decoders and a narrow Mimi with the real strides; token ids from the tokenizer."""
    codec = MimiConfig(
        hidden_size=32, num_filters=4, num_residual_layers=1, upsampling_ratios=[8, 6, 5, 4],
        kernel_size=7, last_kernel_size=3, residual_kernel_size=3, compress=2, use_causal_conv=True,
        codebook_size=CODEBOOK_SIZE, codebook_dim=16, vector_quantization_hidden_dimension=16,
        num_quantizers=NUM_CODEBOOKS, num_semantic_quantizers=1, upsample_groups=32,
        num_hidden_layers=1, intermediate_size=64, num_attention_heads=2, num_key_value_heads=2,
        sliding_window=250, use_cache=False,
    )
    depth_decoder = {
        "num_codebooks": NUM_CODEBOOKS, "backbone_hidden_size": 64, "vocab_size": CODEBOOK_SIZE,
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
        "num_key_value_heads": 1, "max_position_embeddings": NUM_CODEBOOKS + 1,
    }
    return CsmConfig(
        num_codebooks=NUM_CODEBOOKS, vocab_size=CODEBOOK_SIZE, text_vocab_size=text_vocab_size,
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=2048,
        bos_token_id=special_ids[BOS], pad_token_id=special_ids[AUDIO],
        audio_token_id=special_ids[AUDIO], audio_eos_token_id=special_ids[AUDIO_EOS],
        codebook_pad_token_id=CODEBOOK_SIZE - 1, codebook_eos_token_id=0,
        depth_decoder_config=depth_decoder, codec_config=codec.to_dict(),
    )


def byte_tokenizer(subwords: bool = False) -> PreTrainedTokenizerFast:
    """Byte-level BPE without merges (or with English ones, ``subwords.english_bpe``) plus CSM's four special
    tokens; like Llama-3's, it adds bos/eos."""
    if subwords:
        vocab, merges = english_bpe()
        tok = Tokenizer(models.BPE(vocab=dict(vocab), merges=list(merges)))
    else:
        vocab = {char: i for i, char in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
        tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([BOS, EOS, AUDIO, AUDIO_EOS])
    bos_id, eos_id = tok.token_to_id(BOS), tok.token_to_id(EOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS}:0 $A:0 {EOS}:0", pair=f"{BOS}:0 $A:0 {EOS}:0 {BOS}:1 $B:1 {EOS}:1",
        special_tokens=[(BOS, bos_id), (EOS, eos_id)],
    )
    # The released processor pads with eos (left side): never with the audio token, which marks codes.
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=EOS)


def randomize_codebooks(codec: torch.nn.Module) -> None:
    """Give Mimi's codebooks random centroids.

    Mimi initializes every centroid to zero, so an untrained codec encodes any sound as code 0 (which
    is also CSM's end-of-audio code) and decodes every code to the same latent: audio would not
    depend on the generated codes, and tests could not tell two generations apart.
    """
    with torch.no_grad():
        for module in codec.modules():
            if isinstance(module, MimiEuclideanCodebook):
                module.embed_sum.normal_()


def build(out_dir: Path, seed: int = 0, subwords: bool = False) -> Path:
    """Write the tiny checkpoint, its generation defaults and the processor into ``out_dir`` (``subwords``:
    English merges in the tokenizer, as full-size checkpoints use)."""
    tokenizer = byte_tokenizer(subwords)
    special_ids = {t: tokenizer.convert_tokens_to_ids(t) for t in (BOS, EOS, AUDIO, AUDIO_EOS)}
    torch.manual_seed(seed)
    model = CsmForConditionalGeneration(tiny_config(len(tokenizer), special_ids)).eval()
    randomize_codebooks(model.codec_model)
    # The released checkpoint samples both decoders with top-k 50 at temperature 0.9. A config marked
    # as derived from the model config drops the depth_decoder_* keys on load, hence the flag.
    gen = model.generation_config
    gen._from_model_config = False
    gen.do_sample, gen.top_k, gen.temperature, gen.max_new_tokens = True, 50, 0.9, 125
    depth_gen = model.depth_decoder.generation_config
    depth_gen.do_sample, depth_gen.top_k, depth_gen.temperature = True, 50, 0.9
    model.save_pretrained(out_dir, safe_serialization=True)
    feature_extractor = EncodecFeatureExtractor(feature_size=1, sampling_rate=24000, padding_value=0.0,
                                                return_attention_mask=True)
    processor = CsmProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer,
                             chat_template=CHAT_TEMPLATE)
    processor.save_pretrained(out_dir)
    return out_dir
