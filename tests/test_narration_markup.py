"""Narration markup and the pronunciation dictionary, through build_script."""

from __future__ import annotations

import pytest

from inference.errors import BadInputError
from inference.narration.build import build_script
from inference.narration.dictionary import Dictionary, load_dictionary, parse_dictionary
from inference.narration.script import Chunk, Pause

VOICES = {"Alice", "Bob"}


def _items(text: str, **kwargs):
    script = build_script(text, voices=VOICES, normalize=False, **kwargs)
    return [item for chapter in script.chapters for p in chapter.paragraphs for item in p.items]


def test_pauses_in_seconds_and_milliseconds_split_the_speech():
    items = _items("Before. [pause 1.5s] Middle [pause 250ms] after. [pause 2]")
    assert [type(i) for i in items] == [Chunk, Pause, Chunk, Pause, Chunk, Pause]
    assert [i.seconds for i in items if isinstance(i, Pause)] == [1.5, 0.25, 2.0]
    assert [i.text for i in items if isinstance(i, Chunk)] == ["Before.", "Middle", "after."]
    assert (items[1].span.line, items[1].span.column) == (1, 9)


def test_voice_switches_last_until_the_next_switch_or_the_paragraph_end():
    text = ('[voice: Alice] "Hello," she said. [voice: bob] "Hi." [voice] The narrator goes on.\n\n'
            "A new paragraph is the narrator's again.")
    chunks = [i for i in _items(text, max_chunk_chars=40) if isinstance(i, Chunk)]
    assert [(c.voice, c.text) for c in chunks] == [
        ("Alice", '"Hello," she said.'),
        ("Bob", '"Hi."'),  # names match the library's spelling, whatever the case written
        (None, "The narrator goes on."),
        (None, "A new paragraph is the narrator's again."),
    ]
    assert build_script(text, voices=VOICES).voices == {"Alice", "Bob"}


def test_citations_are_dropped_and_doubled_brackets_are_literal():
    [chunk] = _items("As shown [1], [2, 3] and [4–6]. See [[sic]] here.")
    assert chunk.sentences == ("As shown, and.", "See [sic] here.")


@pytest.mark.parametrize(("text", "message", "where"), [
    ("Hello [pause x] there.", "Malformed pause", "line 1, column 7"),
    ("Hello [pause 1.5 minutes] there.", "Malformed pause", "line 1, column 7"),
    ("Hello [pause 0s] there.", "out of range", "line 1, column 7"),
    ("Hello.\n\nOne line\nand [whisper] here.", "Unknown markup [whisper]", "line 4, column 5"),
    ("Fine.\n\nNot closed [pause 2s here.", "Unclosed [", "line 3, column 12"),
    ("Not closed [pause 2s here,\nbut a ] later.", "Unclosed [", "line 1, column 12"),
    ("[voice Alice] hi", "Malformed voice switch", "line 1, column 1"),
    ("Text.\n\n   [voice: Carol] hi", "Unknown voice 'Carol'", "line 3, column 4"),
])
def test_bad_markup_is_one_line_with_line_and_column(text, message, where):
    with pytest.raises(BadInputError) as info:
        build_script(text, voices=VOICES)
    assert message in str(info.value) and where in str(info.value)
    assert "\n" not in str(info.value)


def test_markdown_escapes_are_literal_brackets_and_entities_read():
    text = r"A \[note\] &amp; [[more]] with `a[0]`." + "\n"
    assert [c.text for c in build_script(text, kind="markdown", normalize=False).chunks] == [
        "A [note] & [more] with a[0]."]


def test_markdown_markup_errors_point_at_the_source_column():
    text = "# Title\n\nSome *emphasis* then [pauze 1s] here.\n"
    with pytest.raises(BadInputError, match="line 3, column 22"):
        build_script(text, kind="markdown")


def test_an_unknown_voice_is_refused_even_with_an_empty_library():
    with pytest.raises(BadInputError, match="Unknown voice 'Alice'.*none yet"):
        build_script("[voice: Alice] Hi.")


def test_markup_only_text_has_nothing_to_read():
    with pytest.raises(BadInputError, match="no words"):
        build_script("[pause 1s] [voice: Alice]", voices=VOICES)


# --- dictionary --------------------------------------------------------------------------------------

def test_dictionary_matches_whole_words_ignoring_case_unless_quoted():
    dictionary = parse_dictionary('# names\nSiobhan = shi-VAWN\n"US" = you ess\nnew york = noo york  # phrase\n')
    assert dictionary.apply("Siobhan, SIOBHAN and siobhan's friend Siobhanna.") == (
        "shi-VAWN, shi-VAWN and shi-VAWN's friend Siobhanna.")
    assert dictionary.apply("The US told us.") == "The you ess told us."
    assert dictionary.apply("New York, NEW YORK.") == "noo york, noo york."


def test_exact_case_entries_win_over_any_case_ones():
    dictionary = Dictionary(any_case={"read": "reed"}, exact={"Read": "red"})
    assert dictionary.apply("Read read READ") == "red reed reed"


def test_respellings_are_not_matched_again():
    assert Dictionary(any_case={"a": "b", "b": "c"}).apply("a b") == "b c"


@pytest.mark.parametrize(("text", "message"), [
    ("just a word\n", "Line 1 of words.txt is not an entry"),
    ("ok = fine\n = nothing\n", "Line 2 of words.txt is not an entry"),
    ("Word = one\nword = two\n", "Line 2 of words.txt repeats 'word'"),
])
def test_malformed_dictionary_names_the_line(tmp_path, text, message):
    path = tmp_path / "words.txt"
    path.write_text(text)
    with pytest.raises(BadInputError, match=message):
        load_dictionary(path)


def test_a_dictionary_change_alters_only_the_chunks_with_that_word():
    text = "\n\n".join([
        "Siobhan walked to the shop.",
        "Nobody else was there.",
        "The shop keeper greeted siobhan warmly.",
        "It rained all day.",
    ])
    before = [c.text for c in build_script(text, dictionary=parse_dictionary("Siobhan = shi-VAWN")).chunks]
    after = [c.text for c in build_script(text, dictionary=parse_dictionary("Siobhan = shiv-AWN")).chunks]
    changed = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
    assert changed == [0, 2]
    assert after[0] == "shiv-AWN walked to the shop."
    assert before[1] == after[1] == "Nobody else was there."


def test_dictionary_applies_before_normalisation():
    script = build_script("C3PO has 2 arms.", dictionary=parse_dictionary("C3PO = see three pee oh"))
    assert script.chunks[0].text == "see three pee oh has two arms."


def test_the_readme_dialogue_example_reads_as_documented():
    text = '[voice: Ada] "Are you coming?" [voice] she asked. [pause 1s]\n\n[voice: Ben] "In a minute," he said.'
    script = build_script(text, voices={"Ada", "Ben"})
    items = [i for chapter in script.chapters for p in chapter.paragraphs for i in p.items]
    assert [(i.voice, i.text) if isinstance(i, Chunk) else i.seconds for i in items] == [
        ("Ada", '"Are you coming?"'), (None, "she asked."), 1.0, ("Ben", '"In a minute," he said.')]
