"""Normalisation for speech: abbreviations, numbers, money, units, dates and times written out as words.

TTS models read "$3.50" or "10:30" unpredictably (digit by digit, skipped, or invented); written out
they read reliably. Each language has its own list of rules applied in order (most specific first);
English has the full set, any other language that num2words knows gets plain numbers spelled out,
and a language with no rules is left as written. Add a language by adding its rules to ``_RULES``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from functools import lru_cache

Rule = tuple[re.Pattern[str], Callable[[re.Match[str]], str]]

_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"  # 1,234,567.89 or 1234.5
_START = r"(?<![\w.,])"  # not inside a word or a longer number
_END = r"(?![\w]|[.,]\d)"
_DIGIT = re.compile(r"\d")


def normalize_for_speech(text: str, language: str = "en") -> str:
    """``text`` with the language's abbreviations, numbers, money, units, dates and times in words.

    Run on whole sentences after they were found: abbreviations and decimals still show where they end.
    """
    code = language.split("-")[0].lower()
    abbreviations = _ABBREVIATIONS.get(code)
    if abbreviations is not None and "." in text:
        pattern, table = abbreviations
        end = len(text)  # an abbreviation ending the sentence keeps its dot as the full stop
        text = pattern.sub(lambda m: table[m.group(0)] + ("." if m.end() == end else ""), text)
    if not _DIGIT.search(text):  # every number rule needs a digit; most prose has none
        return text
    rules = _RULES.get(code)
    if rules is None:
        return _spell_numbers(text, language)
    for pattern, replace in rules:
        text = pattern.sub(replace, text)
    return text


def _abbreviations(table: dict[str, str]) -> tuple[re.Pattern[str], dict[str, str]]:
    """One pattern for a table of abbreviations, each matched as written at a word start."""
    alternation = "|".join(re.escape(a) for a in sorted(table, key=len, reverse=True))
    return re.compile(rf"(?<![\w.])(?:{alternation})(?=\s|$|[,;:)])"), table


@lru_cache(maxsize=8192)
def _words(number: Decimal | int | str, lang: str = "en", to: str = "cardinal") -> str:
    """num2words without its commas (a comma makes a model pause mid-number); cached, as it is slow."""
    from num2words import num2words

    value = Decimal(str(number).replace(",", "")) if not isinstance(number, int) else number
    if isinstance(value, Decimal) and value == value.to_integral_value() and "." not in str(number):
        value = int(value)
    return num2words(value, lang=lang, to=to).replace(",", "")


def _spell_numbers(text: str, language: str) -> str:
    """Other languages: plain numbers through num2words where it knows the language, else unchanged."""
    try:
        _words(1, language)
    except (NotImplementedError, OverflowError):
        return text
    return re.sub(_START + f"({_NUM})" + _END, lambda m: _words(m.group(1), language), text)


# --- English ----------------------------------------------------------------------------------------

_SCALES = {"k": "thousand", "thousand": "thousand", "m": "million", "million": "million", "bn": "billion",
           "billion": "billion", "tn": "trillion", "trillion": "trillion"}
_CURRENCIES = {"$": ("dollar", "dollars", "cent", "cents"), "€": ("euro", "euros", "cent", "cents"),
               "£": ("pound", "pounds", "penny", "pence"), "¥": ("yen", "yen", "sen", "sen"),
               "₹": ("rupee", "rupees", "paisa", "paise")}
_UNITS = {
    "km": "kilometre", "m": "metre", "cm": "centimetre", "mm": "millimetre", "mi": "mile", "ft": "foot",
    "kg": "kilogram", "g": "gram", "mg": "milligram", "lb": "pound", "lbs": "pound", "oz": "ounce",
    "l": "litre", "ml": "millilitre", "km/h": "kilometre per hour", "mph": "mile per hour",
    "KB": "kilobyte", "kB": "kilobyte", "MB": "megabyte", "GB": "gigabyte", "TB": "terabyte",
    "Hz": "hertz", "kHz": "kilohertz", "MHz": "megahertz", "GHz": "gigahertz", "W": "watt", "kW": "kilowatt",
    "V": "volt", "°C": "degree Celsius", "°F": "degree Fahrenheit", "ms": "millisecond", "min": "minute",
}
_IRREGULAR_PLURALS = {"foot": "feet", "hertz": "hertz", "kilohertz": "kilohertz", "megahertz": "megahertz",
                      "gigahertz": "gigahertz"}
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]
_MONTH = r"(?P<month>" + "|".join(_MONTHS) + r"|" + "|".join(m[:3] for m in _MONTHS) + r")\.?"
_YEAR_WORDS = r"in|since|by|from|until|till|before|after|around|circa|c\.|year|summer|winter|spring|autumn|fall"
_YEAR = r"1[1-9]\d{2}|20\d{2}"


def _plural(unit: str, amount: str) -> str:
    if amount in ("1", "1.0", "one"):
        return unit
    first, _, rest = unit.partition(" ")  # "kilometre per hour" -> "kilometres per hour"
    plural = _IRREGULAR_PLURALS.get(first, first + "s")
    return f"{plural} {rest}" if rest else plural


def _currency(m: re.Match[str]) -> str:
    one, many, sub_one, sub_many = _CURRENCIES[m.group("sym")]
    amount, scale = m.group("amount").replace(",", ""), m.group("scale")
    if scale:
        return f"{_words(amount)} {_SCALES[scale.lower()]} {many}"
    whole, _, cents = amount.partition(".")
    spoken = f"{_words(whole)} {one if whole == '1' else many}"
    if cents and int(cents):
        cents = (cents + "0")[:2]
        spoken += f" and {_words(int(cents))} {sub_one if int(cents) == 1 else sub_many}"
    return spoken


def _unit(m: re.Match[str]) -> str:
    amount = m.group("amount").replace(",", "")
    return f"{_words(amount)} {_plural(_UNITS[m.group('unit')], amount)}"


def _time(m: re.Match[str]) -> str:
    hour, minute = int(m.group("h")), int(m.group("min"))
    spoken = _words(hour) + (" o'clock" if minute == 0 and not m.group("ampm") else "")
    if minute:
        spoken += (" oh " if minute < 10 else " ") + _words(minute)
    if m.group("ampm"):
        spoken += " " + " ".join(m.group("ampm").lower().replace(".", ""))
    return spoken


def _month_name(token: str) -> str:
    return next(name for name in _MONTHS if name.lower().startswith(token.lower().rstrip(".")[:3]))


def _date_month_first(m: re.Match[str]) -> str:
    spoken = f"{_month_name(m.group('month'))} {_words(int(m.group('day')), to='ordinal')}"
    return spoken + (f" {_words(int(m.group('year')), to='year')}" if m.group("year") else "")


def _date_day_first(m: re.Match[str]) -> str:
    spoken = f"the {_words(int(m.group('day')), to='ordinal')} of {_month_name(m.group('month'))}"
    return spoken + (f" {_words(int(m.group('year')), to='year')}" if m.group("year") else "")


def _date_iso(m: re.Match[str]) -> str:
    month = _MONTHS[int(m.group("mo")) - 1]
    return f"{month} {_words(int(m.group('d')), to='ordinal')} {_words(int(m.group('y')), to='year')}"


def _number(m: re.Match[str]) -> str:
    digits = m.group(0).replace(",", "")
    if len(digits.split(".")[0]) > 15 or (digits.startswith("0") and len(digits) > 1 and "." not in digits):
        return " ".join(_words(int(d)) for d in digits if d.isdigit())  # codes and phone numbers: digit by digit
    return _words(digits)


def _year_range(m: re.Match[str]) -> str:
    first, last = (m.group("a"), m.group("b")) if m.group("a") else (m.group("c"), m.group("d"))
    spoken = f"{_words(int(first), to='year')} to {_words(int(last), to='year')}"
    return spoken if m.group("a") else f"{m.group('from')} {spoken}"


def _hyphenated(m: re.Match[str]) -> str:
    """``10-12`` is a range; ``555-1234`` and longer groups are a phone or code number, read digit by digit."""
    groups = m.group(0).split("-")
    if len(groups) == 2 and sum(map(len, groups)) < 7:
        return f"{_words(int(groups[0]))} to {_words(int(groups[1]))}"
    return ", ".join(" ".join(_words(int(d)) for d in group) for group in groups)


def _decade(m: re.Match[str]) -> str:
    spoken = _words(int(m.group("y")), to="year")
    return (spoken[:-1] + "ies") if spoken.endswith("y") else spoken + "s"


_EN_RULES: list[Rule] = [
    (re.compile(_START + r"(?P<sym>[$€£¥₹])\s?(?P<amount>" + _NUM + r")(?:\s?(?P<scale>k|m|bn|tn|thousand|million"
                r"|billion|trillion)\b)?", re.I), _currency),
    (re.compile(_START + r"(?P<amount>" + _NUM + r")\s?%"), lambda m: _words(m.group("amount")) + " percent"),
    (re.compile(r"\b(?P<y>1\d{3}|20\d{2})-(?P<mo>0[1-9]|1[0-2])-(?P<d>0[1-9]|[12]\d|3[01])\b"), _date_iso),
    (re.compile(r"\b" + _MONTH + r"\s(?P<day>[0-3]?\d)(?:st|nd|rd|th)?\b(?:,?\s(?P<year>1\d{3}|20\d{2})\b)?"),
     _date_month_first),
    (re.compile(r"\b(?P<day>[0-3]?\d)(?:st|nd|rd|th)?\s(?:of\s)?" + _MONTH + r"(?:,?\s(?P<year>1\d{3}|20\d{2})\b)?"),
     _date_day_first),
    (re.compile(r"(?<![\w:])(?P<h>[01]?\d|2[0-3]):(?P<min>[0-5]\d)(?![\w:])(?:\s?(?P<ampm>[ap]\.?m\.?)(?!\w))?", re.I),
     _time),
    (re.compile(_START + r"(?P<amount>" + _NUM + r")\s?(?P<unit>" + "|".join(
        re.escape(u) for u in sorted(_UNITS, key=len, reverse=True)) + r")(?![\w/])"), _unit),
    (re.compile(_START + r"(\d+)(?:st|nd|rd|th)\b", re.I), lambda m: _words(int(m.group(1)), to="ordinal")),
    (re.compile(r"\b(?:(?:the|early|late|mid)\s)?(?P<y>1\d{2}0|20\d0)'?s\b"),
     lambda m: m.group(0)[: m.start("y") - m.start()] + _decade(m)),
    (re.compile(rf"\b(?P<a>{_YEAR})\s?[–-]\s?(?P<b>{_YEAR})\b"
                rf"|\b(?P<from>from) (?P<c>{_YEAR}) to (?P<d>{_YEAR})\b", re.I), _year_range),
    (re.compile(r"\b(?P<pre>(?:" + _YEAR_WORDS + r")\s)(?P<y>" + _YEAR + r")\b", re.I),
     lambda m: m.group("pre") + _words(int(m.group("y")), to="year")),
    (re.compile(r"\b(?P<y>\d{1,4})\s?(?P<era>BC|BCE|AD|CE)\b"),
     lambda m: f"{_words(int(m.group('y')), to='year')} {' '.join(m.group('era'))}"),
    (re.compile(r"(?<![\w.,-])\d+(?:-\d+)+(?![\w-])"), _hyphenated),
    (re.compile(r"(?<![\w.,])-(?=\d)"), lambda m: "minus "),
    (re.compile(_START + f"(?:{_NUM})" + _END), _number),
]

# Only unambiguous ones: "St." (Saint or Street) and "Dr" without its dot are left to the model.
_EN_ABBREVIATIONS = {
    "Dr.": "Doctor", "Mr.": "Mister", "Mrs.": "Missus", "Prof.": "Professor", "e.g.": "for example",
    "i.e.": "that is", "etc.": "et cetera", "vs.": "versus", "approx.": "approximately", "No.": "number",
}

_RULES: dict[str, list[Rule]] = {"en": _EN_RULES}
_ABBREVIATIONS = {"en": _abbreviations(_EN_ABBREVIATIONS)}
