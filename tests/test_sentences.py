"""Sentence segmentation and chunk packing (inference.narration.sentences).

``CASES`` is the table the segmenters were compared on (benchmarks/segmenters.py, docs/measurements.md):
each row is a language, a text and the sentences a careful reader would find in it.
"""

from __future__ import annotations

import time

import pytest

from inference.narration.sentences import pack, sentence_spans, split_long, split_sentences

CASES = [
    ("en", "Dr. Smith went to Washington. He arrived at noon.",
     ["Dr. Smith went to Washington.", "He arrived at noon."]),
    ("en", "Bring fruit, e.g. apples and pears. Then leave.", ["Bring fruit, e.g. apples and pears.", "Then leave."]),
    ("en", "Pi is about 3.14 in most books. That is close enough.",
     ["Pi is about 3.14 in most books.", "That is close enough."]),
    ("en", "I waited... and waited. Nothing came.", ["I waited... and waited.", "Nothing came."]),
    ("en", "He paused… then spoke. We listened.", ["He paused… then spoke.", "We listened."]),
    ("en", '"Are you coming?" she asked. "Yes," he said.', ['"Are you coming?" she asked.', '"Yes," he said.']),
    ("en", "“Stop!” He ran off. “Wait for me,” she called.", ["“Stop!”", "He ran off.", "“Wait for me,” she called."]),
    ("en", "Mr. and Mrs. Jones arrived late. They apologised.",
     ["Mr. and Mrs. Jones arrived late.", "They apologised."]),
    ("en", "Visit https://example.com/a.b?c=1 for details. Thanks.",
     ["Visit https://example.com/a.b?c=1 for details.", "Thanks."]),
    ("en", "The U.S. economy grew last year. Prices rose.", ["The U.S. economy grew last year.", "Prices rose."]),
    ("en", "It costs $3.50 today. Tomorrow it costs €4.", ["It costs $3.50 today.", "Tomorrow it costs €4."]),
    ("en", "Meet me at 10:30 a.m. tomorrow. Don't be late.", ["Meet me at 10:30 a.m. tomorrow.", "Don't be late."]),
    ("en", "Wait! What? Really.", ["Wait!", "What?", "Really."]),
    ("en", "See chapter 4, p. 12 for more. It explains everything.",
     ["See chapter 4, p. 12 for more.", "It explains everything."]),
    ("en", "no punctuation at all in this line", ["no punctuation at all in this line"]),
    ("en", "St. Louis is big. Prof. Lee agrees, i.e. he lives there.",
     ["St. Louis is big.", "Prof. Lee agrees, i.e. he lives there."]),
    ("zh", "今天天气很好。我们去公园吧！你来吗？", ["今天天气很好。", "我们去公园吧！", "你来吗？"]),
    ("ja", "これはペンです。あれは本です。", ["これはペンです。", "あれは本です。"]),
    ("es", "¿Dónde está la estación? ¡Allí! Gracias, Sr. García.",
     ["¿Dónde está la estación?", "¡Allí!", "Gracias, Sr. García."]),
    ("hi", "मैं घर जा रहा हूँ। तुम कहाँ हो?", ["मैं घर जा रहा हूँ।", "तुम कहाँ हो?"]),
]


@pytest.mark.parametrize(("language", "text", "expected"), CASES, ids=[c[1][:24] for c in CASES])
def test_segmenter_table(language, text, expected):
    assert split_sentences(text, language) == expected


def test_spans_point_at_each_sentence_in_the_text():
    text = "  One here.\nTwo there!  Three?"
    for sentence, offset in sentence_spans(text):
        assert text[offset : offset + len(sentence)] == sentence


def test_pack_keeps_sentences_whole_and_in_order():
    sentences = [f"Sentence {i} is short." for i in range(30)]
    chunks = pack(sentences, 80)
    assert [s for chunk in chunks for s in chunk] == sentences
    assert all(len(" ".join(chunk)) <= 80 for chunk in chunks)
    # packed greedily: the next chunk's first sentence would not have fitted
    assert all(len(" ".join(chunk + (nxt[0],))) > 80 for chunk, nxt in zip(chunks, chunks[1:], strict=False))


def test_long_sentence_splits_at_clauses_before_words():
    sentence = "first part of it, second part of it; third part of it: and a last part of it"
    pieces = split_long(sentence, 40)
    assert pieces == ["first part of it, second part of it;", "third part of it: and a last part of it"]


def test_text_without_punctuation_chunks_fast_and_within_limits():
    text = " ".join(f"word{i % 97}" for i in range(200_000 // 7))
    assert len(text) >= 190_000
    start = time.perf_counter()
    chunks = pack(split_sentences(text), 300)
    elapsed = time.perf_counter() - start
    assert elapsed < 3.0, f"{elapsed:.2f} s for 200 KB without punctuation"
    assert all(len(" ".join(c)) <= 300 for c in chunks)
    assert " ".join(" ".join(c) for c in chunks).split() == text.split()


def test_a_word_longer_than_the_limit_is_cut_hard():
    chunks = pack(["see " + "x" * 50 + " end"], 20)
    assert all(len(" ".join(c)) <= 20 for c in chunks)
    assert "".join("".join(c) for c in chunks).replace(" ", "") == "see" + "x" * 50 + "end"


def test_limit_below_the_minimum_is_refused():
    with pytest.raises(ValueError):
        pack(["Hello."], 10)


def test_long_chinese_text_without_spaces_chunks_within_the_limit():
    sentence = "我们在公园里散步，" * 30 + "然后回家了。"
    chunks = pack(split_sentences(sentence * 3, "zh"), 50)
    assert all(len(" ".join(c)) <= 50 for c in chunks)
    assert "".join("".join(c) for c in chunks).replace(" ", "") == sentence * 3
    assert not any("， " in " ".join(c) for c in chunks)  # clauses rejoin without a space
