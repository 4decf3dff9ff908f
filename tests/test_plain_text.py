"""User text is plain text for every family: no string in it becomes a control token, and no input breaks
the text path with anything but one clear ``VesperError``.

Each family's tiny checkpoint is loaded through the adapter; its tokenizer's own added and special tokens
are written into the text, and the input ids the adapter builds are compared with those it builds for a
plain text: the control ids must sit exactly where the template puts them, and nowhere else.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest
import soundfile as sf
import torch

from inference import registry
from inference.adapters.tokens import control_token_ids, plain_text
from inference.cli import main
from inference.errors import VesperError
from inference.text import chunk_text
from inference.text_input import clean_text, decode_text
from tests.conftest import SAMPLE_VOICE

FAMILIES = list(registry.FAMILY_MODULES)
PLAIN = "Hello there, this is plain."


@pytest.fixture(scope="module", params=FAMILIES)
def family(request, tiny_checkpoint, reference_voice, reference_transcript):
    """(adapter, loaded model, voice prompt) for one family's tiny checkpoint."""
    adapter = registry.adapter_for_family(request.param)
    loaded = adapter.load(tiny_checkpoint(request.param), torch.float32, torch.device("cpu"))
    prompt = adapter.build_voice_prompt(loaded, *reference_voice, reference_transcript)
    return adapter, loaded, prompt


def _input_ids(adapter, loaded, prompt, texts: list[str]) -> torch.Tensor:
    """The token ids each family's prompt is built from (CSM embeds them; the others return them)."""
    if adapter.family == "csm":
        return adapter._tokenize(loaded, prompt, texts)[0]
    return adapter.prompt_inputs(loaded, prompt, texts)["input_ids"]


def _every_control_token(tokenizer) -> str:
    """A text spelling each added and special token, alone, glued to words and nested in itself."""
    tokens = sorted(set(tokenizer.get_added_vocab()) | set(tokenizer.all_special_tokens))
    nested = "".join(f"{t[:3]}{t}{t[3:]}" for t in tokens)  # deleting the inner one would spell the outer one
    return f"Say {' and '.join(tokens)} then{''.join(tokens)}now {nested} end."


def _controls(ids: torch.Tensor, controls: set[int]) -> Counter:
    return Counter(i for i in ids.reshape(-1).tolist() if i in controls)


def test_control_tokens_in_the_text_are_never_control_ids(family):
    adapter, loaded, prompt = family
    tokenizer = loaded.processor.tokenizer
    controls = control_token_ids(tokenizer)
    hostile = _every_control_token(tokenizer)
    spelled = _controls(torch.tensor(tokenizer(hostile, add_special_tokens=False)["input_ids"]), controls)
    assert set(spelled) == controls, "the test text spells every control token"

    template = _controls(_input_ids(adapter, loaded, prompt, [PLAIN]), controls)
    assert template, "the template itself places control tokens"
    assert _controls(_input_ids(adapter, loaded, prompt, [hostile]), controls) == template


def test_the_rule_replaces_control_tokens_by_spaces_and_leaves_plain_text_alone(family):
    _, loaded, _ = family
    tokenizer = loaded.processor.tokenizer
    token = next(iter(tokenizer.get_added_vocab()))
    assert plain_text(PLAIN, tokenizer) == PLAIN
    nested = f"{token[:3]}{token}{token[3:]}"  # the space that replaces the inner token keeps the outer one apart
    assert plain_text(f"one {token} two{token}three {nested}", tokenizer) == f"one two three {token[:3]} {token[3:]}"


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
def test_say_speaks_a_text_full_of_control_tokens(name, tiny_checkpoint, tmp_path, reference_transcript):
    folder = tiny_checkpoint(name)
    tokenizer = registry.adapter_for_family(name).load(folder, torch.float32, torch.device("cpu")).processor.tokenizer
    out = tmp_path / "out.wav"
    text = "".join(sorted(set(tokenizer.get_added_vocab()) | set(tokenizer.all_special_tokens))) + " Hi."
    assert main(["say", text, "--voice", str(SAMPLE_VOICE), "--voice-text", reference_transcript,
                 "--model", str(folder), "--out", str(out), "--hardware", "cpu-16g"]) == 0
    audio, rate = sf.read(out)
    assert rate == registry.adapter_for_family(name).sample_rate and len(audio) > 0


def _random_bytes(rng: random.Random) -> bytes:
    """Mostly text-like bytes (ASCII, UTF-8, BOMs, control bytes), some pure noise."""
    pieces = [b"Hello. ", "naïve café — ".encode(), b"\xef\xbb\xbf", b"\xff\xfe", b"\x00", b"\x1b[31m", b"\r\n",
              bytes([rng.randrange(256)]), b"<|endoftext|>", b"<|audio_bos|>", b"<|AUDIO|>"]
    if rng.random() < 0.2:
        return rng.randbytes(rng.randrange(1, 80))
    return b"".join(rng.choice(pieces) for _ in range(rng.randrange(1, 12)))


def _random_unicode(rng: random.Random) -> str:
    """Code points from anywhere (lone surrogates and unassigned ones included), words and control tokens."""
    def piece() -> str:
        kind = rng.random()
        if kind < 0.4:
            return chr(rng.randrange(0x110000))
        if kind < 0.6:
            return chr(rng.randrange(0x80))
        return rng.choice(["Hello", " ", ".", "<|im_start|>", "<|vision_pad|>", "<|audio_prompt|>",
                           "<|begin_of_text|>", "\u200b", "\ufeff", "\U0001f600", "e\u0301"])
    return "".join(piece() for _ in range(rng.randrange(1, 40)))


def _prepare(adapter, loaded, prompt, text: bytes | str) -> str:
    """The text path up to the model (decoding or cleaning, chunking, the family's template and tokenizer):
    "ids" when it built input ids, "error" for one clear ``VesperError`` line; anything else fails the test."""
    try:
        chunks = chunk_text(decode_text(text) if isinstance(text, bytes) else clean_text(text), 300)
        assert _input_ids(adapter, loaded, prompt, chunks).shape[0] == len(chunks)
    except VesperError as exc:
        assert "\n" not in str(exc)
        return "error"
    return "ids"


def test_fuzzed_input_gives_ids_or_one_clear_error(family):
    adapter, loaded, prompt = family
    rng = random.Random(20261201)
    inputs = [_random_bytes(rng) for _ in range(200)] + [_random_unicode(rng) for _ in range(200)]
    outcomes = Counter(_prepare(adapter, loaded, prompt, text) for text in inputs)
    assert outcomes["ids"] > 100 and outcomes["error"] > 10, outcomes  # both paths were exercised


def test_fuzzed_input_keeps_no_control_characters_or_surrogates():
    rng = random.Random(7)
    for _ in range(200):
        try:
            text = clean_text(_random_unicode(rng))
        except VesperError:
            continue
        text.encode("utf-8")  # no lone surrogate survives
        assert not any(ord(ch) < 0x20 and ch not in "\n\t" or 0x7F <= ord(ch) < 0xA0 for ch in text)



def test_a_token_matched_only_after_normalization_is_refused_in_one_line():
    """A non-special added token matched on normalized text: fullwidth ＜ ＞ become < > under NFKC, so no
    string search finds it, but the tokenizer would; the check after the rule catches it."""
    from tokenizers import AddedToken, Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))},
                                   merges=[]))
    backend.normalizer = normalizers.NFKC()
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.add_tokens([AddedToken("<|ctl|>", normalized=True, special=False)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend)
    assert plain_text("a <|ctl|> b", tokenizer) == "a b"
    with pytest.raises(VesperError, match=r"reads as its control token <\|ctl\|>; rewrite that part"):
        plain_text("a \uff1c|ctl|\uff1e b", tokenizer)
