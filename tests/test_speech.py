"""Normalisation for speech (inference.narration.speech): what the model is given instead of digits."""

from __future__ import annotations

import pytest

from inference.narration.build import build_script
from inference.narration.speech import normalize_for_speech

ENGLISH = [
    ("It costs $3.50 today.", "It costs three dollars and fifty cents today."),
    ("Pay €20 now.", "Pay twenty euros now."),
    ("A £1m deal.", "A one million pounds deal."),
    ("They raised $1.5bn.", "They raised one point five billion dollars."),
    ("Just $1.", "Just one dollar."),
    ("Walk 5 km and lift 10 kg.", "Walk five kilometres and lift ten kilograms."),
    ("Copy 3 GB at 1 km/h.", "Copy three gigabytes at one kilometre per hour."),
    ("The 1st, 2nd, 3rd and 21st.", "The first, second, third and twenty-first."),
    ("Up 12.5% on last year.", "Up twelve point five percent on last year."),
    ("In 1999 we met.", "In nineteen ninety-nine we met."),
    ("Since 2005 it has grown.", "Since two thousand and five it has grown."),
    ("The 1990s were loud.", "The nineteen nineties were loud."),
    ("We left at 10:30.", "We left at ten thirty."),
    ("Be there at 9:05 pm or 7:00.", "Be there at nine oh five p m or seven o'clock."),
    ("Born on March 5, 1990.", "Born on March fifth nineteen ninety."),
    ("On 5 March 2024 it rained.", "On the fifth of March twenty twenty-four it rained."),
    ("Due 2024-03-05.", "Due March fifth twenty twenty-four."),
    ("Pi is 3.14.", "Pi is three point one four."),
    ("About 1,234,567 people.",
     "About one million two hundred and thirty-four thousand five hundred and sixty-seven people."),
    ("It was -5 outside.", "It was minus five outside."),
    ("Call 0123 now.", "Call zero one two three now."),
    ("Page 42.", "Page forty-two."),
    ("See pages 10-12.", "See pages ten to twelve."),
    ("Call 555-1234.", "Call five five five, one two three four."),
    ("From 1999 to 2005 it grew.", "From nineteen ninety-nine to two thousand and five it grew."),
    ("The war of 1914–1918.", "The war of nineteen fourteen to nineteen eighteen."),
    ("A crowd of 1500 people.", "A crowd of one thousand five hundred people."),
    ("Version v2 and GPT4 stay.", "Version v2 and GPT4 stay."),
    ("No digits, no change.", "No digits, no change."),
    ("Dr. Smith and Mrs. Jones, e.g. here.", "Doctor Smith and Missus Jones, for example here."),
    ("Mr. and Mrs. Lee saw No. 5 and so on, etc.", "Mister and Missus Lee saw number five and so on, et cetera."),
    ("Dr.Who and St. Ives stay.", "Dr.Who and St. Ives stay."),
]


@pytest.mark.parametrize(("written", "spoken"), ENGLISH, ids=[w for w, _ in ENGLISH])
def test_english_normalisation_table(written, spoken):
    assert normalize_for_speech(written, "en") == spoken


def test_other_languages_spell_plain_numbers_where_num2words_knows_them():
    assert normalize_for_speech("Tengo 12 gatos.", "es") == "Tengo doce gatos."
    assert normalize_for_speech("J'ai 3 chats.", "fr-FR") == "J'ai trois chats."


def test_a_language_without_rules_is_left_as_written():
    assert normalize_for_speech("मेरे पास 12 हैं", "xx") == "मेरे पास 12 हैं"


def test_normalisation_can_be_turned_off_per_build():
    text = "It costs $3.50 in 1999."
    assert build_script(text).chunks[0].text == "It costs three dollars and fifty cents in nineteen ninety-nine."
    assert build_script(text, normalize=False).chunks[0].text == text


def test_sentences_are_found_before_normalising():
    # "3.14" and "Dr." must not end a sentence; the chunk's sentences are the normalised ones.
    chunk = build_script("Dr. Lee said pi is 3.14. It is.").chunks[0]
    assert chunk.sentences == ("Doctor Lee said pi is three point one four.", "It is.")
    assert chunk.text == " ".join(chunk.sentences)
